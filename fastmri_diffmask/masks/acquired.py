"""The acquired phase-encode range of zero-padded k-space, and masks that respect it.

fastMRI files are often wider than what was acquired: the scanner's phase-encode lines sit in a
band ``[padding_left, padding_right)`` of the ``W`` columns and the rest is zero-filled.
:class:`fastmri.data.SliceDataset` derives the band from the ISMRMRD header::

    padding_left  = encodedSpace.matrixSize.y // 2 - encodingLimits.kspace_encoding_step_1.center
    padding_right = padding_left + encodingLimits.kspace_encoding_step_1.maximum + 1

and ``VarNetDataTransform`` zeroes every mask outside it after drawing it (``apply_mask(...,
padding=(padding_left, padding_right))``). :func:`padding_from_header` computes the same two
numbers; :func:`acquirable` turns a range into the boolean grid of entries a mask may sample.

An *acquired* specification is one of

* ``None``: everything is acquirable (the full grid);
* ``(start, end)``: the half-open column range along ``W`` (fastMRI's padding); for point masks
  all rows ``H`` are allowed;
* ``((row_start, row_end), (start, end))``: point masks only, a ky-kz rectangle;
* a boolean array of the mask's shape (``True`` = acquirable).

Budget convention: masks in this package that take an acquired range count their budget over the
acquirable entries only, ``round(N_acquirable / R)``. fastMRI's own mask functions count all
``W`` columns (``round(W / R)`` before the padding is zeroed); :func:`acquired_acceleration`
reports both.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterable, Sequence

import numpy as np

from ..errors import UserError

__all__ = ["padding_from_header", "acquirable", "acquired_record", "acquirable_from_record",
           "common_range", "acquired_acceleration", "check_inside"]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(root, path: Sequence[str]):
    """First element matching the nested path (each step a descendant of the previous), as
    fastMRI's ``et_query`` finds ``.//a//b//c``, ignoring XML namespaces."""
    if not path:
        return root
    for el in root.iter():
        if el is not root and _local(el.tag) == path[0]:
            found = _find(el, path[1:])
            if found is not None:
                return found
    return None


def header_root(header, where: str = "file"):
    """The parsed ``ismrmrd_header`` (bytes, str or a numpy bytes array) as an XML element; a
    one-line :class:`UserError` when it is not XML."""
    if isinstance(header, np.ndarray):
        header = header.tobytes() if header.dtype.kind in "SV" else str(header)
    try:
        return ET.fromstring(header)
    except ET.ParseError as e:
        raise UserError(f"{where}: ismrmrd_header is not valid XML ({e}); re-create the file") from None


def _int_at(root, path: Sequence[str], where: str) -> int | None:
    el = _find(root, path)
    if el is None or el.text is None or not el.text.strip():
        return None
    try:
        return int(el.text.strip())
    except ValueError:
        raise UserError(f"{where}: ISMRMRD header field {'/'.join(path)} is {el.text.strip()!r}, not an integer; "
                        "fix the header") from None


def padding_from_header(header, width: int, where: str = "file") -> tuple[int, int]:
    """fastMRI's ``(padding_left, padding_right)`` from an ISMRMRD XML header.

    Parameters
    ----------
    header : bytes, str or None
        The file's ``ismrmrd_header`` dataset.
    width : int
        The k-space width ``W`` (columns).
    where : str
        Name of the file, for messages.

    Returns
    -------
    (int, int)
        The half-open acquired column range, exactly as :class:`fastmri.data.SliceDataset`
        computes it; ``(0, W)`` when there is no header or it lacks ``encodedSpace.matrixSize.y``
        or ``encodingLimits/kspace_encoding_step_1`` (center, maximum). ``padding_right`` beyond
        ``W`` is cut to ``W`` (fastMRI's zeroing of ``mask[..., padding_right:]`` is then a no-op).

    Raises
    ------
    UserError
        Unparseable XML, or limits that put the range outside ``[0, W)`` or make it empty.
    """
    width = int(width)
    if header is None:
        return 0, width
    root = header_root(header, where)
    enc_y = _int_at(root, ("encoding", "encodedSpace", "matrixSize", "y"), where)
    lims = ("encoding", "encodingLimits", "kspace_encoding_step_1")
    center = _int_at(root, lims + ("center",), where)
    maximum = _int_at(root, lims + ("maximum",), where)
    if enc_y is None or center is None or maximum is None:
        return 0, width
    left = enc_y // 2 - center
    right = left + maximum + 1
    if not 0 <= left < min(right, width):
        raise UserError(f"{where}: ISMRMRD header limits (encodedSpace y {enc_y}, kspace_encoding_step_1 center "
                        f"{center}, maximum {maximum}) give acquired columns [{left}, {right}) outside 0..{width}; "
                        "fix the header")
    return int(left), int(min(right, width))


def _range(pair, n: int, what: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in pair)
        if (a, b) != tuple(pair):
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"acquired {what} must be two integers (start, end), got {pair!r}") from None
    if not 0 <= a < b <= n:
        raise UserError(f"acquired {what} [{a}, {b}) must be a non-empty range inside 0..{n}")
    return a, b


def acquirable(shape: Sequence[int], acquired=None) -> np.ndarray:
    """Boolean grid of ``shape`` (``(W,)`` or ``(H, W)``): ``True`` where a mask may sample.

    ``acquired`` as in the module docstring; raises :class:`UserError` on a bad one.
    """
    shape = tuple(int(s) for s in shape)
    out = np.ones(shape, bool)
    if acquired is None:
        return out
    if hasattr(acquired, "shape"):  # numpy array or torch tensor: a boolean grid
        arr = np.asarray(acquired.detach().cpu() if hasattr(acquired, "detach") else acquired)
        if arr.shape != shape:
            raise UserError(f"acquirable mask has shape {arr.shape}, the mask {shape}")
        if not arr.any():
            raise UserError("the acquirable mask is empty: nothing was acquired")
        return arr > 0
    seq = list(acquired)
    if len(seq) == 2 and all(np.ndim(v) == 1 for v in seq):
        if len(shape) != 2:
            raise UserError("a (rows, columns) acquired range needs a point mask of shape (H, W)")
        r0, r1 = _range(seq[0], shape[0], "rows")
        c0, c1 = _range(seq[1], shape[1], "columns")
        out[:] = False
        out[r0:r1, c0:c1] = True
        return out
    c0, c1 = _range(seq, shape[-1], "columns")
    out[...] = False
    out[..., c0:c1] = True
    return out


def acquired_record(allowed: np.ndarray):
    """JSON description of a boolean acquirable grid for a mask file's metadata: ``None`` for the
    full grid, ``{"columns": [a, b]}`` (plus ``"rows"`` for a rectangle) or ``{"runs": [[s, e],
    ...]}`` (half-open runs of flat indices) otherwise."""
    allowed = np.asarray(allowed, bool)
    if allowed.all():
        return None
    rows = np.flatnonzero(allowed.any(axis=-1)) if allowed.ndim == 2 else None
    cols = np.flatnonzero(allowed.reshape(-1, allowed.shape[-1]).any(axis=0))
    rec = {"columns": [int(cols[0]), int(cols[-1]) + 1]}
    if rows is not None and (rows[0] > 0 or rows[-1] < allowed.shape[0] - 1):
        rec["rows"] = [int(rows[0]), int(rows[-1]) + 1]
    if np.array_equal(acquirable(allowed.shape, _spec(rec)), allowed):
        return rec
    flat = np.concatenate([[0], allowed.ravel().astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(flat))
    return {"runs": [[int(s), int(e)] for s, e in zip(edges[::2], edges[1::2])]}


def _spec(rec):
    return (tuple(rec["rows"]), tuple(rec["columns"])) if "rows" in rec else tuple(rec["columns"])


def acquirable_from_record(shape: Sequence[int], rec) -> np.ndarray:
    """Inverse of :func:`acquired_record` (a mask file's ``acquired`` metadata)."""
    shape = tuple(int(s) for s in shape)
    if rec is None:
        return np.ones(shape, bool)
    try:
        if "runs" in rec:
            flat = np.zeros(int(np.prod(shape)), bool)
            for s, e in rec["runs"]:
                if not 0 <= int(s) < int(e) <= flat.size:
                    raise ValueError
                flat[int(s):int(e)] = True
            return flat.reshape(shape)
        return acquirable(shape, _spec(rec))
    except (KeyError, TypeError, ValueError):
        raise UserError(f"acquired range metadata {rec!r} is malformed; the mask file is corrupt") from None


def common_range(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], bool]:
    """Intersection of per-slice column ranges: ``((start, end), mixed)``, ``mixed`` True when
    the slices' ranges differ. Raises :class:`UserError` when the intersection is empty."""
    ranges = [tuple(int(v) for v in r) for r in ranges]
    if not ranges:
        raise UserError("no slices, so no acquired range")
    a, b = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if a >= b:
        raise UserError(f"the slices' acquired column ranges {sorted(set(ranges))} do not overlap; "
                        "use files with one acquisition width per folder")
    return (a, b), len(set(ranges)) > 1


def check_inside(fixed: np.ndarray, allowed: np.ndarray, what: str = "the fully sampled centre") -> None:
    """Raise :class:`UserError` when an always-sampled entry lies outside the acquired range."""
    bad = np.asarray(fixed, bool) & ~np.asarray(allowed, bool)
    if bad.any():
        cols = np.flatnonzero(bad.reshape(-1, bad.shape[-1]).any(axis=0))
        raise UserError(f"{what} covers columns {int(cols[0])}..{int(cols[-1])}, outside the acquired range "
                        f"(zero-filled k-space); lower num_low_frequencies or check the file's header")


def acquired_acceleration(mask, allowed=None) -> dict:
    """Achieved acceleration of a 0/1 ``mask`` under both conventions.

    Returns ``{"acquirable": N_acquirable / samples, "fastmri": N / samples}``: this package's
    budget convention (entries inside the acquired range) and fastMRI's (all ``W`` columns, or
    all ``H W`` points); equal when nothing is padded. ``inf`` for an empty mask.
    """
    m = np.asarray(mask, np.float64)
    allowed = np.ones(m.shape, bool) if allowed is None else np.broadcast_to(np.asarray(allowed, bool), m.shape)
    total = m.sum()
    if total <= 0:
        return {"acquirable": float("inf"), "fastmri": float("inf")}
    return {"acquirable": float(allowed.sum() / total), "fastmri": float(m.size / total)}
