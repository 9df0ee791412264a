"""What every sampler on the EDM schedule shares: the noise levels, the scaled set-up, churn and
the proximal data-consistency step.

DPS (:mod:`.dps`), DDS (:mod:`.dds`), their warm starts (:mod:`.warm_start`) and the mask
learners' unrolled reconstructions use these pieces. EDM's schedule is Karras et al. 2022, eq. 5
(rho = 7, sigma_max = 80 to sigma_min = 0.002, then 0); the data-consistency step is the proximal
problem ``min ||A x - y||^2 + mu ||x - x0||^2`` solved by conjugate gradients (Chung and Ye,
"Score-based diffusion models for accelerated MRI", Med Image Anal 2022).

References
----------
Karras T, Aittala M, Aila T, Laine S. Elucidating the design space of diffusion-based generative
models. NeurIPS 2022.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..physics import MultiCoilOperator, percentile_scale, reshift, unshift


def edm_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM's noise levels ``t_0 > ... > t_{N-1}`` followed by ``t_N = 0`` (length ``steps + 1``)."""
    i = torch.arange(steps, dtype=torch.float64)
    t = (sigma_max ** (1 / rho) + i / max(steps - 1, 1) * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros(1, dtype=torch.float64)])


def mask_acceleration(mask: torch.Tensor, shape: tuple[int, int]) -> float:
    """Acceleration of a broadcastable mask over an ``(H, W)`` k-space grid (first batch item)."""
    full = torch.broadcast_to(mask[0].float(), (*mask.shape[1:-2], *shape)) if mask.dim() >= 3 else mask
    return float(full.numel() / full.sum().clamp_min(1))


def default_sigma_min(acceleration: float) -> float:
    """The last noise level of the entry points' DDS schedule for a mask's acceleration, chosen
    on validation (BENCHMARKS.md, "Where the DDS schedule ends"): 0.005 at R <= 4, 0.02 at
    R >= 12, geometric between (0.01 at R = 8)."""
    r = min(12.0, max(4.0, float(acceleration)))
    return 0.005 * 4.0 ** ((r - 4.0) / 8.0)


def check_sigma_min(sigma_min) -> float:
    """Validate a schedule end, ``"auto"`` or a finite number > 0 (one-line ``UserError`` if not);
    returns the largest value it can resolve to (for ``"auto"``, :func:`default_sigma_min` at
    R >= 12), the bound a ``sigma_start`` must exceed."""
    from ..errors import UserError

    if sigma_min == "auto":
        return default_sigma_min(math.inf)
    if isinstance(sigma_min, bool) or not isinstance(sigma_min, (int, float)) or not 0 < float(sigma_min) < math.inf:
        raise UserError(f"sigma_min must be a positive number or 'auto', got {sigma_min!r}")
    return float(sigma_min)


def resolve_sigma_min(sigma_min, mask: torch.Tensor, shape) -> float:
    """``sigma_min`` as a float (:func:`check_sigma_min`): ``"auto"`` -> :func:`default_sigma_min`
    of ``mask``'s acceleration over the ``(H, W)`` grid ``shape``."""
    bound = check_sigma_min(sigma_min)
    return default_sigma_min(mask_acceleration(mask, tuple(shape))) if sigma_min == "auto" else bound


def data_consistency(op: MultiCoilOperator, y: torch.Tensor, x0: torch.Tensor, mu: float, iters: int = 10) -> torch.Tensor:
    """``argmin_x ||A x - y||^2 + mu ||x - x0||^2`` by conjugate gradients from ``x0`` (complex ``(B, H, W)``).

    Solves ``(A^H A + mu I) x = A^H y + mu x0`` per slice; ``A`` is ``op`` (mask, FFT, coils):
    anything with ``adjoint``, ``normal``, ``centred`` and ``uncentred()`` like
    :class:`MultiCoilOperator`. The iterations run on ``ifftshift``-ed arrays
    (:meth:`MultiCoilOperator.uncentred`): the same arithmetic on permuted data, without two
    shifts per FFT.
    """
    centred = op.centred
    op = op.uncentred()
    if centred:
        y, x0 = unshift(y), unshift(x0)
    normal = lambda v: op.normal(v) + mu * v  # noqa: E731
    x = x0.clone()
    r = op.adjoint(y) + mu * x0 - normal(x)
    p = r.clone()
    rs = r.abs().pow(2).flatten(1).sum(1)
    for _ in range(iters):
        ap = normal(p)
        alpha = rs / (p.conj() * ap).real.flatten(1).sum(1).clamp_min(1e-30)
        x = x + alpha.view(-1, 1, 1) * p
        r = r - alpha.view(-1, 1, 1) * ap
        rs_new = r.abs().pow(2).flatten(1).sum(1)
        p = r + (rs_new / rs.clamp_min(1e-30)).view(-1, 1, 1) * p
        rs = rs_new
    return reshift(x) if centred else x


class SamplingSetup(NamedTuple):
    op: MultiCoilOperator   # mask, FFT and coils on the k-space's device
    y: torch.Tensor         # the measurements divided by ``scale``
    scale: torch.Tensor     # (B, 1, 1): 99th percentile of the zero-filled magnitude
    sigmas: torch.Tensor    # EDM noise levels, ``steps + 1`` of them ending in 0
    x: torch.Tensor         # (B, 2, H, W) initial noise at ``sigmas[0]``
    gamma: float            # churn factor per step (0 = none)


def prepare_sampling(masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor, steps: int,
                     churn: float, generator: torch.Generator | None, sigma_min: float = 0.002,
                     sigma_max: float = 80.0, rho: float = 7.0) -> SamplingSetup:
    """What every sampler on the EDM schedule starts from: the operator, the measurements scaled by
    the 99th percentile of ``|A^H y|``, the noise levels, the initial noise and EDM's churn factor
    ``gamma = min(S_churn / N, sqrt 2 - 1)``."""
    device = masked_kspace.device
    op = MultiCoilOperator(sens_maps.to(device), mask.to(device=device, dtype=torch.float32))
    scale = percentile_scale(op.adjoint(masked_kspace))
    b, _, h, w = masked_kspace.shape
    t = edm_sigmas(steps, sigma_min, sigma_max, rho)
    x = torch.randn((b, 2, h, w), generator=generator).to(device, torch.float32) * float(t[0])
    gamma = min(churn / steps, math.sqrt(2) - 1) if churn > 0 else 0.0
    return SamplingSetup(op, masked_kspace / scale.unsqueeze(1), scale, t, x, gamma)


def churn_noise(x: torch.Tensor, sigma: float, gamma: float, generator: torch.Generator | None) -> tuple[torch.Tensor, float]:
    """EDM's stochastic step: raise the noise level to ``sigma (1 + gamma)`` with fresh noise."""
    sigma_hat = sigma * (1 + gamma)
    if gamma > 0:
        x = x + math.sqrt(sigma_hat ** 2 - sigma ** 2) * torch.randn(x.shape, generator=generator).to(x.device)
    return x, sigma_hat
