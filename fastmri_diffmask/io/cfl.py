"""Read and write BART's ``.cfl`` / ``.hdr`` file pairs.

A BART array ``name`` is stored as two files:

* ``name.hdr``: a text header. The first line is ``# Dimensions``, the second the sizes of the
  array separated by spaces (BART writes all 16 of its dimensions, the unused ones as ``1``).
  Further ``# ...`` sections (command, files, creator) are informational and ignored here.
* ``name.cfl``: the raw data, interleaved complex64 (real, imaginary float32 pairs, native little
  endian) in column-major (Fortran) order: dimension 0 varies fastest.

BART's dimension order for MRI is ``x, y, z, coil, maps, ...`` (see :mod:`fastmri_diffmask.io.bart`
for the conversion from fastMRI's ``(coils, H, W)`` layout).

References
----------
Uecker M, Ong F, Tamir JI, et al. Berkeley Advanced Reconstruction Toolbox. Proc. ISMRM 2015;
23:2486. Format as written by BART 0.8.00 (``src/misc/io.c``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..utils import atomic_path

__all__ = ["BART_DIMS", "read_cfl", "write_cfl", "cfl_base"]

#: Number of dimensions BART writes into a header (``DIMS`` in BART's source).
BART_DIMS = 16


def cfl_base(name: str | os.PathLike) -> Path:
    """Return the path of a BART array without its ``.cfl`` / ``.hdr`` suffix."""
    path = Path(name)
    if path.suffix in (".cfl", ".hdr"):
        path = path.with_suffix("")
    return path


def _read_dims(hdr: Path) -> list[int]:
    try:
        lines = hdr.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"BART header {hdr} not found; pass the name of an existing .cfl/.hdr pair") from None
    for i, line in enumerate(lines):
        if line.strip().startswith("# Dimensions") and i + 1 < len(lines):
            try:
                dims = [int(v) for v in lines[i + 1].split()]
            except ValueError:
                break
            if dims and all(d >= 1 for d in dims):
                return dims
            break
    raise UserError(f"{hdr} has no valid '# Dimensions' line; it is not a BART header")


def read_cfl(name: str | os.PathLike, squeeze_trailing: bool = True) -> np.ndarray:
    """Read a BART array.

    Parameters
    ----------
    name : str or path-like
        Base name of the pair (``foo`` for ``foo.cfl`` + ``foo.hdr``); a ``.cfl``/``.hdr``
        suffix is accepted and stripped.
    squeeze_trailing : bool
        Drop trailing singleton dimensions (BART pads to 16). Leading and inner singleton
        dimensions are kept, so BART's axis numbers stay valid.

    Returns
    -------
    np.ndarray
        complex64 array with BART's dimension order (dim 0 first).
    """
    base = cfl_base(name)
    dims = _read_dims(base.with_name(base.name + ".hdr"))
    cfl = base.with_name(base.name + ".cfl")
    count = int(np.prod(dims))
    try:
        data = np.fromfile(cfl, dtype="<c8")
    except FileNotFoundError:
        raise UserError(f"BART data file {cfl} not found; the .hdr has no matching .cfl") from None
    if data.size != count:
        raise UserError(
            f"{cfl} holds {data.size} complex values but its header says {dims} ({count}); "
            "the pair is truncated or mismatched"
        )
    if squeeze_trailing:
        while len(dims) > 1 and dims[-1] == 1:
            dims = dims[:-1]
    return data.reshape(dims, order="F").astype(np.complex64, copy=False)


def write_cfl(name: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as a BART ``.cfl``/``.hdr`` pair; both files are written atomically.

    Parameters
    ----------
    name : str or path-like
        Base name (a ``.cfl``/``.hdr`` suffix is stripped).
    array : array-like
        Any numeric array; it is stored as complex64. Its axes are BART's dims 0, 1, ...; the
        header is padded with ``1`` up to 16 dimensions like BART's own files.

    Returns
    -------
    Path
        The base path written.
    """
    arr = np.asarray(array)
    if arr.ndim > BART_DIMS:
        raise UserError(f"array has {arr.ndim} dimensions but BART supports at most {BART_DIMS}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise UserError(f"cannot store dtype {arr.dtype} in a .cfl file; pass a numeric array")
    dims = list(arr.shape) if arr.ndim else [1]
    dims += [1] * (BART_DIMS - len(dims))
    base = cfl_base(name)
    data = np.asarray(arr, dtype="<c8").ravel(order="F")
    with atomic_path(base.with_name(base.name + ".cfl")) as tmp:
        data.tofile(tmp)
    with atomic_path(base.with_name(base.name + ".hdr")) as tmp:
        tmp.write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + " \n")
    return base
