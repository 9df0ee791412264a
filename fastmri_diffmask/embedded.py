"""The embedded default data: real axial brain slices from the Colin27 T1 head.

Colin27 (Holmes et al., "Enhancement of MR images using registration for signal averaging",
J Comput Assist Tomogr 1998) as shipped by Debian's ``mricron-data`` (``ch2.nii.gz``, BSD-3).
``scripts/make_embedded_data.py`` regenerates ``data/colin27_axial_128.npz`` from the Debian file.
See ``data/DATACARD.md``.

Splits are separated blocks of slices, with a gap of ``GAP`` slices dropped on both sides of the
validation and test blocks, so no slice has a neighbour in another split.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .errors import UserError

#: Slice indices (into the embedded stack) of the validation and test blocks.
VAL_BLOCK = range(60, 70)
TEST_BLOCK = range(80, 92)
GAP = 3
SPLITS = ("train", "val", "test")
DATA_ID = "colin27-axial-128-v1"


def embedded_magnitude() -> np.ndarray:
    """All embedded slices as float32 ``(N, 128, 128)`` magnitude images in [0, 1]."""
    with resources.files(__package__).joinpath("data/colin27_axial_128.npz").open("rb") as f:
        data = np.load(f, allow_pickle=False)
        return data["slices"].astype(np.float32) / 65535.0


def split_indices(split: str, num_slices: int | None = None) -> np.ndarray:
    """Indices of the embedded slices in ``split`` ("train", "val" or "test")."""
    n = num_slices if num_slices is not None else len(embedded_magnitude())
    held = set()
    for block in (VAL_BLOCK, TEST_BLOCK):
        held.update(range(block.start - GAP, block.stop + GAP))
    if split == "val":
        return np.arange(VAL_BLOCK.start, VAL_BLOCK.stop)
    if split == "test":
        return np.arange(TEST_BLOCK.start, TEST_BLOCK.stop)
    if split == "train":
        return np.asarray([i for i in range(n) if i not in held])
    raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
