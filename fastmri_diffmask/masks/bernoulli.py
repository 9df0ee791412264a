"""Learnable Bernoulli sampling masks: logits, LOUPE renormalisation, Gumbel straight-through.

A :class:`BernoulliMask` holds one logit per phase-encode line (``kind="line"``, shape ``(W,)``)
or per ky-kz point (``kind="point"``, shape ``(H, W)``). Entries split into three sets:

* *fixed* - always sampled: the contiguous fully sampled centre of ``num_low_frequencies``
  (fastMRI's placement, start ``(N - c + 1) // 2``; a ``c x c`` square for point masks), plus, for
  nested masks, the samples of a coarser mask;
* *excluded* - never sampled: the entries outside the ``acquired`` range (zero-filled k-space,
  fastMRI's padding; see :mod:`~fastmri_diffmask.masks.acquired`) and the corners outside the
  inscribed ellipse when ``corner_cut``;
* *free* - the rest, with probabilities ``p = sigmoid(w)`` renormalised to the budget.

The budget is ``round(N / R)`` samples in total, ``N`` the number of *acquirable* entries (all
entries without an ``acquired`` range; cut corners included). fastMRI's own masks count all
``W`` columns instead; a mask file records which convention (``budget_convention``).
With ``n_fixed`` fixed and ``n_free`` free entries the target mean of the free probabilities is
``s = (round(N / R) - n_fixed) / n_free`` and LOUPE's renormalisation (Bahadir et al. 2020, as in
Ravula et al. 2023) maps ``mu = mean(p)`` onto it:
``p' = (s / mu) p`` if ``mu >= s``, else ``p' = 1 - (1 - s) / (1 - mu) (1 - p)``. Both branches
keep ``p'`` in [0, 1] and make the expected sample count exactly the budget.

Sampling: :meth:`BernoulliMask.sample` draws hard masks by the Gumbel-softmax straight-through
estimator over the two classes ``[log(1 - p'), log p']`` (Jang et al. 2017), i.e. the forward pass
is ``1[sigmoid((logit p' + L) / tau) > 1/2]`` with ``L`` logistic noise and the backward pass the
gradient of the soft value. :meth:`BernoulliMask.relaxed` is LOUPE's own relaxation
``sigmoid(slope (p' - u))`` with ``u ~ U(0, 1)`` (no Gumbel, no straight-through).
:meth:`BernoulliMask.binarize` gives a deterministic mask with exactly the budget.

References
----------
Bahadir CD, Wang AQ, Dalca AV, Sabuncu MR. Deep-learning-based optimization of the under-sampling
pattern in MRI. IEEE Trans Comput Imaging 2020;6:1139-1152 (LOUPE).
Jang E, Gu S, Poole B. Categorical reparameterization with Gumbel-softmax. ICLR 2017.
Ravula S, et al. Optimizing sampling patterns for compressed sensing MRI with diffusion
generative models. arXiv:2306.03284 (2023).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .acquired import acquirable, acquired_record, check_inside
from .file import MaskFile, centre_slices
from .walk import hilbert_order

KINDS = ("line", "point")
EXPORTS = ("topk", "quantile")


def renormalise(p: torch.Tensor, s: float) -> torch.Tensor:
    """LOUPE's renormalisation of probabilities ``p`` (values in [0, 1]) to the mean ``s``:
    ``p s / mean(p)`` when the mean is at least ``s``, else ``1 - (1 - p)(1 - s) / (1 - mean(p))``;
    both keep every value in [0, 1] (Bahadir et al. 2020)."""
    mu = p.mean()
    if float(mu.detach()) >= s:
        q = p * (s / mu)
    else:
        q = 1 - (1 - p) * ((1 - s) / (1 - mu))
    return q.clamp(0, 1)


def _as_shape(shape, kind: str) -> tuple[int, ...]:
    dims = (int(shape),) if np.isscalar(shape) else tuple(int(s) for s in shape)
    want = 1 if kind == "line" else 2
    if len(dims) != want or min(dims) < 1:
        raise UserError(f"a {kind} mask needs a shape of {want} positive int(s), got {tuple(np.atleast_1d(shape))}")
    return dims


def centre_distance(shape: Sequence[int]) -> np.ndarray:
    """Normalised distance of every entry to the k-space centre ``N // 2`` (per axis, in units
    of half the axis), used to break ties towards the centre."""
    axes = [(np.arange(n) - n // 2) / (n / 2) for n in shape]
    grids = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(sum(g ** 2 for g in grids))


def budget_of(num_entries: int, acceleration: float) -> int:
    """``round(N / R)``: the number of samples a mask at acceleration ``R`` holds (centre included);
    ``N`` the acquirable entries (this package's convention; fastMRI's counts all ``W`` columns)."""
    return int(round(num_entries / acceleration))


class BernoulliMask(nn.Module):
    """A learnable line or point mask with a fixed centre and an exact expected budget.

    Parameters
    ----------
    shape : int or (H, W)
        ``W`` for a line mask, ``(H, W)`` for a point mask.
    acceleration : float
        Target R > 1; the budget is ``round(N / R)`` samples, centre included (``N`` acquirable
        entries, see ``acquired``).
    num_low_frequencies : int
        Width of the fully sampled contiguous centre (side of the square for point masks).
    kind : "line" | "point"
    corner_cut : bool
        Point masks only: never sample outside the ellipse inscribed in the ky-kz plane.
    fixed : array-like of 0/1, optional
        Extra always-sampled entries (nested masks: the samples of the coarser mask).
    logits : tensor, optional
        Initial logits (default 0, i.e. ``p = 1/2`` before renormalisation).
    acquired : (start, end), ((r0, r1), (start, end)) or bool array, optional
        The acquired part of k-space (fastMRI's ``(padding_left, padding_right)`` columns; see
        :mod:`~fastmri_diffmask.masks.acquired`). Entries outside are excluded (never sampled by
        any method) and the budget counts acquirable entries only, ``round(N_acquirable / R)``.
        The fixed centre keeps fastMRI's placement in the full grid and must lie inside
        (:class:`UserError` otherwise). Default: everything acquirable.
    """

    def __init__(self, shape, acceleration: float, num_low_frequencies: int, kind: str = "line",
                 corner_cut: bool = False, fixed=None, logits: torch.Tensor | None = None, acquired=None):
        super().__init__()
        if kind not in KINDS:
            raise UserError(f"unknown mask kind {kind!r}; use 'line' or 'point'")
        if corner_cut and kind != "point":
            raise UserError("corner_cut applies to point masks only; drop it or use --kind point")
        shape = _as_shape(shape, kind)
        try:
            acceleration = float(acceleration)
        except (TypeError, ValueError):
            raise UserError(f"acceleration must be a number, got {acceleration!r}") from None
        if not np.isfinite(acceleration) or acceleration <= 1:
            raise UserError(f"acceleration must be > 1, got {acceleration:g}")
        c = int(num_low_frequencies)
        if c != num_low_frequencies or c < 0 or c > min(shape):
            raise UserError(f"num_low_frequencies must be an integer in 0..{min(shape)}, got {num_low_frequencies}")
        fixed_np = np.zeros(shape, bool)
        if c:
            fixed_np[centre_slices(shape, c)] = True
        if fixed is not None:
            extra = np.asarray(fixed.detach().cpu() if torch.is_tensor(fixed) else fixed)
            if extra.shape != shape:
                raise UserError(f"fixed samples shape {extra.shape} does not match the mask shape {shape}")
            fixed_np |= extra > 0.5
        what = "the centre" if fixed is None else "the centre and fixed samples"
        allowed = acquirable(shape, acquired)
        check_inside(fixed_np, allowed, what)
        excluded = ~allowed
        if corner_cut:
            excluded |= (centre_distance(shape) > 1.0) & ~fixed_np
        n = int(allowed.sum())
        budget = budget_of(n, acceleration)
        n_fixed, n_free = int(fixed_np.sum()), int((~fixed_np & ~excluded).sum())
        if budget < 1:
            raise UserError(f"acceleration {acceleration:g} leaves no samples of {n}; lower the acceleration")
        if n_fixed > budget:
            raise UserError(f"acceleration {acceleration:g} leaves {budget} of {n} samples but {what} alone take "
                            f"{n_fixed}; lower the acceleration or num_low_frequencies")
        if budget - n_fixed > n_free:
            raise UserError(f"acceleration {acceleration:g} needs {budget - n_fixed} samples outside {what} but only "
                            f"{n_free} are available; raise the acceleration or drop the corner cut")
        self.kind, self.shape, self.acceleration = kind, shape, acceleration
        self.num_low_frequencies, self.corner_cut = c, bool(corner_cut)
        self.budget, self.num_fixed, self.num_free, self.num_acquirable = budget, n_fixed, n_free, n
        self.register_buffer("acquirable", torch.from_numpy(allowed), persistent=False)
        self.register_buffer("fixed", torch.from_numpy(fixed_np))
        self.register_buffer("excluded", torch.from_numpy(excluded))
        self.register_buffer("free", torch.from_numpy(~fixed_np & ~excluded))
        init = torch.zeros(shape) if logits is None else torch.as_tensor(logits, dtype=torch.float32).reshape(shape).clone()
        self.logits = nn.Parameter(torch.nan_to_num(init, posinf=0.0, neginf=0.0))

    @property
    def target_mean(self) -> float:
        """``s = (budget - n_fixed) / n_free``: the mean the free probabilities are renormalised to."""
        return (self.budget - self.num_fixed) / self.num_free if self.num_free else 0.0

    # -- probabilities ----------------------------------------------------------------------
    def probabilities(self) -> torch.Tensor:
        """Renormalised probabilities ``p'`` of the full shape: fixed entries 1, excluded 0,
        free entries LOUPE-renormalised so their sum is exactly ``budget - n_fixed``."""
        out = self.fixed.to(self.logits.dtype)
        if not self.num_free:
            return out
        q = renormalise(torch.sigmoid(self.logits[self.free]), self.target_mean)
        return out.masked_scatter(self.free, q)

    def renormalised(self, density: torch.Tensor) -> torch.Tensor:
        """Any non-negative ``density`` of the mask's shape as :meth:`probabilities` would give it:
        its free entries (clipped to [0, 1]) LOUPE-renormalised to the budget, fixed entries 1,
        excluded 0."""
        out = self.fixed.to(density.dtype)
        if not self.num_free:
            return out
        return out.masked_scatter(self.free, renormalise(density[self.free].clamp(0, 1), self.target_mean))

    # -- stochastic masks for learning ------------------------------------------------------
    def _uniform(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand((batch, *self.shape), generator=generator)  # CPU draw: device-independent
        return u.to(self.logits.device)

    def _pin(self, m: torch.Tensor) -> torch.Tensor:
        """Fixed entries exactly 1, excluded entries exactly 0 (constants, no gradient)."""
        return torch.where(self.fixed, torch.ones_like(m), torch.where(self.excluded, torch.zeros_like(m), m))

    def sample(self, batch: int = 1, tau: float = 1.0, generator: torch.Generator | None = None,
               hard: bool = True) -> torch.Tensor:
        """``(batch, *shape)`` masks by Gumbel-softmax over ``[log(1 - p'), log p']`` at
        temperature ``tau``; ``hard=True`` returns 0/1 values with the soft gradient
        (straight-through)."""
        if not tau > 0:
            raise UserError(f"Gumbel temperature tau must be > 0, got {tau}")
        eps = 1e-6
        p = self.probabilities().clamp(eps, 1 - eps)
        u = self._uniform(batch, generator).clamp(eps, 1 - eps)
        noise = torch.log(u) - torch.log1p(-u)  # difference of two Gumbels = logistic
        soft = torch.sigmoid((torch.log(p) - torch.log1p(-p) + noise) / tau)
        if hard:
            soft = (soft > 0.5).to(soft.dtype) - soft.detach() + soft
        return self._pin(soft)

    def relaxed(self, batch: int = 1, slope: float = 12.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """LOUPE's relaxed mask ``sigmoid(slope (p' - u))``, ``u ~ U(0, 1)``: values in (0, 1),
        no straight-through (Bahadir et al. 2020)."""
        u = self._uniform(batch, generator)
        return self._pin(torch.sigmoid(slope * (self.probabilities() - u)))

    # -- deterministic export ---------------------------------------------------------------
    def _free_order(self, p: np.ndarray) -> np.ndarray:
        """Flat indices of the free entries, highest ``p'`` first; ties towards the centre, then
        by index."""
        idx = np.flatnonzero(self.free.cpu().numpy().ravel())
        dist = centre_distance(self.shape).ravel()[idx]
        return idx[np.lexsort((idx, dist, -p.ravel()[idx]))]

    def binarize(self, method: str = "topk") -> torch.Tensor:
        """A deterministic 0/1 mask with exactly ``budget`` samples (fixed entries included).

        ``"topk"`` keeps the free entries of largest ``p'`` (ties: nearer the centre, then lower
        index). ``"quantile"`` places the ``m = budget - n_fixed`` free samples at the quantiles
        ``(j + 1/2) / m`` of the cumulative renormalised density, walking the free entries in
        index order (a Hilbert curve for point masks): a deterministic variable-density pattern
        that keeps the learned density where top-k of a smooth density collapses into a block.
        """
        if method not in EXPORTS:
            raise UserError(f"unknown export method {method!r}; use {' or '.join(EXPORTS)}")
        p = self.probabilities().detach().cpu().double().numpy()
        m = self.budget - self.num_fixed
        out = self.fixed.cpu().numpy().ravel().copy()
        if m > 0:
            if method == "topk":
                chosen = self._free_order(p)[:m]
            else:
                chosen = self._quantile_pick(p, m)
            out[chosen] = True
        return torch.from_numpy(out.reshape(self.shape).astype(np.float32))

    def _walk(self) -> np.ndarray:
        """Flat indices of the free entries in walking order: by index for line masks, along a
        generalized Hilbert curve for point masks (:func:`~fastmri_diffmask.masks.walk.hilbert_order`),
        so that samples evenly spaced along the walk are evenly spread in 2D."""
        order = np.arange(self.shape[0]) if self.kind == "line" else hilbert_order(*self.shape)
        return order[self.free.cpu().numpy().ravel()[order]]

    def _quantile_pick(self, p: np.ndarray, m: int, offset: float = 0.5) -> np.ndarray:
        walk = self._walk()
        w = np.clip(p.ravel()[walk], 0, 1)
        cum = np.cumsum(w)
        cum *= m / cum[-1] if cum[-1] > 0 else 0
        targets = np.arange(m) + offset
        # the entry whose interval [cum_{i-1}, cum_i) holds each level: a zero-mass entry is never
        # picked, and a level on a boundary (offset 0, flat densities) goes to the next entry
        pos = np.minimum(np.searchsorted(cum, targets, side="right"), walk.size - 1)
        chosen = list(dict.fromkeys(walk[pos].tolist()))  # unique, in order
        if len(chosen) < m:  # float ties put two quantiles in one entry: fill by top-k
            taken = set(chosen)
            chosen += [i for i in self._free_order(p) if i not in taken][: m - len(chosen)]
        return np.asarray(chosen[:m], dtype=np.int64)

    def systematic(self, offset: float, probabilities: torch.Tensor | None = None) -> torch.Tensor:
        """A deterministic exact-budget 0/1 mask: systematic sampling of the density.

        The ``m = budget - n_fixed`` free samples sit at the levels ``j + offset`` (``j = 0 .. m-1``)
        of the cumulative renormalised density ``p'`` (or ``probabilities``), walking the free
        entries as :meth:`binarize` does; ``offset = 0.5`` is the ``"quantile"`` export. Over a
        uniform ``offset`` in ``[0, 1)`` each entry is sampled with probability ``~p'`` (one
        shared offset, where a stratified draw jitters each stratum on its own), so a few offsets
        give regularly spaced, variable-density candidates whose spacing differs between the two
        sides of the centre - a mask that does not repeat a line's conjugate-symmetric partner
        measures more distinct ``|k|``. Reference: Cochran WG, *Sampling Techniques*, 3rd ed., ch. 8
        (systematic sampling).
        """
        if not 0.0 <= float(offset) < 1.0:
            raise UserError(f"a systematic sampling offset must lie in [0, 1), got {offset}")
        p = (self.probabilities() if probabilities is None else probabilities).detach().cpu().double().numpy()
        m = self.budget - self.num_fixed
        out = self.fixed.cpu().numpy().ravel().copy()
        if m > 0:
            out[self._quantile_pick(p, m, float(offset))] = True
        return torch.from_numpy(out.reshape(self.shape).astype(np.float32))

    def flattened(self, weight: float) -> torch.Tensor:
        """``(1 - weight) p' + weight s`` on the free entries (``s`` = :attr:`target_mean`; fixed
        entries 1, excluded 0): the learned density moved towards a flat one, with the same
        budget. ``weight`` 0 is ``p'``, 1 is uniform random sampling outside the centre."""
        if not 0.0 <= float(weight) <= 1.0:
            raise UserError(f"a flattening weight must lie in [0, 1], got {weight}")
        p = self.probabilities().detach()
        flat = torch.where(self.free, torch.full_like(p, self.target_mean), p)
        return (1 - float(weight)) * p + float(weight) * flat

    def draw_exact(self, generator: torch.Generator | None = None, stratified: bool = False,
                   probabilities: torch.Tensor | None = None) -> torch.Tensor:
        """One random 0/1 mask with exactly the budget.

        ``stratified=False``: the free samples drawn without replacement with weights ``p'``
        (Gumbel top-k on ``log p'``). ``stratified=True``: one sample per stratum ``[j, j + 1)``
        of the cumulative density (walk order as in :meth:`binarize`), at a uniform random
        position in it - the jittered version of the ``"quantile"`` export, inclusion
        probabilities ``~p'`` with the samples spread like the density (a collision moves to the
        next free entry of the walk). ``probabilities`` replaces ``p'`` (e.g. :meth:`flattened`).
        """
        p = (self.probabilities() if probabilities is None else probabilities).detach().cpu().double()
        m = self.budget - self.num_fixed
        out = self.fixed.cpu().clone().ravel()
        if m > 0 and not stratified:
            u = torch.rand(p.numel(), generator=generator, dtype=torch.float64).clamp(1e-12, 1 - 1e-12)
            key = torch.log(p.ravel().clamp_min(1e-30)) - torch.log(-torch.log(u))
            key[~self.free.cpu().ravel()] = -float("inf")
            out[torch.topk(key, m).indices] = True
        elif m > 0:
            walk = self._walk()
            cum = np.cumsum(np.clip(p.numpy().ravel()[walk], 0, 1))
            cum *= m / cum[-1] if cum[-1] > 0 else 0
            u = torch.rand(m, generator=generator, dtype=torch.float64).numpy()
            pos = np.minimum(np.searchsorted(cum, np.arange(m) + u, side="left"), walk.size - 1)
            taken = np.zeros(walk.size, bool)
            for j in pos:
                free = np.flatnonzero(~taken[j:])
                j = j + free[0] if free.size else np.flatnonzero(~taken)[-1]
                taken[j] = True
            out[torch.from_numpy(walk[taken])] = True
        return out.reshape(self.shape).float()

    # -- file -------------------------------------------------------------------------------
    def to_mask_file(self, method: str = "topk", mask: torch.Tensor | None = None, order=None,
                     metadata: dict | None = None) -> MaskFile:
        """A :class:`~fastmri_diffmask.masks.file.MaskFile` with the binary mask (``mask`` or
        ``binarize(method)``), renormalised probabilities and raw logits (fixed entries +inf,
        excluded -inf); its metadata records the acquired range (``acquired``, ``num_acquirable``)
        and ``budget_convention: "acquirable"``. A given ``mask`` sampling an excluded entry raises
        :class:`UserError`."""
        binary = self.binarize(method) if mask is None else torch.as_tensor(mask, dtype=torch.float32)
        if bool((binary.cpu()[self.excluded.cpu()] > 0.5).any()):
            raise UserError("the mask samples entries outside the acquired range (or cut corners); "
                            "export it from this BernoulliMask")
        logits = self.logits.detach().cpu().clone()
        logits[self.fixed.cpu()] = float("inf")
        logits[self.excluded.cpu()] = -float("inf")
        meta = {"export": method if mask is None else "given", "corner_cut": self.corner_cut,
                "acquired": acquired_record(self.acquirable.cpu().numpy()), "num_acquirable": self.num_acquirable,
                "budget_convention": "acquirable", **(metadata or {})}
        return MaskFile(mask=binary.numpy().astype(np.float32),
                        probabilities=self.probabilities().detach().cpu().numpy().astype(np.float32),
                        logits=logits.numpy(), kind=self.kind, acceleration=self.acceleration,
                        num_low_frequencies=self.num_low_frequencies,
                        order=None if order is None else np.asarray(order, np.int64), metadata=meta)


def density_logits(density, floor: float = 1e-3) -> torch.Tensor:
    """Logits whose sigmoid is ``density`` scaled to a peak of 1 and clipped to
    ``[floor, 1 - floor]``: a starting point for :class:`BernoulliMask` (the LOUPE
    renormalisation then rescales it to the budget)."""
    p = np.asarray(density, np.float64)
    p = np.clip(p / p.max(), floor, 1 - floor)
    return torch.from_numpy(np.log(p / (1 - p))).float()


def as_kspace_mask(m: torch.Tensor, kind: str) -> torch.Tensor:
    """Batch of masks ``(B, W)`` or ``(B, H, W)`` -> broadcastable to ``(B, C, H, W)``:
    ``(B, 1, 1, W)`` for lines, ``(B, 1, H, W)`` for points."""
    return m[:, None, None, :] if kind == "line" else m[:, None]
