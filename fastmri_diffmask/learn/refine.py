"""Local refinement of a line mask scored by the reconstruction itself: move one line at a time.

A peer of the Adam loop (:mod:`.loop`) and the greedy learners (:mod:`.greedy`,
:mod:`.greedy_search`), run after any of them on their exported mask. The one-step objectives see
the truth plus noise and cannot tell two masks apart that differ only by where a line sits a
column or two away; the test-time reconstruction can (aliasing is coherent or not depending on
the exact spacing of the lines). So, as a coordinate search (Gozcu et al. 2018 score masks the
same way; here the moves are local, in the spirit of the line-swap refinements of Zibetti et al.
2021):

1. score the mask: mean PSNR (:class:`.greedy_search.TrainingScorer`) of DDS reconstructions
   (``dds_steps`` steps, common random numbers) of
   ``num_slices`` *training* slices spread over the training set (the validation slices stay
   untouched for the judge and every later check); with ``classical`` the mean of that PSNR and
   the one of CG-SENSE or BART ``pics -l1`` on the same slices, so that a kept move helps the
   diffusion reconstruction without costing the classical one;
2. for each free sampled line ``j`` in turn (nearest the centre first), try moving it to the
   unsampled acquirable columns ``j +- d`` for ``d`` in ``moves``; keep the best move if it raises
   the score by more than ``min_gain`` dB (with ``min_agree``: and raises the PSNR of at least
   that fraction of the scoring slices, so that a move one slice likes and the others do not is
   not kept);
3. repeat for ``sweeps`` sweeps, stopping early when a sweep keeps no move.

With ``gradient`` (a function of the current mask, e.g. :func:`loss_gradient` of the
differentiable DDS objective, :mod:`.dds_unroll`) only the ``tries`` targets with the best
first-order prediction ``g[j] - g[t]`` of the loss decrease are reconstructed per line, the
gradient being taken once per sweep: the differentiable reconstruction proposes, the
test-time reconstruction decides (on the shipped prior at R = 8 the best-predicted move per line
gains 0.26 dB of the best measured move's 0.28, from one reconstruction instead of six:
``benchmarks/refine_proposals.py``).

Fixed lines (the centre, nested levels) never move; the number of lines, hence the exact budget,
never changes. Cost: at most ``sweeps * n_free * 2 * len(moves)`` (with ``gradient``:
``sweeps * n_free * tries``) reconstructions of ``num_slices`` slices, batched.

References
----------
Gozcu B, et al. Learning-based compressive MRI. IEEE Trans Med Imaging 2018;37:1394-1406.
Zibetti MVW, Knoll F, Regatte RR. Alternating learning approach for variational networks and
undersampling pattern in parallel MRI applications. IEEE Trans Comput Imaging 2022;8:449-461.
Chung H, Lee S, Ye JC. Decomposed diffusion sampler for accelerating large-scale inverse
problems. ICLR 2024.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from .greedy import check_count
from .greedy_search import TrainingScorer


def parse_moves(text) -> tuple[int, ...]:
    """``"1,2,3"`` (or a sequence) -> ``(1, 2, 3)``; a one-line :class:`UserError` otherwise."""
    try:
        moves = tuple(int(m) for m in (str(text).split(",") if isinstance(text, str) else text) if str(m).strip())
    except (TypeError, ValueError):
        moves = ()
    if not moves or min(moves) < 1:
        raise UserError(f"refine moves must be comma-separated column offsets >= 1 such as 1,2,3; got {text!r}")
    return tuple(sorted(set(moves)))


def check_min_agree(value) -> float:
    """``min_agree`` as a float in [0, 1]; a one-line :class:`UserError` otherwise."""
    try:
        frac = float(value)
    except (TypeError, ValueError):
        frac = float("nan")
    if isinstance(value, bool) or not 0.0 <= frac <= 1.0:
        raise UserError(f"--refine-min-agree must be a fraction in [0, 1] (0.75: 3 of 4 judge slices), got {value!r}")
    return frac


def loss_gradient(prior, train, mask01: np.ndarray, objective, *, num_slices: int = 32, batch: int = 4,
                  seed: int = 0, device="cpu") -> np.ndarray:
    """The gradient of ``objective``'s loss (forced to the linear mask form, so unsampled lines
    have one) w.r.t. the 0/1 line mask, averaged over ``num_slices`` training slices spread over
    the set, in batches of ``batch``; noise from a generator seeded ``seed``."""
    import dataclasses

    from .greedy_search import spread_indices
    from .objective import draw_noise, estimate
    from .tweedie import reconstruction_loss
    from .validate import scaled_batch
    from ..masks.bernoulli import as_kspace_mask

    cfg = dataclasses.replace(objective, mask_form="linear").validate()
    data = train.subset(spread_indices(train.kspace.shape[0], num_slices))
    x_all, s_all = (t.to(device) for t in scaled_batch(data))
    gen = torch.Generator().manual_seed(int(seed))
    w = mask01.shape[-1]
    total = torch.zeros(w, dtype=torch.float64)
    for i in range(0, x_all.shape[0], batch):
        x, s = x_all[i:i + batch], s_all[i:i + batch]
        p = torch.from_numpy(np.asarray(mask01, np.float32)).to(device).requires_grad_(True)
        sigma, noise, meas = draw_noise(x, s, cfg, gen)
        with torch.enable_grad():
            km = as_kspace_mask(p.expand(x.shape[0], w), "line")
            loss = reconstruction_loss(estimate(prior, x, s, km, cfg, sigma, noise, meas), x, cfg.loss)
            (grad,) = torch.autograd.grad(loss * x.shape[0], p)
        total += grad.detach().cpu().double()
    return (total / x_all.shape[0]).numpy()


def refine_line_mask(prior, train, mask01: torch.Tensor, fixed: torch.Tensor, allowed: torch.Tensor, *,
                     moves=(1, 2, 3), sweeps: int = 1, num_slices: int = 4, dds_steps: int = 25,
                     min_gain: float = 0.0, min_agree: float = 0.0, seed: int = 0, max_batch: int = 16,
                     gradient=None, tries: int = 1,
                     progress: bool = True, device="cpu", init: str = "noise",
                     sigma_start: float | None = None, eta: float | None = None,
                     churn: float | None = None, classical: str = "none") -> tuple[torch.Tensor, dict]:
    """Move free lines of ``mask01`` one at a time while the DDS score on training slices rises.

    Parameters
    ----------
    prior : Denoiser
    train : SliceData
        Fully sampled training slices; ``num_slices`` of them spread over the set are scored.
    mask01 : tensor ``(W,)``
        The 0/1 line mask to refine (e.g. an export of :mod:`.loop`).
    fixed, allowed : bool tensors ``(W,)``
        Lines that never move (the centre) / columns a line may move to (acquired, not excluded).
    moves : sequence of int
        Column offsets tried on both sides.
    sweeps : int
        Passes over the free lines (stops early after a pass without a kept move).
    num_slices, dds_steps, seed, max_batch
        The scoring reconstructions (as :func:`.greedy_search.greedy_search_mask`).
    min_gain : float
        A move is kept only if it raises the mean PSNR by more than this (dB).
    min_agree : float in [0, 1]
        ... and only if it raises the score of at least ``ceil(min_agree * num_slices)`` of the
        scoring slices (0, the default: the mean alone decides). Among the moves that pass, the best
        mean is kept.
    init, sigma_start, eta, churn
        The scoring DDS's warm start (:mod:`fastmri_diffmask.sample.warm_start`: ``"noise"``
        from ``sigma_max``, the default, or ``"zero-filled"`` / ``"sense"`` from ``sigma_start``),
        fresh-noise step ``eta`` and churn (``None``: DDS's default) as in
        :func:`fastmri_diffmask.sample.dds.dds_reconstruct`.
    classical : {"none", "sense", "l1"}
        Score by the mean of the DDS PSNR and that of a classical reconstruction
        (:class:`.greedy_search.TrainingScorer`).
    gradient : callable, optional
        ``gradient(mask (W,) bool) -> (W,)`` loss gradient w.r.t. the mask; then only the ``tries``
        best-predicted targets per line are reconstructed.

    Returns
    -------
    mask : float tensor ``(W,)``, 0/1, as many lines as ``mask01``
    history : dict
        ``start`` / ``end`` scores (dB), ``moves`` kept (``from``, ``to``, ``score``), ``tried``
        (per line: ``from``, the ``to`` columns, their ``scores`` and the ``current`` score),
        ``reconstructions`` (masks scored), ``slices``, ``sweeps_run``.
    """
    m = np.asarray(mask01.detach().cpu(), dtype=bool).copy()
    fixed_np = np.asarray(fixed.detach().cpu() if torch.is_tensor(fixed) else fixed, dtype=bool)
    allowed_np = np.asarray(allowed.detach().cpu() if torch.is_tensor(allowed) else allowed, dtype=bool)
    if m.ndim != 1 or fixed_np.shape != m.shape or allowed_np.shape != m.shape:
        raise UserError("refinement moves lines of a line mask: mask, fixed and allowed must all be (W,)")
    if not (m[fixed_np]).all():
        raise UserError("the mask to refine does not hold all of its fixed lines")
    sweeps, num_slices, dds_steps, max_batch, tries = (check_count(k, v) for k, v in (
        ("sweeps", sweeps), ("num_slices", num_slices), ("dds_steps", dds_steps), ("max_batch", max_batch),
        ("tries", tries)))
    moves = parse_moves(moves)
    min_agree = check_min_agree(min_agree)
    score = TrainingScorer(prior, train, "line", m.shape, num_slices, dds_steps, seed, max_batch, torch.device(device),
                           init=init, sigma_start=sigma_start, eta=eta, churn=churn, classical=classical)
    history = {"moves": [], "tried": [], "reconstructions": 0, "slices": score.slices, "sweeps_run": 0, "dds_steps": dds_steps,
               "offsets": list(moves), "seed": int(seed), "init": init, "sigma_start": sigma_start, "eta": eta, "churn": churn,
               "classical": classical}

    means, per_slice = score.scores(m[None])
    current, current_each = means[0], per_slice[0]
    need = int(np.ceil(min_agree * len(current_each) - 1e-9))  # slices a kept move must raise
    history["min_agree"] = min_agree
    history["start"] = current
    centre = (m.size - 1) / 2
    bar = tqdm(total=sweeps * int((m & ~fixed_np).sum()), desc="refine: moving lines", unit="line",
               disable=not progress, leave=False)
    for sweep in range(sweeps):
        kept = 0
        g = None if gradient is None else np.asarray(gradient(m.copy()), dtype=np.float64)
        lines = np.flatnonzero(m & ~fixed_np)
        for j in lines[np.argsort(np.abs(lines - centre), kind="stable")]:
            targets = [j + s * d for d in moves for s in (-1, 1)]
            targets = [t for t in targets if 0 <= t < m.size and allowed_np[t] and not m[t]]
            if g is not None:  # most negative predicted change g[t] - g[j] first (ties: nearest, then lower)
                targets = sorted(targets, key=lambda t: (g[t] - g[j], abs(t - j), t))[:tries]
            bar.update(1)
            if not targets:
                continue
            trials = np.repeat(m[None], len(targets), 0)
            trials[:, j] = False
            trials[np.arange(len(targets)), targets] = True
            scores, each = score.scores(trials)
            agree = (each > current_each).sum(1)
            history["tried"].append({"sweep": sweep + 1, "from": int(j), "to": [int(t) for t in targets],
                                     "scores": scores, "current": current, "agree": agree.tolist()})
            # the best mean among the moves enough slices agree on (need 0: all of them, the argmax)
            best = max((i for i in range(len(targets)) if agree[i] >= need), key=lambda i: scores[i], default=None)
            if best is not None and scores[best] > current + min_gain:
                m, current, current_each = trials[best], scores[best], each[best]
                history["moves"].append({"sweep": sweep + 1, "from": int(j), "to": int(targets[best]), "score": current})
                kept += 1
            bar.set_postfix(psnr=f"{current:.2f}")
        history["sweeps_run"] = sweep + 1
        if not kept:
            break
    bar.close()
    history["end"], history["reconstructions"] = current, score.reconstructions
    return torch.from_numpy(m.astype(np.float32)), history
