"""Greedy mask learning by the gradient of the reconstruction loss w.r.t. the mask itself.

A peer of the Adam loop (:mod:`.loop`), after the optimizer of the follow-up to Ravula et al.
(2023) (the ``greedy_topk`` optimizer of their public code, configuration "3D_DOGG": top-k = 1,
likelihood step 1, l2 loss). Start from the fixed entries (the fully sampled centre, plus any
extra ``fixed`` samples); then, per batch of training slices:

1. ``P`` is the current 0/1 mask as a float tensor that requires grad; the batch is reconstructed
   with the configured estimate (:func:`.objective.estimate`) through ``as_kspace_mask(P)`` and
   the loss (:func:`.tweedie.reconstruction_loss`) is backpropagated to ``P``;
2. ``dL/dP_k`` at an unsampled entry is the first-order change of the loss when ``k`` is sampled,
   so among the unsampled, non-excluded entries take the ``top_k`` most negative gradients;
3. of those, add the one *farthest* from the already chosen set (max-min Euclidean distance in
   index space; for line masks the column distance), the farthest-point rule of progressive
   sampling (Eldar et al. 1997), which keeps the additions from clumping;

and repeat (``adds_per_step`` additions per batch, re-ranked after each) until the budget of the
:class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask` is met exactly. ``top_k = 1`` is pure
gradient greedy; ``top_k >= `` the number of free entries is pure farthest-point sampling.

The gradient at an unsampled entry exists only in the *linear* mask form (``sum_k M_k |r_k|^2``;
in the paper form ``M_k^2`` it is 0 there), so :func:`greedy_mask` always runs its objective with
``mask_form="linear"`` and records that in the history. It works with every objective
(``"tweedie"``, ``"tweedie-x0"``, ``"unrolled"``, ``"dds"``) and for line and point masks. The
additions come out in order, so the result is nested: the first ``round(N / R')`` entries of
``history["order"]`` are a mask at any coarser ``R' >= R`` (the mask file's ``order``).

References
----------
Ravula S, Levac B, Jalal A, Tamir JI, Dimakis AG. Optimizing sampling patterns for compressed
sensing MRI with diffusion generative models. arXiv:2306.03284 (2023); the greedy optimizer of
its follow-up: github.com/utcsilab/MRI_Diffusion_Patterns (``greedy_topk``).
Eldar Y, Lindenbaum M, Porat M, Zeevi YY. The farthest point strategy for progressive image
sampling. IEEE Trans Image Process 1997;6:1305-1315.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..masks.bernoulli import BernoulliMask, as_kspace_mask, centre_distance
from .objective import ObjectiveConfig, draw_noise, estimate
from .tweedie import reconstruction_loss
from .validate import scaled_batch


def build_mask(train, kind: str, acceleration: float, num_low_frequencies: int, fixed=None,
               corner_cut: bool = False) -> BernoulliMask:
    """The :class:`BernoulliMask` whose fixed, excluded and free sets and budget a greedy learner
    uses, shaped after the data (``(W,)`` or ``(H, W)``); passes the data's acquired column range
    when the mask class takes one (padding exclusion)."""
    if train is None or train.kspace.shape[0] < 1:
        raise UserError("no training slices; check --data and --num-train")
    h, w = train.kspace.shape[-2:]
    shape = (w,) if kind == "line" else (h, w)
    acquired = train.acquired_range if getattr(train, "acquired", None) else None
    return BernoulliMask(shape, acceleration, num_low_frequencies, kind=kind, corner_cut=corner_cut,
                         fixed=fixed, acquired=acquired)


def check_count(name: str, value) -> int:
    """``value`` as an int >= 1, or a one-line :class:`UserError`."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def fixed_order(mask: BernoulliMask) -> list[int]:
    """Flat indices of the fixed entries, nearest the k-space centre first (then by index)."""
    idx = np.flatnonzero(mask.fixed.cpu().numpy().ravel())
    d = centre_distance(mask.shape).ravel()[idx]
    return [int(i) for i in idx[np.lexsort((idx, d))]]


def index_coordinates(shape) -> np.ndarray:
    """``(N, d)`` coordinates of the flat entries in index space (column for lines, (row, col))."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    return np.stack([g.ravel() for g in grids], 1)


def farthest(candidates: np.ndarray, chosen: np.ndarray, coords: np.ndarray) -> int:
    """The candidate (flat index) whose nearest chosen entry is farthest away (Euclidean in index
    space); ties go to the earliest candidate. With nothing chosen yet, the first candidate."""
    if not chosen.any():
        return int(candidates[0])
    keys = coords[chosen]
    d = np.sqrt(((coords[candidates][:, None, :] - keys[None]) ** 2).sum(-1)).min(1)
    return int(candidates[int(np.argmax(d))])  # argmax takes the first of equal maxima


def greedy_mask(prior, train, kind: str, acceleration: float, num_low_frequencies: int,
                objective: ObjectiveConfig, *, batch: int = 2, top_k: int = 1, adds_per_step: int = 1,
                seed: int = 0, fixed=None, corner_cut: bool = False, progress: bool = True,
                device="cpu") -> tuple[torch.Tensor, dict]:
    """Learn an exact-budget 0/1 mask greedily from the loss gradient w.r.t. the mask.

    Parameters
    ----------
    prior : Denoiser
    train : SliceData
        Fully sampled training slices; batches are drawn from a per-epoch permutation.
    kind, acceleration, num_low_frequencies, fixed, corner_cut
        As for :class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask`, whose fixed set is the
        start, whose free set the candidates and whose budget the end.
    objective : ObjectiveConfig
        The objective; run with ``mask_form="linear"`` whatever it says (see the module docstring).
    batch : int
        Training slices per gradient evaluation.
    top_k : int
        The addition is the farthest from the chosen set among the ``top_k`` most negative
        gradients (1: the most negative one).
    adds_per_step : int
        Entries added per gradient evaluation (ranked again after each addition).
    seed : int
        Seeds the one ``torch.Generator`` of batch order, noise levels and noise.

    Returns
    -------
    mask : float tensor ``(W,)`` or ``(H, W)``, 0/1, exactly the budget
    history : dict
        ``additions`` (per addition: ``step`` (gradient evaluation), ``index`` (flat), ``loss``,
        ``grad`` (its gradient), ``candidates`` (the ``top_k`` most negative, best first)),
        ``order`` (fixed entries nearest the centre first, then the additions in order: the mask
        file's ``order``), ``steps``, ``budget``, ``objective`` (the settings used),
        ``mask_form_forced``.

    Cost: ``ceil((budget - n_fixed) / adds_per_step)`` evaluations of the objective and its
    gradient w.r.t. the mask on ``batch`` slices.
    """
    if not isinstance(objective, ObjectiveConfig):
        raise UserError(f"objective must be an ObjectiveConfig, got {type(objective).__name__}")
    for name, value in (("batch", batch), ("top_k", top_k), ("adds_per_step", adds_per_step)):
        check_count(name, value)
    obj = dataclasses.replace(objective, mask_form="linear").validate()
    mask = build_mask(train, kind, acceleration, num_low_frequencies, fixed, corner_cut)
    shape, device = mask.shape, torch.device(device)
    free = mask.free.cpu().numpy().ravel()
    chosen = mask.fixed.cpu().numpy().ravel().copy()
    coords = index_coordinates(shape)
    x_all, s_all = (t.to(device) for t in scaled_batch(train))
    n = x_all.shape[0]
    b = min(int(batch), n)
    gen = torch.Generator().manual_seed(int(seed))
    perm, pos = torch.randperm(n, generator=gen), 0
    remaining = mask.budget - mask.num_fixed
    history = {"additions": [], "order": fixed_order(mask), "steps": 0, "budget": mask.budget,
               "num_fixed": mask.num_fixed, "objective": dataclasses.asdict(obj),
               "mask_form_forced": objective.mask_form != "linear", "top_k": int(top_k),
               "adds_per_step": int(adds_per_step), "batch": b, "seed": int(seed)}
    bar = tqdm(total=remaining, desc=f"greedy {obj.objective} R={acceleration:g}", unit="entry",
               disable=not progress, leave=False)
    while remaining > 0:
        if pos + b > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + b].to(device)
        pos += b
        x, s = x_all[idx], s_all[idx]
        p = torch.from_numpy(chosen.reshape(shape).astype(np.float32)).to(device).requires_grad_(True)
        sigma, noise, meas = draw_noise(x, s, obj, gen)
        with torch.enable_grad():
            kmask = as_kspace_mask(p.unsqueeze(0).expand(b, *shape), kind)
            loss = reconstruction_loss(estimate(prior, x, s, kmask, obj, sigma, noise, meas, create_graph=True),
                                       x, obj.loss)
            (grad,) = torch.autograd.grad(loss, p)
        g = grad.detach().cpu().double().numpy().ravel()
        loss_value = float(loss.detach())
        history["steps"] += 1
        for _ in range(min(int(adds_per_step), remaining)):
            cand = np.flatnonzero(free & ~chosen)
            ranked = cand[np.lexsort((cand, g[cand]))]  # most negative gradient first, ties by index
            top = ranked[:top_k]
            pick = farthest(top, chosen, coords)
            chosen[pick] = True
            remaining -= 1
            history["additions"].append({"step": history["steps"], "index": pick, "loss": loss_value,
                                         "grad": float(g[pick]), "candidates": [int(i) for i in top]})
            history["order"].append(pick)
            bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4g}")
    bar.close()
    out = torch.from_numpy(chosen.reshape(shape).astype(np.float32))
    if int(out.sum()) != mask.budget:  # the free set holds at least the budget (BernoulliMask checks)
        raise AssertionError(f"greedy mask holds {int(out.sum())} samples, not the budget {mask.budget}")
    return out, history
