"""Image quality metrics on magnitude images: fastMRI's definitions and the paper's variants.

fastMRI (``fastmri.evaluate``), used as they are:

* ``nmse = ||gt - pred||^2 / ||gt||^2``;
* ``psnr``: skimage PSNR with ``data_range = gt.max()``;
* ``ssim``: skimage SSIM (7x7 uniform window) per 2D slice with ``data_range = gt.max()``,
  averaged over slices. fastMRI takes the maximum over the whole volume; :func:`score` on one
  slice uses that slice's maximum (a one-slice volume), :func:`score_volume` the volume's.

The paper's variants (arXiv 2306.03284, computed with skimage on magnitudes):

* ``psnr_paper`` / ``ssim_paper``: the same with ``data_range = gt.max() - gt.min()``.

Inputs may be complex (their magnitude is scored) or real (taken as magnitudes, ``abs``).

References
----------
Zbontar J, et al. fastMRI: an open dataset and benchmarks for accelerated MRI. arXiv:1811.08839.
Wang Z, Bovik AC, Sheikh HR, Simoncelli EP. Image quality assessment: from error visibility to
structural similarity. IEEE TIP 2004;13:600-612.
"""

from __future__ import annotations

import numpy as np
from fastmri import evaluate as fm_eval
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .errors import UserError

__all__ = ["score", "score_volume", "METRIC_NAMES"]

#: Keys of the dicts returned by :func:`score` and :func:`score_volume`.
METRIC_NAMES = ("nmse", "psnr", "ssim", "psnr_paper", "ssim_paper")


def _magnitudes(target, pred, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.abs(np.asarray(target)).astype(np.float64)
    pr = np.abs(np.asarray(pred)).astype(np.float64)
    if gt.shape != pr.shape:
        raise UserError(f"target shape {gt.shape} differs from prediction shape {pr.shape}; score images of one size")
    if gt.ndim != ndim:
        want = "(H, W)" if ndim == 2 else "(slices, H, W)"
        raise UserError(f"expected {want} images, got shape {gt.shape}")
    if min(gt.shape[-2:]) < 7:
        raise UserError(f"images of shape {gt.shape} are smaller than SSIM's 7x7 window; score larger images")
    if not (np.isfinite(gt).all() and np.isfinite(pr).all()):
        raise UserError("target or prediction holds NaN or Inf; check the reconstruction")
    if not gt.max() > 0:
        raise UserError("target is all zero; PSNR and NMSE are undefined")
    return gt, pr


def score(target, pred) -> dict[str, float]:
    """Score one 2D slice.

    Parameters
    ----------
    target, pred : array-like
        ``(H, W)`` images, real or complex (magnitudes are scored).

    Returns
    -------
    dict
        ``nmse``, ``psnr``, ``ssim`` (fastMRI, ``data_range = target.max()``) and
        ``psnr_paper``, ``ssim_paper`` (``data_range = target.max() - target.min()``).
    """
    gt, pr = _magnitudes(target, pred, 2)
    return _scores(gt, pr)


def score_volume(target, pred) -> dict[str, float]:
    """Score a volume ``(slices, H, W)`` with fastMRI's volume definitions.

    NMSE and PSNR over the whole volume, SSIM the mean over slices, all with the volume's maximum
    as data range (``fastmri.evaluate``); the paper's variants use the volume's ``max - min``.
    """
    gt, pr = _magnitudes(target, pred, 3)
    return _scores(gt, pr)


def _scores(gt: np.ndarray, pr: np.ndarray) -> dict[str, float]:
    vol_gt, vol_pr = (gt[None], pr[None]) if gt.ndim == 2 else (gt, pr)
    rng_paper = float(gt.max() - gt.min())
    if not rng_paper > 0:
        rng_paper = float(gt.max())
    ssim_paper = np.mean(
        [structural_similarity(g, p, data_range=rng_paper) for g, p in zip(vol_gt, vol_pr)]
    )
    with np.errstate(divide="ignore"):  # identical images: PSNR = inf, no warning
        psnr = float(fm_eval.psnr(vol_gt, vol_pr))
        psnr_paper = float(peak_signal_noise_ratio(vol_gt, vol_pr, data_range=rng_paper))
    return {
        "nmse": float(fm_eval.nmse(vol_gt, vol_pr)),
        "psnr": psnr,
        "ssim": float(np.squeeze(fm_eval.ssim(vol_gt, vol_pr))),
        "psnr_paper": psnr_paper,
        "ssim_paper": float(ssim_paper),
    }
