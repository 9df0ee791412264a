"""Image quality metrics on magnitude images: fastMRI's definitions and the paper's variants.

fastMRI (``fastmri.evaluate``), used as they are:

* ``nmse = ||gt - pred||^2 / ||gt||^2``;
* ``psnr``: skimage PSNR with ``data_range = gt.max()``;
* ``ssim``: skimage SSIM (7x7 uniform window) per 2D slice with ``data_range = gt.max()``,
  averaged over slices. fastMRI takes the maximum over the whole volume; :func:`score` on one
  slice uses that slice's maximum (a one-slice volume), :func:`score_volume` the volume's.

The paper's variants (arXiv 2306.03284, computed with skimage on magnitudes):

* ``psnr_paper`` / ``ssim_paper``: the same with ``data_range = gt.max() - gt.min()``.

A hallucination measure (this project's own definition, not from fastMRI or the paper):

* ``bg_error``: the energy of the reconstruction error *outside the object*, as a fraction of the
  target's energy, ``sum_{not S} (|pred| - |gt|)^2 / sum |gt|^2``. The support ``S`` is read
  from the target (:func:`object_support`): the target magnitude smoothed by a Gaussian of
  ``BG_SMOOTH`` pixels, above ``BG_THRESHOLD`` of its maximum, holes filled (dark ventricles and
  CSF are inside), dilated by a disk of ``BG_MARGIN`` pixels (edges and ringing next to the object
  are not background). Structure painted into empty background (an arc beside the head) raises it
  one for one; errors inside the head do not, so at equal PSNR it tells the two apart. A noisy
  (fastMRI-style RSS) target puts a floor under it: the target's own background noise energy.

:func:`worst_slice` gives the worst value over slices of each metric (min PSNR / SSIM, max NMSE /
``bg_error``), which callers report next to the mean so that one bad slice cannot hide.

Inputs may be complex (their magnitude is scored) or real (taken as magnitudes, ``abs``).

References
----------
Zbontar J, et al. fastMRI: an open dataset and benchmarks for accelerated MRI. arXiv:1811.08839.
Wang Z, Bovik AC, Sheikh HR, Simoncelli EP. Image quality assessment: from error visibility to
structural similarity. IEEE TIP 2004;13:600-612.
Bhadra S, Kelkar VA, Brooks FJ, Anastasio MA. On hallucinations in tomographic image
reconstruction. IEEE Trans Med Imaging 2021;40:3249-3260 (hallucinations as errors the
measurements cannot see; ``bg_error`` is a simpler, support-based stand-in of our own).
"""

from __future__ import annotations

import numpy as np
from fastmri import evaluate as fm_eval
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .errors import UserError

__all__ = ["score", "score_volume", "METRIC_NAMES", "object_support", "background_error", "worst_slice"]

#: Keys of the dicts returned by :func:`score` and :func:`score_volume`.
METRIC_NAMES = ("nmse", "psnr", "ssim", "psnr_paper", "ssim_paper", "bg_error")
#: Which end of each metric is bad (:func:`worst_slice`): the smallest PSNR / SSIM, the largest errors.
WORST = {"psnr": min, "ssim": min, "psnr_paper": min, "ssim_paper": min, "nmse": max, "bg_error": max}
#: The support rule of :func:`object_support`: threshold (fraction of the smoothed target's
#: maximum), dilation radius in pixels, Gaussian smoothing in pixels.
BG_THRESHOLD, BG_MARGIN, BG_SMOOTH = 0.1, 3, 1.0


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
        "bg_error": _background_error(vol_gt, vol_pr),
    }


def object_support(target, threshold: float = BG_THRESHOLD, margin: int = BG_MARGIN,
                   smooth: float = BG_SMOOTH) -> np.ndarray:
    """The object's support in a target image ``(H, W)`` or volume ``(slices, H, W)``, per slice.

    ``gaussian_filter(|target|, smooth) > threshold * its max``, holes filled, dilated by a disk of
    radius ``margin`` pixels (scipy.ndimage). A slice with no signal has an empty support.
    """
    from scipy import ndimage

    gt = np.abs(np.asarray(target)).astype(np.float64)
    if gt.ndim not in (2, 3):
        raise UserError(f"expected an (H, W) image or (slices, H, W) volume, got shape {gt.shape}")
    if not 0 < threshold < 1 or margin < 0 or smooth < 0 or int(margin) != margin:
        raise UserError(f"support rule needs 0 < threshold < 1, an integer margin >= 0 and smooth >= 0; "
                        f"got {threshold}, {margin}, {smooth}")
    r = int(margin)
    disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r
    out = np.zeros(gt.shape, dtype=bool)
    for i, g in enumerate(gt[None] if gt.ndim == 2 else gt):
        g = ndimage.gaussian_filter(g, smooth) if smooth > 0 else g
        if not g.max() > 0:
            continue
        s = ndimage.binary_fill_holes(g > threshold * g.max())
        s = ndimage.binary_dilation(s, structure=disk) if r > 0 else s
        out[i if gt.ndim == 3 else slice(None)] = s
    return out


def _background_error(gt: np.ndarray, pr: np.ndarray) -> float:
    outside = ~object_support(gt)
    return float(((pr - gt) ** 2)[outside].sum() / (gt ** 2).sum())


def background_error(target, pred) -> float:
    """``bg_error`` of one slice ``(H, W)`` or a volume ``(slices, H, W)`` (supports per slice):
    the error energy outside :func:`object_support` over the target's energy (module docstring)."""
    gt = np.abs(np.asarray(target))
    gt, pr = _magnitudes(target, pred, gt.ndim if gt.ndim in (2, 3) else 2)
    return _background_error(gt, pr)


def worst_slice(per_slice: list[dict], names=None) -> dict[str, float]:
    """The worst value over slices of each metric in ``names`` (default: those of :data:`WORST`
    present in every row): the minimum PSNR / SSIM, the maximum NMSE / ``bg_error``."""
    if not per_slice:
        raise UserError("no slices to take the worst of")
    names = [k for k in WORST if all(k in r for r in per_slice)] if names is None else names
    unknown = sorted(set(names) - set(WORST))
    if unknown:
        raise UserError(f"no worst-slice rule for {', '.join(unknown)}; known: {', '.join(WORST)}")
    return {k: float(WORST[k](r[k] for r in per_slice)) for k in names}
