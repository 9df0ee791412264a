"""Stochastic greedy mask selection scored by the reconstruction itself: the reference learner.

Gozcu et al. (2018) build a mask greedily: starting from the low frequencies, add the line (or
point) whose addition gives the best mean reconstruction quality on training images, until the
budget is met. Sanchez et al. (2020) make it scale by scoring only a random subset of the
candidates at each step (stochastic greedy). Here the reconstruction is the test-time sampler,
DDS (:func:`fastmri_diffmask.sample.dds.dds_reconstruct`; Chung, Lee, Ye, ICLR 2024) with
``dds_steps`` steps, and the quality the mean PSNR (:func:`.validate.psnr`) on ``num_slices``
training slices spread over the training set:

1. start from the fixed entries (the centre, plus any ``fixed``);
2. draw ``candidates`` of the unsampled, non-excluded entries at random;
3. reconstruct the slices with the current mask plus each candidate and keep the best;

until the budget of the :class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask` is met exactly.

All reconstructions share their random numbers (common random numbers): every candidate mask at
every step sees the initial and churn noise of one ``dds_reconstruct`` call on the ``num_slices``
slices with a generator seeded ``seed``, so two masks' scores differ only through the masks. The
candidates x slices are stacked into batches of at most ``max_batch`` reconstructions.

Cost: ``(budget - n_fixed) * candidates`` reconstructions of ``num_slices`` slices (fewer when
fewer than ``candidates`` entries remain), each ``dds_steps`` denoiser evaluations per slice.

References
----------
Gozcu B, Mahabadi RK, Li YH, Ilicak E, Cukur T, Scarlett J, Cevher V. Learning-based compressive
MRI. IEEE Trans Med Imaging 2018;37:1394-1406.
Sanchez T, Gozcu B, van Heeswijk RB, Eftekhari A, Ilicak E, Cukur T, Cevher V. Scalable
learning-based sampling optimization for compressive dynamic MRI. ICASSP 2020 (arXiv:1902.00386).
Chung H, Lee S, Ye JC. Decomposed diffusion sampler for accelerating large-scale inverse
problems. ICLR 2024.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..masks.bernoulli import as_kspace_mask
from ..physics import to_channels, to_complex
from ..sample.dds import DDS_DEFAULTS, dds_step
from ..sample.schedule import data_consistency, prepare_sampling
from .greedy import build_mask, check_count, fixed_order
from .validate import psnr


def spread_indices(n: int, k: int) -> list[int]:
    """``k`` of ``n`` indices at the centres of ``k`` equal strata (all of them when ``k >= n``),
    as :func:`fastmri_diffmask.dataset.load_slices` spreads slices."""
    if k >= n:
        return list(range(n))
    return [int((j + 0.5) * n / k) for j in range(k)]


def dds_shared_noise(prior, kspace: torch.Tensor, sens_maps: torch.Tensor, masks: torch.Tensor, kind: str,
                     steps: int, seed: int, dc_weight: float = DDS_DEFAULTS["dc_weight"],
                     cg_iters: int = DDS_DEFAULTS["cg_iters"], churn: float = DDS_DEFAULTS["churn"],
                     init: str = "noise", sigma_start: float | None = None, eta: float | None = None) -> torch.Tensor:
    """DDS reconstructions ``(M, n, H, W)`` of ``n`` fully sampled slices under each of ``M`` masks.

    Reconstruction ``[j]`` equals ``dds_reconstruct(prior, kspace * km_j, km_j, sens_maps, steps,
    generator=torch.Generator().manual_seed(seed), init=init, sigma_start=sigma_start, eta=eta)`` (the
    same initial, churn and fresh noise for every mask; a warm start ``init`` of
    :mod:`fastmri_diffmask.sample.warm_start` other than ``"l1"`` from ``sigma_start``),
    computed in one batch of ``M * n``.
    """
    from ..sample.warm_start import check_eta, check_warm_start, initial_estimate

    start, eta = check_warm_start(init, sigma_start), check_eta(eta)
    if init == "l1":
        raise ValueError("the shared-noise scorer takes the noise, zero-filled or sense starts")
    m_count, n = masks.shape[0], kspace.shape[0]
    km = as_kspace_mask(masks.repeat_interleave(n, 0).to(kspace.device), kind)
    masked = kspace.repeat(m_count, 1, 1, 1) * km
    p = prepare_sampling(masked, km, sens_maps.repeat(m_count, 1, 1, 1), steps, churn, torch.Generator(),
                         **({} if start is None else {"sigma_max": start}))
    gen = torch.Generator().manual_seed(int(seed))
    shape = (n, 2, *kspace.shape[-2:])
    tile = lambda z: z.to(kspace.device, torch.float32).repeat(m_count, 1, 1, 1)  # noqa: E731
    t = p.sigmas
    x = tile(torch.randn(shape, generator=gen)) * float(t[0])  # what dds_reconstruct draws for n slices
    with torch.no_grad():
        x_init = initial_estimate(init, p.op, p.y, p.scale, masked, km, sens_maps)
    if x_init is not None:
        x = x + to_channels(x_init).to(x.dtype)
    with torch.no_grad():
        for i in range(steps):
            sigma_hat = float(t[i]) * (1 + p.gamma)
            if p.gamma > 0:  # EDM churn, as sample.dps.churn_noise, with the n-slice noise tiled
                x = x + math.sqrt(sigma_hat ** 2 - float(t[i]) ** 2) * tile(torch.randn(shape, generator=gen))
            denoised = prior(x, torch.full((x.shape[0],), sigma_hat, device=x.device))
            consistent = to_channels(data_consistency(p.op, p.y, to_complex(denoised), dc_weight, cg_iters))
            fresh = tile(torch.randn(shape, generator=gen)) if eta is not None and i + 1 < steps else None
            x = dds_step(x, denoised, consistent, sigma_hat, float(t[i + 1]), eta, fresh)  # noise tiled over masks
    return (to_complex(x) * p.scale).reshape(m_count, n, *kspace.shape[-2:])


#: The classical reconstructions :class:`TrainingScorer` can average into its score.
CLASSICAL_SCORES = ("none", "sense", "l1")


def classical_reconstructions(kspace: torch.Tensor, sens_maps: torch.Tensor, masks: torch.Tensor, kind: str,
                              how: str) -> torch.Tensor:
    """Classical reconstructions ``(M * n, H, W)`` of ``n`` fully sampled slices under each of ``M``
    0/1 masks (mask-major): ``"sense"``, Tikhonov-regularised CG-SENSE (the DDS warm start,
    :func:`~fastmri_diffmask.sample.warm_start.sense_estimate`, in the data's units), or ``"l1"``,
    BART ``pics -l1`` with the validated lamda (:func:`~fastmri_diffmask.sample.warm_start.l1_estimate`)."""
    from ..physics import MultiCoilOperator, percentile_scale
    from ..sample.warm_start import l1_estimate, sense_estimate

    m_count, n = masks.shape[0], kspace.shape[0]
    km = as_kspace_mask(masks.repeat_interleave(n, 0).to(kspace.device), kind)
    masked, maps = kspace.repeat(m_count, 1, 1, 1) * km, sens_maps.repeat(m_count, 1, 1, 1)
    if how == "l1":
        return l1_estimate(masked, km, maps)
    op = MultiCoilOperator(maps, km)
    scale = percentile_scale(op.adjoint(masked))
    return sense_estimate(op, masked / scale.unsqueeze(1)) * scale


class TrainingScorer:
    """Mean DDS PSNR of masks on ``num_slices`` training slices spread over the set, with common
    random numbers (:func:`dds_shared_noise`), batched ``max_batch`` slice reconstructions at a time;
    counts the masks it scores (``reconstructions``); ``churn=None`` is DDS's default. With
    ``classical`` ``"sense"`` or ``"l1"`` a mask's score is the mean of that PSNR and the one of the
    classical reconstruction (:func:`classical_reconstructions`), so a move must not buy DDS quality
    with the classical one. Shared by
    :func:`greedy_search_mask`, :func:`fastmri_diffmask.learn.refine.refine_line_mask` and
    :func:`fastmri_diffmask.learn.refine_density.refine_point_density`."""

    def __init__(self, prior, train, kind: str, shape, num_slices: int, dds_steps: int, seed: int,
                 max_batch: int = 16, device="cpu", init: str = "noise", sigma_start: float | None = None,
                 eta: float | None = None, churn: float | None = None, classical: str = "none"):
        if classical not in CLASSICAL_SCORES:
            raise UserError(f"the classical score must be one of {', '.join(CLASSICAL_SCORES)}, got {classical!r}")
        self.prior, self.kind, self.shape, self.dds_steps, self.seed = prior, kind, tuple(shape), dds_steps, int(seed)
        self.classical = classical
        self.init, self.sigma_start, self.eta = init, sigma_start, eta
        self.churn = DDS_DEFAULTS["churn"] if churn is None else churn  # None: DDS's default
        self.slices = spread_indices(train.kspace.shape[0], num_slices)
        data = train.subset(self.slices)
        self.kspace, self.maps = data.kspace.to(device), data.sens_maps.to(device)
        self.truth = data.images.abs().to(device)
        self.per_call = max(1, max_batch // len(self.slices))
        self.reconstructions = 0

    def __call__(self, masks: np.ndarray) -> list[float]:
        """Scores (dB) of 0/1 masks ``(M, *shape)`` (or flattened ``(M, N)``)."""
        return self.scores(masks)[0]

    def scores(self, masks: np.ndarray) -> tuple[list[float], np.ndarray]:
        """``(means, per_slice)``: the scores of :meth:`__call__` and ``(M, num_slices)`` per-slice
        scores (dB; with ``classical`` the mean of the two PSNRs of each slice)."""
        out, per_slice = [], []
        for j in range(0, len(masks), self.per_call):
            ms = torch.from_numpy(masks[j:j + self.per_call].reshape(-1, *self.shape).astype(np.float32))
            rec = dds_shared_noise(self.prior, self.kspace, self.maps, ms, self.kind, self.dds_steps, self.seed,
                                   churn=self.churn, init=self.init, sigma_start=self.sigma_start, eta=self.eta)
            truth = self.truth.repeat(ms.shape[0], 1, 1)
            each = psnr(rec.abs().flatten(0, 1), truth).view(ms.shape[0], -1)
            score = each.mean(1)
            if self.classical != "none":  # the mean of the two reconstructions' PSNRs
                rec = classical_reconstructions(self.kspace, self.maps, ms, self.kind, self.classical)
                each_classical = psnr(rec.abs(), truth).view(ms.shape[0], -1)
                score = (score + each_classical.mean(1)) / 2
                each = (each + each_classical) / 2
            out += score.tolist()
            per_slice.append(each.double().cpu().numpy())
        self.reconstructions += len(masks)
        return out, np.concatenate(per_slice)


def greedy_search_mask(prior, train, kind: str, acceleration: float, num_low_frequencies: int, *,
                       candidates: int = 8, num_slices: int = 4, dds_steps: int = 25, seed: int = 0,
                       fixed=None, corner_cut: bool = False, max_batch: int = 16, progress: bool = True,
                       device="cpu") -> tuple[torch.Tensor, dict]:
    """Learn an exact-budget 0/1 mask by stochastic greedy search on the DDS reconstruction's PSNR.

    Parameters
    ----------
    prior : Denoiser
    train : SliceData
        Fully sampled training slices; ``num_slices`` of them spread over the set are scored.
    kind, acceleration, num_low_frequencies, fixed, corner_cut
        As for :class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask` (its fixed set is the start,
        its free set the candidates, its budget the end).
    candidates : int
        Entries drawn (without replacement) and scored per addition.
    dds_steps : int
        Steps of each DDS reconstruction (the other settings: ``DDS_DEFAULTS``).
    seed : int
        The DDS noise of every reconstruction (seed ``seed``) and the candidate draws (a generator
        seeded ``seed + 1``).
    max_batch : int
        At most this many slice reconstructions per batch (candidates x slices).

    Returns
    -------
    mask : float tensor ``(W,)`` or ``(H, W)``, 0/1, exactly the budget
    history : dict
        ``additions`` (per addition: ``step``, ``candidates`` (flat indices), ``scores`` (mean
        PSNR dB of each), ``index`` (the one kept, the argmax), ``psnr``), ``order`` (fixed
        entries nearest the centre first, then the additions), ``reconstructions`` (candidate
        masks scored, each a reconstruction of ``num_slices`` slices: ``(budget - n_fixed) *
        candidates`` when the pool never runs short), ``slice_reconstructions``, ``slices`` (the
        training slice indices scored), ``budget``.
    """
    candidates, num_slices, dds_steps, max_batch = (check_count(k, v) for k, v in (
        ("candidates", candidates), ("num_slices", num_slices), ("dds_steps", dds_steps), ("max_batch", max_batch)))
    mask = build_mask(train, kind, acceleration, num_low_frequencies, fixed, corner_cut)
    shape, device = mask.shape, torch.device(device)
    free = mask.free.cpu().numpy().ravel()
    chosen = mask.fixed.cpu().numpy().ravel().copy()
    scorer = TrainingScorer(prior, train, kind, shape, num_slices, dds_steps, seed, max_batch, device)
    slices = scorer.slices
    gen = torch.Generator().manual_seed(int(seed) + 1)
    remaining = mask.budget - mask.num_fixed
    history = {"additions": [], "order": fixed_order(mask), "reconstructions": 0, "slice_reconstructions": 0,
               "slices": slices, "budget": mask.budget, "num_fixed": mask.num_fixed, "candidates": candidates,
               "dds_steps": dds_steps, "seed": int(seed)}

    def score(flat_masks: np.ndarray) -> list[float]:
        history["reconstructions"] += len(flat_masks)
        history["slice_reconstructions"] += len(flat_masks) * len(slices)
        return scorer(flat_masks)

    bar = tqdm(total=remaining, desc=f"greedy search R={acceleration:g}", unit="entry", disable=not progress,
               leave=False)
    step = 0
    while remaining > 0:
        step += 1
        pool = np.flatnonzero(free & ~chosen)
        draw = pool[torch.randperm(pool.size, generator=gen)[:candidates].numpy()]
        trial = np.repeat(chosen[None], draw.size, 0)
        trial[np.arange(draw.size), draw] = True
        scores = score(trial)
        best = int(np.argmax(scores))  # the first of equal maxima
        pick = int(draw[best])
        chosen[pick] = True
        remaining -= 1
        history["additions"].append({"step": step, "candidates": [int(i) for i in draw], "scores": scores,
                                     "index": pick, "psnr": scores[best]})
        history["order"].append(pick)
        bar.update(1)
        bar.set_postfix(psnr=f"{scores[best]:.2f}")
    bar.close()
    return torch.from_numpy(chosen.reshape(shape).astype(np.float32)), history
