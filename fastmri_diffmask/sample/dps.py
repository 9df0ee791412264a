"""Diffusion posterior sampling (DPS) for multi-coil Cartesian MRI on the EDM schedule.

Chung et al., "Diffusion Posterior Sampling for General Noisy Inverse Problems", ICLR 2023, as
used by Ravula et al. (arXiv 2306.03284) at test time: EDM's time steps (Karras et al. 2022,
eq. 5, rho = 7, sigma_max = 80 to sigma_min = 0.002, then 0), Euler steps, optional churn
``S_churn`` (gamma = min(S_churn / N, sqrt 2 - 1)), and after each step the likelihood step
``x -= zeta / ||r|| * grad_x ||r||^2`` with ``r = M (y - A D(x, sigma))``.

Optionally (``dc_weight``) the final sample is made consistent with the measurements by a few
conjugate-gradient steps on ``min ||A x - y||^2 + mu ||x - x_dps||^2`` (a proximal data-consistency
step as in Chung and Ye, "Score-based diffusion models for accelerated MRI", Med Image Anal 2022).
DPS's normalised likelihood step only approximately fits the data; this makes the sampled
frequencies agree with ``y`` up to ``mu``.

Optionally (``dc_every = k``) the data are enforced *during* sampling, as score-MRI does (Chung
and Ye 2022) and as DDS does every step (:mod:`.dds`): on every ``k``-th step, counted back from
the last one (which is always such a step), the denoised estimate is replaced in the Euler step by
its data-consistent version

    x0_dc   = argmin_x ||A x - y||^2 + mu ||x - D(x_i, t_i)||^2      (CG, :func:`data_consistency`)
    x_{i+1} = x0_dc + t_{i+1} (x_i - D(x_i, t_i)) / t_i - zeta / ||r|| grad_x ||r||^2

(the Euler step ``x_i + (t_{i+1} - t_i)(x_i - D)/t_i`` written as ``D + t_{i+1}(x_i - D)/t_i`` with
``D`` replaced by ``x0_dc``), keeping DPS's likelihood step, except on the last step
(``t_N = 0``), which returns ``x0_dc`` itself: a sample whose sampled frequencies equal ``y`` up to
``mu``. The prior can then no longer paint structure that the measured lines contradict.

All work happens on images scaled by the 99th percentile of the zero-filled estimate
``|A^H y|``; results come back in the k-space's own units.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from tqdm import tqdm

from ..errors import UserError
from ..physics import MultiCoilOperator, to_channels, to_complex
from ..prior.base import Denoiser
from .schedule import (SamplingSetup, churn_noise, data_consistency, edm_sigmas,  # noqa: F401 (re-exported)
                       mask_acceleration, prepare_sampling)
from .defaults import DDS_DEFAULTS
from .warm_start import warm_sampling

#: ``mu`` of the per-step data consistency when ``dc_every`` is set and ``dc_weight`` is not: DDS's
#: tuned per-step weight.
DC_EVERY_WEIGHT = DDS_DEFAULTS["dc_weight"]


def default_zeta(acceleration: float) -> float:
    """Likelihood step size tuned on validation slices: 3 at R <= 4, 5 at R >= 8, linear between."""
    return float(min(5.0, max(3.0, 3.0 + (acceleration - 4.0) / 2.0)))


def dps_reconstruct(prior: Denoiser, masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor,
                    steps: int = 100, zeta: float | None = None, churn: float = 0.0,
                    generator: torch.Generator | None = None, progress: bool = True,
                    sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                    dc_weight: float | None = None, dc_iters: int = 10, dc_every: int | None = None,
                    sigma_start: float | None = None, init: str = "noise") -> torch.Tensor:
    """Reconstruct complex images ``(B, H, W)`` from masked multi-coil k-space ``(B, C, H, W)``.

    Parameters
    ----------
    prior : Denoiser
        ``D(x, sigma)`` on 2-channel images scaled to a 99th percentile of about 1.
    mask : tensor broadcastable to ``(B, C, H, W)``
        The sampling mask (line ``(B, 1, 1, W)`` or point ``(B, 1, H, W)``).
    zeta : float, optional
        Likelihood step; default :func:`default_zeta` of the mask's acceleration.
    churn : float
        EDM's ``S_churn`` (0 = deterministic apart from the initial noise).
    generator : torch.Generator, optional
        Seeds the initial noise and churn noise (CPU generator; results moved to the device).
    dc_weight : float, optional
        ``mu`` of a final data-consistency step (:func:`data_consistency`, ``dc_iters`` CG
        iterations) on the scaled image; ``None`` (default) or 0 returns the DPS sample as it is
        (the entry points' default is 0.03: :data:`fastmri_diffmask.sample.defaults.SAMPLER_DEFAULTS`).
        With ``dc_every`` it is the ``mu`` of every data-consistency step instead (default
        :data:`DC_EVERY_WEIGHT`), and no extra final step is taken (the last step is one).
    dc_every : int, optional
        Enforce the data every ``dc_every`` steps during sampling (see the module docstring;
        1 = every step, as score-MRI and DDS do); ``None`` (default) is plain DPS.
    sigma_start, init :
        A warm start, as for DDS (:mod:`.warm_start`; Chung, Sim and Ye, CVPR 2022): begin at
        ``x_init + sigma_start n`` from a zero-filled, SENSE or BART ``pics -l1`` estimate and run
        the rho schedule from ``sigma_start`` in ``steps`` levels. Starting below the noise level
        at which the prior decides the head's outline keeps DPS from painting anatomy where the
        estimate has none. ``init="noise"``, ``sigma_start=None`` (defaults): from ``sigma_max``.

    References
    ----------
    Chung H, Kim J, McCann MT, Klasky ML, Ye JC. Diffusion posterior sampling for general noisy
    inverse problems. ICLR 2023.
    Chung H, Ye JC. Score-based diffusion models for accelerated MRI. Med Image Anal 2022;80:102479.
    Chung H, Sim B, Ye JC. Come-closer-diffuse-faster: accelerating conditional diffusion models
    for inverse problems through stochastic contraction. CVPR 2022.
    Karras T, Aittala M, Aila T, Laine S. Elucidating the design space of diffusion-based generative
    models. NeurIPS 2022.
    """
    dc_steps, mu = consistency_steps(steps, dc_every), None
    if dc_every is not None:
        mu = DC_EVERY_WEIGHT if dc_weight is None else dc_weight
        if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not mu > 0:
            raise UserError(f"dc_weight must be a positive number, got {mu!r}")
        if isinstance(dc_iters, bool) or not isinstance(dc_iters, numbers.Integral) or dc_iters < 1:
            raise UserError(f"dc_iters must be a positive integer, got {dc_iters!r}")
        mu, dc_weight = float(mu), None  # no separate final step: the last step is a consistent one
    p = warm_sampling(masked_kspace, mask, sens_maps, steps, churn, generator, init, sigma_start, sigma_min, sigma_max, rho)
    op, y, t, x, b = p.op, p.y, p.sigmas, p.x, masked_kspace.shape[0]
    device = masked_kspace.device
    if zeta is None:
        zeta = default_zeta(mask_acceleration(op.mask, masked_kspace.shape[-2:]))
    for i in tqdm(range(steps), desc="DPS", unit="step", disable=not progress, leave=False):
        x, sigma_hat = churn_noise(x, float(t[i]), p.gamma, generator)
        x = x.detach().requires_grad_(True)
        denoised = prior(x, torch.full((b,), sigma_hat, device=device))
        if i in dc_steps:
            x = consistent_step(op, y, x, denoised, sigma_hat, float(t[i + 1]), zeta, mu, dc_iters,
                                last=i == steps - 1)
            continue
        residual = y - op.forward(to_complex(denoised))
        sq_norm = residual.abs().pow(2).flatten(1).sum(1)
        (grad,) = torch.autograd.grad(sq_norm.sum(), x)
        with torch.no_grad():
            x_next = x + (float(t[i + 1]) - sigma_hat) * (x - denoised) / sigma_hat
            norm = sq_norm.sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
            x = x_next - zeta / norm * grad
    out = to_complex(x.detach())
    if dc_weight:  # None or 0: no final step
        with torch.no_grad():
            out = data_consistency(op, y, out, float(dc_weight), dc_iters)
    return out * p.scale


def consistency_steps(steps: int, dc_every: int | None) -> frozenset[int]:
    """Indices of the steps that enforce the data: every ``dc_every``-th counted back from the
    last step (``steps - 1``, always included); none when ``dc_every`` is None."""
    if dc_every is None:
        return frozenset()
    if isinstance(dc_every, float) and dc_every.is_integer():  # 2.0 from a YAML config
        dc_every = int(dc_every)
    if isinstance(dc_every, bool) or not isinstance(dc_every, numbers.Integral) or dc_every < 1:
        raise UserError(f"dc_every must be a positive integer (or None), got {dc_every!r}")
    return frozenset(range(steps - 1, -1, -dc_every))


def consistent_step(op: MultiCoilOperator, y: torch.Tensor, x: torch.Tensor, denoised: torch.Tensor,
                    sigma: float, sigma_next: float, zeta: float, mu: float, iters: int, last: bool) -> torch.Tensor:
    """One DPS step from ``x`` (noise level ``sigma``) whose Euler update starts from the
    data-consistent ``x0_dc = argmin ||A x - y||^2 + mu ||x - D||^2`` instead of ``D = denoised``
    (``x`` must require grad and ``denoised`` carry its graph to it, for DPS's likelihood step). On the ``last`` step
    (``sigma_next = 0``) it returns ``x0_dc`` without a likelihood step, which would undo the fit."""
    if last:
        with torch.no_grad():
            return to_channels(data_consistency(op, y, to_complex(denoised.detach()), mu, iters))
    residual = y - op.forward(to_complex(denoised))
    sq_norm = residual.abs().pow(2).flatten(1).sum(1)
    (grad,) = torch.autograd.grad(sq_norm.sum(), x)
    with torch.no_grad():
        d = denoised.detach()
        consistent = to_channels(data_consistency(op, y, to_complex(d), mu, iters))
        x_next = consistent + sigma_next / sigma * (x - d)
        norm = sq_norm.sqrt().clamp_min(1e-12).view(-1, 1, 1, 1)
        return x_next - zeta / norm * grad




class PosteriorSummary(NamedTuple):
    mean: torch.Tensor   # complex (B, H, W): mean of the K samples
    std: torch.Tensor    # real (B, H, W): pixelwise std of the magnitude over the K samples
    samples: torch.Tensor  # complex (K, B, H, W)


def dps_posterior(prior: Denoiser, masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor,
                  num_samples: int = 4, **kw) -> PosteriorSummary:
    """K DPS samples per slice (batched), their mean and pixelwise std (an uncertainty map)."""
    k = num_samples
    rep = lambda t: t.repeat(k, *([1] * (t.dim() - 1))) if t.shape[0] == masked_kspace.shape[0] else t  # noqa: E731
    out = dps_reconstruct(prior, rep(masked_kspace), rep(mask), rep(sens_maps), **kw)
    samples = out.view(k, *masked_kspace.shape[:1], *out.shape[1:])
    return PosteriorSummary(samples.mean(0), samples.abs().std(0), samples)


