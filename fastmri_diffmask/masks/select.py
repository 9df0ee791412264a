"""One entry point for every mask the commands use: fastMRI's, ours, and learned mask files."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import UserError

LEARNED = "learned_diffusion"


class Mask2D(NamedTuple):
    mask: np.ndarray          # (H, W) float32 0/1 over the k-space grid
    num_low_frequencies: int
    acceleration: float       # exact: acquirable H*W entries / samples (H*W when unpadded)
    mask_type: str


def make_mask(mask_type: str, shape: tuple[int, int], acceleration: float, num_low_frequencies: int | None = None,
              seed: int = 0, mask_file=None, acquired=None) -> Mask2D:
    """A 2D sampling mask over ``shape = (H, W)``.

    ``mask_type`` is a baseline name (:data:`fastmri_diffmask.masks.baselines.MASK_TYPES`) or
    ``"learned_diffusion"`` with ``mask_file`` (a path or :class:`~fastmri_diffmask.masks.file.MaskFile`).
    Line masks are broadcast over the readout rows. ``acquired`` (fastMRI's ``(padding_left,
    padding_right)`` columns, see :mod:`~fastmri_diffmask.masks.acquired`) keeps every mask 0
    outside the acquired range (a learned mask is zeroed there, as fastMRI's transforms do) and
    the acceleration counts acquirable entries.
    """
    h, w = shape
    if not acceleration > 1:
        raise UserError(f"acceleration {acceleration} must be > 1")
    if mask_type == LEARNED:
        from .file import MaskFile, load_mask_file

        if mask_file is None:
            raise UserError("mask type learned_diffusion needs a mask file; pass --learned-mask FILE")
        mf = mask_file if isinstance(mask_file, MaskFile) else load_mask_file(mask_file)
        m = mf.mask_at(acceleration)
        want = (w,) if mf.kind == "line" else (h, w)
        if m.shape != want:
            raise UserError(f"the {mf.kind} mask in the file has shape {m.shape} but the data need {want}; "
                            "learn a mask for this matrix size")
        nlf = mf.num_low_frequencies
    else:
        from .baselines import baseline_mask

        bm = baseline_mask(mask_type, (h, w), acceleration, num_low_frequencies=num_low_frequencies, seed=seed,
                           acquired=acquired)
        m, nlf = bm.mask, bm.num_low_frequencies
    from .acquired import acquirable

    allowed = acquirable((h, w), acquired)
    m2 = np.broadcast_to(np.asarray(m, np.float32), (h, w)).copy() if np.ndim(m) == 1 else np.asarray(m, np.float32)
    m2 = m2 * allowed
    return Mask2D(m2, int(nlf), float(allowed.sum() / max(m2.sum(), 1)), mask_type)
