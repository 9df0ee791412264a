"""Exact conditional Bernoulli sampling: independent Bernoulli draws conditioned on their sum.

Used by :class:`~fastmri_diffmask.masks.fastmri_adapter.LearnedDiffusionMaskFunc` in
``"sampled"`` mode to draw a budget-exact mask from a learned probability profile.
"""

from __future__ import annotations

import numpy as np

# Exact conditional Bernoulli sampling keeps an (N, k+1) float64 table; above this many
# entries (32 MB) sampled mode falls back to weighted sampling without replacement.
_EXACT_SAMPLING_LIMIT = 4_000_000


def _conditional_bernoulli(p: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """Draw ``B_i ~ Bernoulli(p_i)`` independently, conditioned on ``sum B = k``.

    Sequential exact algorithm: with ``f_i(r) = P(sum_{j >= i} B_j = r)`` (computed backwards,
    rows rescaled against underflow), include ``i`` with probability
    ``p_i f_{i+1}(r - 1) / f_i(r)`` where ``r`` is the number still to draw. Consumes exactly
    ``len(p)`` uniforms from ``rng``. When the table would be too large or the condition has
    (numerically) zero probability, falls back to weighted sampling without replacement
    (Efraimidis-Spirakis keys) proportional to ``p`` (zero-probability samples last).
    """
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    n = p.size
    k = int(min(max(k, 0), n))
    u = rng.random_sample(n)
    out = np.zeros(n, bool)
    if k == 0:
        return out
    if k == n:
        out[:] = True
        return out
    if n * (k + 1) <= _EXACT_SAMPLING_LIMIT:
        f = np.zeros((n + 1, k + 1))
        scale = np.ones(n + 1)  # row i of f is f_i times prod(scale[i:n]); only ratios are used
        f[n, 0] = 1.0
        feasible = True
        for i in range(n - 1, -1, -1):
            row = (1.0 - p[i]) * f[i + 1]
            row[1:] += p[i] * f[i + 1, :-1]
            m = row.max()
            if not m > 0:
                feasible = False
                break
            scale[i] = 1.0 / m
            f[i] = row * scale[i]
        if feasible and f[0, k] > 0:
            r = k
            for i in range(n):
                if r == 0:
                    break
                # f_true ratio f_{i+1}(r-1) / f_i(r) = f[i+1, r-1] / f[i, r] * scale[i]
                q = p[i] * f[i + 1, r - 1] * scale[i] / f[i, r]
                if u[i] < q:
                    out[i] = True
                    r -= 1
            if r == 0:
                return out
            out[:] = False
    w = p + 1e-12
    keys = np.log(np.maximum(u, 1e-300)) / w
    out[np.argsort(-keys, kind="stable")[:k]] = True
    return out
