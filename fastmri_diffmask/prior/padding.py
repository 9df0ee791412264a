"""Pad images to the size multiple a backbone needs, and crop back: any matrix size in a denoiser.

A UNet with ``L`` resolution levels halves the image ``L - 1`` times and concatenates the skip
connections on the way up, so it only runs on ``H, W`` divisible by ``2**(L-1)`` (Ronneberger et
al., "U-Net", MICCAI 2015). fastMRI's matrices are often not: brain widths 396 and 372, or a
converted file 127 columns wide. :class:`~fastmri_diffmask.prior.edm.EDMPrecond` therefore pads the
backbone's input up to the next multiple with :func:`pad_to_multiple` and crops its output back
with :func:`crop_padding`; an input already a multiple is passed through untouched (the same
numbers, bit for bit).

**Padding mode: reflect.** The backbone's input is a *noisy* image ``c_in (x0 + sigma n)``. Mirror
padding continues both the anatomy and the noise at the border with the same local statistics
(intensity, noise level ``sigma``), so the few padded pixels (at most ``multiple - 1`` per axis)
look like the images the denoiser was trained on. Zero padding would put a noise-free band of
exact zeros next to noise of level ``sigma``: at large ``sigma`` that is a step edge the denoiser
reads as signal and smears back into the border pixels, an artefact the crop does not remove.
Where a side needs more pixels than the image can mirror (images smaller than the pad, toy sizes
only), the border pixel is repeated instead (``replicate``).
The pad is split evenly between the two sides (the extra pixel, if any, after the image), so the
image's centre stays at the centre of the padded grid, as in the images the prior was trained on.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

#: The mode of :func:`pad_to_multiple`; see the module docstring for why reflect.
PAD_MODE = "reflect"


def size_multiple(backbone) -> int:
    """The multiple ``H`` and ``W`` must have for ``backbone``: its ``size_multiple`` attribute,
    or 1 (any size) for backbones without one."""
    return int(getattr(backbone, "size_multiple", 1) or 1)


def padding_for(h: int, w: int, multiple: int) -> tuple[int, int, int, int]:
    """``(left, right, top, bottom)`` pixels that bring ``(h, w)`` to multiples of ``multiple``,
    split evenly (the odd pixel after the image); in :func:`torch.nn.functional.pad` order."""
    ph, pw = -h % multiple, -w % multiple
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``x`` ``(B, C, H, W)`` to ``H, W`` divisible by ``multiple`` by reflection.

    Parameters
    ----------
    x : Tensor
        ``(B, C, H, W)`` images.
    multiple : int
        The size multiple (``2**(levels-1)`` for a UNet).

    Returns
    -------
    (Tensor, tuple)
        The padded images and the ``(left, right, top, bottom)`` padding, for :func:`crop_padding`.
        ``x`` itself (not a copy) when no padding is needed.
    """
    h, w = x.shape[-2:]
    pad = padding_for(h, w, multiple)
    if not any(pad):
        return x, pad
    fits = max(pad[:2]) < w and max(pad[2:]) < h  # reflect needs pad < size on each axis
    return F.pad(x, pad, mode=PAD_MODE if fits else "replicate"), pad


def crop_padding(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`: crop ``(left, right, top, bottom)`` pixels off ``x``."""
    if not any(pad):
        return x
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top:h - bottom, left:w - right]
