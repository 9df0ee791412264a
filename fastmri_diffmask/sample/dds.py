"""Decomposed diffusion sampling (DDS): a Jacobian-free posterior sampler on the EDM schedule.

Chung, Lee and Ye, "Decomposed Diffusion Sampler for Accelerating Large-Scale Inverse Problems",
ICLR 2024. Where DPS (:mod:`.dps`) backpropagates the data misfit through the denoiser at every
step, DDS enforces the data on the denoised estimate itself: at each noise level ``t_i``

    x0_hat = D(x_i, t_i)                                   (Tweedie's posterior mean)
    x0_dc  = argmin_x ||A x - y||^2 + mu ||x - x0_hat||^2   (a few conjugate-gradient steps)
    x_{i+1} = x0_dc + t_{i+1} (x_i - x0_hat) / t_i         (EDM Euler / DDIM step, noise kept)

so each step costs one denoiser forward pass and ``cg_iters`` operator applications, and no
backward pass: about three times cheaper per step than DPS here. Churn is EDM's ``S_churn``, as in
:func:`.dps.dps_reconstruct`. The last step (``t_N = 0``) returns ``x0_dc`` of the smallest noise
level, which is data-consistent by construction.

A warm start (``init``, ``sigma_start``; :mod:`.warm_start`, after Chung, Sim and Ye's
"come-closer-diffuse-faster", CVPR 2022) begins at ``x_init + sigma_start n`` from a zero-filled,
SENSE or CS estimate and runs the rho schedule from ``sigma_start``, so far fewer steps suffice.
``eta`` makes the step stochastic: ``x_{i+1} = x0_dc + t_{i+1} (sqrt(1 - eta^2) eps + eta n)`` with
``eps = (x_i - x0_hat) / t_i`` the denoiser's noise estimate and ``n`` fresh noise (DDIM's eta in
spirit, Song, Meng and Ermon, ICLR 2021; ``eta = 1`` re-noises the data-consistent estimate
outright, as CCDF and score-MRI do). ``eta = None`` (default) is the deterministic step above.

Where the schedule ends matters as much as where it starts: ``sigma_min = "auto"``
(:func:`default_sigma_min`, the entry points' default) ends it at a noise level that rises with
the acceleration, 0.005 at R = 4 to 0.02 at R = 12. On validation (BENCHMARKS.md, "Where the DDS
schedule ends") EDM's 0.002 spends the last steps denoising below what undersampled data can
support; ending higher gained +0.2-0.7 dB at R = 6-12 and tied at R = 4.

All work happens on images scaled by the 99th percentile of the zero-filled estimate, as in DPS.
"""

from __future__ import annotations

import math

import torch
from tqdm import tqdm

from ..physics import to_channels, to_complex
from ..prior.base import Denoiser
from .defaults import DDS_DEFAULTS
from .schedule import churn_noise, data_consistency, default_sigma_min, resolve_sigma_min  # noqa: F401 (re-exported)
from .warm_start import check_eta, warm_sampling


def dds_reconstruct(prior: Denoiser, masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor,
                    steps: int = DDS_DEFAULTS["steps"], dc_weight: float = DDS_DEFAULTS["dc_weight"],
                    cg_iters: int = DDS_DEFAULTS["cg_iters"], churn: float = DDS_DEFAULTS["churn"],
                    generator: torch.Generator | None = None, progress: bool = True,
                    sigma_min: float | str = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                    sigma_start: float | None = None, init: str = "noise", eta: float | None = None) -> torch.Tensor:
    """Reconstruct complex images ``(B, H, W)`` from masked multi-coil k-space ``(B, C, H, W)``.

    Parameters
    ----------
    prior : Denoiser
        ``D(x, sigma)`` on 2-channel images scaled to a 99th percentile of about 1.
    mask : tensor broadcastable to ``(B, C, H, W)``
        The sampling mask (line ``(B, 1, 1, W)`` or point ``(B, 1, H, W)``).
    steps : int
        Number of noise levels (denoiser evaluations).
    dc_weight : float
        ``mu`` of the per-step data-consistency problem (smaller trusts the data more).
    cg_iters : int
        Conjugate-gradient iterations per step, warm-started at the denoised estimate.
    churn : float
        EDM's ``S_churn`` (0 = deterministic apart from the initial noise).
        The defaults (:data:`DDS_DEFAULTS`) were tuned on the embedded validation slices.
    generator : torch.Generator, optional
        Seeds the initial noise and churn noise (CPU generator; results moved to the device).
    sigma_start : float, optional
        Noise level of the first step: the schedule runs from it to ``sigma_min`` in ``steps``
        levels. ``None`` (default) is ``sigma_max``, the sampler as it always was.
    sigma_min : float or "auto"
        Noise level of the last step (default 0.002, EDM's); ``"auto"``: :func:`default_sigma_min`
        of the mask's acceleration, the default of ``recon``, ``compare`` and
        :class:`~fastmri_diffmask.sample.model.DiffusionPosteriorModel`.
    init : {"noise", "zero-filled", "sense", "l1"}
        What the first step starts from: ``x_init + sigma_start n`` with ``x_init`` nothing
        (``"noise"``, default), ``A^H y``, a few CG steps of Tikhonov SENSE, or BART ``pics -l1``
        (:mod:`.warm_start`).
    eta : float in [0, 1], optional
        Fresh-noise fraction of each step (module docstring); ``None`` (default) or 0: none, the
        deterministic DDS step bit for bit (no noise drawn). ``eta > 0`` draws one noise tensor per
        step from ``generator``.

    References
    ----------
    Chung H, Lee S, Ye JC. Decomposed diffusion sampler for accelerating large-scale inverse
    problems. ICLR 2024.
    Chung H, Sim B, Ye JC. Come-closer-diffuse-faster: accelerating conditional diffusion models
    for inverse problems through stochastic contraction. CVPR 2022.
    Song J, Meng C, Ermon S. Denoising diffusion implicit models. ICLR 2021.
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    eta = check_eta(eta) or None  # 0: the deterministic step, drawing nothing
    sigma_min = resolve_sigma_min(sigma_min, mask, masked_kspace.shape[-2:])
    p = warm_sampling(masked_kspace, mask, sens_maps, steps, churn, generator, init, sigma_start, sigma_min, sigma_max, rho)
    t, x, b = p.sigmas, p.x, masked_kspace.shape[0]
    with torch.no_grad():
        for i in tqdm(range(steps), desc="DDS", unit="step", disable=not progress, leave=False):
            x, sigma_hat = churn_noise(x, float(t[i]), p.gamma, generator)
            denoised = prior(x, torch.full((b,), sigma_hat, device=x.device))
            consistent = to_channels(data_consistency(p.op, p.y, to_complex(denoised), dc_weight, cg_iters))
            fresh = None
            if eta is not None and i + 1 < steps:
                fresh = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
            x = dds_step(x, denoised, consistent, sigma_hat, float(t[i + 1]), eta, fresh)
    return to_complex(x) * p.scale


def dds_step(x: torch.Tensor, denoised: torch.Tensor, consistent: torch.Tensor, sigma: float, sigma_next: float,
             eta: float | None = None, fresh: torch.Tensor | None = None) -> torch.Tensor:
    """One DDS update from noise level ``sigma`` to ``sigma_next`` (module docstring): the
    deterministic step ``x0_dc + sigma_next (x - x0_hat) / sigma`` when ``eta`` is ``None``, else
    ``x0_dc + sigma_next (sqrt(1 - eta^2) eps + eta fresh)``; at ``sigma_next = 0`` with ``eta``,
    ``x0_dc`` itself (``fresh`` may then be ``None``)."""
    if eta is None:
        return consistent + sigma_next / sigma * (x - denoised)
    if sigma_next == 0:
        return consistent
    return consistent + sigma_next * (math.sqrt(1 - eta ** 2) * (x - denoised) / sigma + eta * fresh)
