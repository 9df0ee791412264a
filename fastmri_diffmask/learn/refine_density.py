"""Refinement of a point mask's density scored by the reconstruction itself: reweight rings of k-space.

The point-mask peer of :mod:`.refine` (which moves the lines of a line mask). Moving one of a
point mask's thousands of samples changes a reconstruction too little to measure; what the
reconstruction does see is how the samples are shared between low and high frequencies. So the
search runs over the *radial profile* of the density and keeps the export rule fixed:

1. split the free entries into ``rings`` rings of equal count by their distance to the k-space
   centre (:func:`ring_index`);
2. a candidate density is the current one with ring ``k``'s entries multiplied by ``factor`` or
   ``1 / factor``, LOUPE-renormalised to the exact budget
   (:meth:`~fastmri_diffmask.masks.bernoulli.BernoulliMask.renormalised`), exported by the same
   systematic sampling along the Hilbert walk as the export's candidates
   (:meth:`~fastmri_diffmask.masks.bernoulli.BernoulliMask.systematic`, the chosen ``offset``);
3. score every candidate by the mean PSNR of DDS reconstructions of a few *training* slices
   (:class:`.greedy_search.TrainingScorer`, common random numbers); for each ring in
   turn (innermost first) keep the better reweighting if it raises the score by more than
   ``min_gain`` dB; repeat for ``sweeps`` sweeps, stopping after a sweep that keeps nothing.

The budget is exact for every candidate (the systematic export places exactly
``budget - n_fixed`` free samples); fixed (centre) and excluded (padded) entries never change.
Cost: at most ``sweeps * rings * 2`` reconstructions of the scorer's slices, batched.

With ``anisotropy`` the search also reweights by angle: two more "rings" whose trial multiplies
the density by ``factor ** cos(2 theta)`` or ``factor ** sin(2 theta)`` (``theta`` the angle of
the entry about the centre, in units of half each axis; :func:`angular_harmonics`) or their
inverses, so samples can move between the two axes (or the diagonals) of k-space, where an
elongated object puts different amounts of energy (4 more reconstructions per sweep).

References
----------
Gozcu B, et al. Learning-based compressive MRI. IEEE Trans Med Imaging 2018;37:1394-1406 (masks
scored by the reconstruction).
Knoll F, et al. Adapted random sampling patterns for accelerated MRI. MAGMA 2011;24:43-50
(the radial density profile as the quantity to adapt to the data).
Cochran WG. Sampling Techniques, 3rd ed., 1977, ch. 8 (systematic sampling).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..masks.bernoulli import BernoulliMask, centre_distance
from .greedy import check_count
from .greedy_search import TrainingScorer


def ring_index(mask: BernoulliMask, rings: int) -> np.ndarray:
    """Ring number (0 = innermost) of every entry of ``mask``'s shape, -1 for fixed and excluded
    entries: the free entries split into ``rings`` groups of (nearly) equal count by their
    distance to the k-space centre (ties by index)."""
    rings = check_count("rings", rings)
    free = mask.free.cpu().numpy().ravel()
    idx = np.flatnonzero(free)
    if idx.size < rings:
        raise UserError(f"{rings} rings need at least as many free entries; the mask has {idx.size}")
    order = idx[np.lexsort((idx, centre_distance(mask.shape).ravel()[idx]))]
    out = np.full(free.size, -1, dtype=np.int64)
    out[order] = np.arange(order.size) * rings // order.size
    return out.reshape(mask.shape)


def angular_harmonics(shape) -> np.ndarray:
    """``(2, H, W)``: ``cos(2 theta)`` and ``sin(2 theta)`` of every entry's angle about the k-space
    centre ``N // 2`` (coordinates in units of half each axis, as
    :func:`~fastmri_diffmask.masks.bernoulli.centre_distance`); 0 at the centre itself."""
    ky, kz = np.meshgrid(*[(np.arange(n) - n // 2) / (n / 2) for n in shape], indexing="ij")
    r2 = ky ** 2 + kz ** 2
    safe = np.where(r2 > 0, r2, 1.0)
    return np.stack([np.where(r2 > 0, (ky ** 2 - kz ** 2) / safe, 0.0), np.where(r2 > 0, 2 * ky * kz / safe, 0.0)])


def reweighted(mask: BernoulliMask, density: torch.Tensor, ring: np.ndarray, log_weights: np.ndarray,
               angular: np.ndarray | None = None) -> torch.Tensor:
    """``density`` with ring ``k``'s entries multiplied by ``exp(log_weights[k])``, renormalised to
    ``mask``'s budget (fixed entries 1, excluded 0). With ``angular`` (:func:`angular_harmonics`),
    ``log_weights`` carries two more entries ``a, b`` and every free entry is also multiplied by
    ``exp(a cos 2 theta + b sin 2 theta)``."""
    log_weights = np.asarray(log_weights, np.float64)
    rings = int(ring.max()) + 1
    log_w = np.where(ring >= 0, log_weights[np.maximum(ring, 0)], 0.0)
    if angular is not None:
        a, b = log_weights[rings:rings + 2]
        log_w = log_w + np.where(ring >= 0, a * angular[0] + b * angular[1], 0.0)
    return mask.renormalised(density.detach().double() * torch.from_numpy(np.exp(log_w)))


def refine_point_density(score: TrainingScorer, mask: BernoulliMask, density: torch.Tensor, *, offset: float = 0.5,
                         rings: int = 8, factor: float = 1.5, sweeps: int = 2, min_gain: float = 0.0,
                         anisotropy: bool = False, progress: bool = True) -> tuple[torch.Tensor, dict]:
    """Reweight rings of a point mask's density while the DDS score on training slices rises.

    Parameters
    ----------
    score : TrainingScorer
        The judge: mean DDS PSNR of masks on its training slices (kind ``"point"``, the mask's shape).
    mask : BernoulliMask
        The point mask (its fixed centre, excluded entries and budget).
    density : tensor of ``mask.shape``
        The density the export sampled (e.g. ``mask.flattened(w)`` of the chosen candidate).
    offset : float in [0, 1)
        The systematic-sampling offset of the export (the chosen candidate's).
    rings, factor : int, float > 1
        Number of equal-count rings; each trial multiplies one ring by ``factor`` or ``1 / factor``.
    sweeps, min_gain
        Passes over the rings (stops early after a pass that keeps nothing); a reweighting is kept
        only if it raises the score by more than ``min_gain`` dB.
    anisotropy : bool
        Also try the two angular reweightings (module docstring), after the rings in each sweep.

    Returns
    -------
    mask : float tensor of ``mask.shape``, 0/1, exactly ``mask.budget`` samples
    history : dict
        ``start`` / ``end`` scores (dB), ``log_weights`` (per ring, the kept reweighting; with
        ``anisotropy`` then the cos and sin coefficients), ``kept`` (``sweep``, ``ring`` (``rings``
        and ``rings + 1``: the angular harmonics), ``factor``, ``score``), ``reconstructions``, ``slices``,
        ``sweeps_run`` and the settings.
    """
    if mask.kind != "point" or score.kind != "point" or tuple(score.shape) != tuple(mask.shape):
        raise UserError("the density refinement reweights rings of a point mask, scored as point masks of its shape; "
                        "line masks use refine_line_mask")
    if tuple(density.shape) != tuple(mask.shape):
        raise UserError(f"density shape {tuple(density.shape)} does not match the mask shape {tuple(mask.shape)}")
    if not float(factor) > 1:
        raise UserError(f"the ring reweighting factor must be > 1, got {factor}")
    sweeps = check_count("sweeps", sweeps)
    ring = ring_index(mask, rings)
    angular = angular_harmonics(mask.shape) if anisotropy else None
    groups = rings + (2 if anisotropy else 0)  # the parameters: one log-weight per ring (+ 2 angular)

    def export(log_w: np.ndarray) -> np.ndarray:
        return mask.systematic(offset, probabilities=reweighted(mask, density, ring, log_w, angular)).numpy() > 0.5

    log_w = np.zeros(groups)
    current_mask = export(log_w)
    current = score(current_mask[None])[0]
    history = {"start": current, "kept": [], "rings": int(rings), "factor": float(factor), "offset": float(offset),
               "slices": score.slices, "dds_steps": score.dds_steps, "seed": score.seed, "init": score.init,
               "sigma_start": score.sigma_start, "eta": score.eta, "churn": score.churn, "sweeps_run": 0,
               "anisotropy": bool(anisotropy)}
    step = float(np.log(factor))
    bar = tqdm(total=sweeps * groups, desc="refine: reweighting rings", unit="ring", disable=not progress, leave=False)
    for sweep in range(sweeps):
        kept = 0
        for k in range(groups):  # ring k (k < rings) or angular harmonic k - rings
            trial_w = [log_w + np.where(np.arange(groups) == k, s * step, 0.0) for s in (1, -1)]
            trials = [export(w) for w in trial_w]
            scores = score(np.stack(trials))
            best = int(np.argmax(scores))
            if scores[best] > current + min_gain:
                log_w, current_mask, current = trial_w[best], trials[best], scores[best]
                history["kept"].append({"sweep": sweep + 1, "ring": k, "factor": float(np.exp((1, -1)[best] * step)),
                                        "score": current})
                kept += 1
            bar.update(1)
            bar.set_postfix(psnr=f"{current:.2f}")
        history["sweeps_run"] = sweep + 1
        if not kept:
            break
    bar.close()
    history.update(end=current, log_weights=log_w.tolist(), reconstructions=score.reconstructions)
    return torch.from_numpy(current_mask.astype(np.float32)), history
