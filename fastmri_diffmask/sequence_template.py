"""The sampling pattern a sequence file holds, as :mod:`fastmri_diffmask.sequence` and
:mod:`fastmri_diffmask.pulseq` read it back (its own module so that neither imports the other)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class SequenceTemplate(NamedTuple):
    """A sampling pattern read back from a template: mask ``(W,)`` or ``(H, W)`` float32."""

    mask: np.ndarray
    num_low_frequencies: int
    acceleration: float
