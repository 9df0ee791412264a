"""The mask file: one self-describing, versioned file per learned mask.

Format (version 1): a `safetensors <https://github.com/huggingface/safetensors>`_ file (no
pickle; safe to load from anyone) holding

tensors
    ``mask``           float32, the deterministic binary mask (0/1), shape ``(W,)`` for a line
                       mask or ``(H, W)`` for a point mask, centre included, exactly the budget;
    ``probabilities``  float32, the budget-renormalised sampling probabilities (same shape);
                       centre entries are 1;
    ``logits``         float32, the raw learned logits (same shape; centre entries are +inf
                       replaced by a large value);
    ``order``          int64, optional: a priority ordering of the flat indices for nested masks
                       (the first ``round(N/R)`` entries give the mask at acceleration R).

metadata (safetensors' string map, one key ``"fastmri_diffmask"`` holding JSON)
    ``format`` ("fastmri-diffmask-mask"), ``version`` (1), ``kind`` ("line" | "point"),
    ``shape``, ``acceleration`` (the requested R), ``num_low_frequencies`` (width of the
    contiguous fully sampled centre; a square of that side for point masks), ``num_sampled``,
    ``prior`` ({"id", "sha256"}), ``data`` (an id of the training data), ``seed``,
    ``objective`` (dict of the learning settings), ``steps``, ``version_info`` (package + git),
    ``nested_accelerations`` (optional list), ``created`` (ISO time), ``acquired`` (the
    acquired part of k-space the mask was learned for: ``null`` for the full grid, else
    ``{"columns": [padding_left, padding_right]}``, optionally with ``"rows"``, or ``{"runs": ...}``;
    see :func:`~fastmri_diffmask.masks.acquired.acquired_record`; the mask is 0 outside it),
    ``num_acquirable`` and ``budget_convention`` (``"acquirable"``: the budget is
    ``round(N_acquirable / R)`` samples; fastMRI's masks count all ``W`` columns instead).

``load_mask_file`` validates all of it and raises :class:`~fastmri_diffmask.errors.UserError`
with one line on anything wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..utils import atomic_path

FORMAT = "fastmri-diffmask-mask"
VERSION = 1
_META_KEY = "fastmri_diffmask"


@dataclasses.dataclass
class MaskFile:
    """A learned mask with its provenance. See the module docstring for the fields."""

    mask: np.ndarray
    probabilities: np.ndarray
    logits: np.ndarray
    kind: str
    acceleration: float
    num_low_frequencies: int
    order: np.ndarray | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)

    @property
    def num_sampled(self) -> int:
        return int(self.mask.sum())

    @property
    def acquirable(self) -> np.ndarray:
        """Boolean grid of the entries inside the acquired range (metadata ``acquired``; all
        ``True`` when absent)."""
        from .acquired import acquirable_from_record

        return acquirable_from_record(self.mask.shape, self.metadata.get("acquired"))

    @property
    def achieved_acceleration(self) -> float:
        """``N_acquirable / num_sampled``: this package's convention, over the acquirable entries
        only (the columns inside ``[padding_left, padding_right)``); equals
        :attr:`achieved_acceleration_fastmri` when nothing is padded."""
        return float(self.acquirable.sum() / self.mask.sum())

    @property
    def achieved_acceleration_fastmri(self) -> float:
        """``N / num_sampled`` over all entries: fastMRI's convention (its masks count all ``W``
        columns, padding included)."""
        return float(self.mask.size / self.mask.sum())

    def mask_at(self, acceleration: float) -> np.ndarray:
        """The nested mask at another acceleration (needs ``order``): the first
        ``round(N_acquirable / R)`` acquirable entries of the ordering."""
        if abs(acceleration - self.acceleration) < 1e-9:
            return self.mask
        if self.order is None:
            raise UserError(
                f"mask file was learned at R={self.acceleration:g}, not R={acceleration:g}, and "
                "holds no nested ordering; learn a mask at that acceleration"
            )
        allowed = self.acquirable.ravel()
        order = self.order[allowed[self.order]]
        n = int(round(allowed.sum() / acceleration))
        if n > order.size or n < 1:
            raise UserError(f"acceleration {acceleration:g} is outside the nested ordering")
        flat = np.zeros(self.mask.size, np.float32)
        flat[order[:n]] = 1
        return flat.reshape(self.mask.shape)


def _git_version() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def save_mask_file(path: str | Path, mf: MaskFile) -> Path:
    """Write ``mf`` to ``path`` atomically (temp file, then rename)."""
    from safetensors.numpy import save_file

    _validate(mf, str(path))
    from .. import __version__

    meta = dict(mf.metadata)
    meta.update(
        format=FORMAT, version=VERSION, kind=mf.kind, shape=list(mf.shape),
        acceleration=float(mf.acceleration), num_low_frequencies=int(mf.num_low_frequencies),
        num_sampled=mf.num_sampled,
    )
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("version_info", {"package": __version__, "git": _git_version()})
    tensors = {
        "mask": np.ascontiguousarray(mf.mask, np.float32),
        "probabilities": np.ascontiguousarray(mf.probabilities, np.float32),
        "logits": np.ascontiguousarray(np.nan_to_num(mf.logits, posinf=1e4, neginf=-1e4), np.float32),
    }
    if mf.order is not None:
        tensors["order"] = np.ascontiguousarray(mf.order, np.int64)
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(meta)})
    mf.metadata = meta
    return path


def load_mask_file(path: str | Path) -> MaskFile:
    """Read and validate a mask file; one-line :class:`UserError` on anything wrong."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"mask file {path} does not exist; learn one with `fastmri-diffmask learn-mask`")
    try:
        with safe_open(str(path), framework="numpy") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise UserError(f"{path} is not a readable mask file ({type(e).__name__}); re-export it") from None
    if _META_KEY not in raw:
        raise UserError(f"{path} is a safetensors file but not a fastmri-diffmask mask file")
    try:
        meta = json.loads(raw[_META_KEY])
    except json.JSONDecodeError:
        raise UserError(f"{path}: mask metadata is not valid JSON; the file is corrupt") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise UserError(f"{path}: mask file version {meta.get('version')} is not supported (want {VERSION}); upgrade fastmri-diffmask")
    for key in ("mask", "probabilities", "logits"):
        if key not in tensors:
            raise UserError(f"{path}: mask file lacks the tensor {key!r}; the file is corrupt")
    try:
        mf = MaskFile(
            mask=tensors["mask"], probabilities=tensors["probabilities"], logits=tensors["logits"],
            kind=meta["kind"], acceleration=float(meta["acceleration"]),
            num_low_frequencies=int(meta["num_low_frequencies"]), order=tensors.get("order"),
            metadata=meta,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: mask metadata lacks or garbles {e}; the file is corrupt") from None
    _validate(mf, str(path))
    if list(mf.shape) != list(meta.get("shape", mf.shape)):
        raise UserError(f"{path}: mask shape {mf.shape} disagrees with its metadata {meta['shape']}")
    return mf


def centre_slices(shape: tuple[int, ...], num_low_frequencies: int) -> tuple[slice, ...]:
    """Index of the contiguous fully sampled centre (fastMRI's convention: starts at
    ``(N - num_low_frequencies + 1) // 2``) along each masked axis."""
    out = []
    for n in shape:
        start = (n - num_low_frequencies + 1) // 2
        out.append(slice(start, start + num_low_frequencies))
    return tuple(out)


def _validate(mf: MaskFile, where: str) -> None:
    if mf.kind not in ("line", "point"):
        raise UserError(f"{where}: mask kind {mf.kind!r} is not 'line' or 'point'")
    want_dim = 1 if mf.kind == "line" else 2
    if mf.mask.ndim != want_dim:
        raise UserError(f"{where}: a {mf.kind} mask must be {want_dim}-D, got shape {mf.mask.shape}")
    for name in ("probabilities", "logits"):
        if getattr(mf, name).shape != mf.mask.shape:
            raise UserError(f"{where}: {name} shape {getattr(mf, name).shape} differs from mask shape {mf.mask.shape}")
    if not np.all((mf.mask == 0) | (mf.mask == 1)):
        raise UserError(f"{where}: the binary mask holds values other than 0 and 1; the file is corrupt")
    if not np.all(np.isfinite(mf.probabilities)) or mf.probabilities.min() < 0 or mf.probabilities.max() > 1:
        raise UserError(f"{where}: probabilities must lie in [0, 1]; the file is corrupt")
    if not (mf.acceleration > 1):
        raise UserError(f"{where}: acceleration {mf.acceleration} must be > 1")
    if not 0 <= mf.num_low_frequencies <= min(mf.mask.shape):
        raise UserError(f"{where}: num_low_frequencies {mf.num_low_frequencies} does not fit shape {mf.mask.shape}")
    if mf.num_low_frequencies and not np.all(mf.mask[centre_slices(mf.mask.shape, mf.num_low_frequencies)] == 1):
        raise UserError(f"{where}: the centre of {mf.num_low_frequencies} is not fully sampled; the file is corrupt")
    if np.any(mf.mask[~mf.acquirable] > 0):
        raise UserError(f"{where}: the mask samples entries outside its acquired range {mf.metadata.get('acquired')}; "
                        "the file is corrupt")
    if mf.order is not None and (mf.order.ndim != 1 or mf.order.min() < 0 or mf.order.max() >= mf.mask.size):
        raise UserError(f"{where}: nested ordering indexes outside the mask; the file is corrupt")
