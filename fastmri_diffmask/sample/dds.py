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

All work happens on images scaled by the 99th percentile of the zero-filled estimate, as in DPS.
"""

from __future__ import annotations

import torch
from tqdm import tqdm

from ..physics import to_channels, to_complex
from ..prior.base import Denoiser
from .dps import churn_noise, data_consistency, prepare_sampling


#: Settings chosen on the validation split (``benchmarks/tune_dds.py``, BENCHMARKS.md).
DDS_DEFAULTS = {"steps": 50, "dc_weight": 0.01, "cg_iters": 5, "churn": 20.0}
#: Defaults of both samplers' options where a caller leaves them ``None``: DPS as in FACTS.md
#: (100 steps, no churn, no final data-consistency step), DDS as tuned.
SAMPLER_DEFAULTS = {"dps": {"steps": 100, "churn": 0.0, "dc_weight": None},
                    "dds": {k: DDS_DEFAULTS[k] for k in ("steps", "churn", "dc_weight")}}


def dds_reconstruct(prior: Denoiser, masked_kspace: torch.Tensor, mask: torch.Tensor, sens_maps: torch.Tensor,
                    steps: int = DDS_DEFAULTS["steps"], dc_weight: float = DDS_DEFAULTS["dc_weight"],
                    cg_iters: int = DDS_DEFAULTS["cg_iters"], churn: float = DDS_DEFAULTS["churn"],
                    generator: torch.Generator | None = None, progress: bool = True,
                    sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
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
    """
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    p = prepare_sampling(masked_kspace, mask, sens_maps, steps, churn, generator, sigma_min, sigma_max, rho)
    t, x, b = p.sigmas, p.x, masked_kspace.shape[0]
    with torch.no_grad():
        for i in tqdm(range(steps), desc="DDS", unit="step", disable=not progress, leave=False):
            x, sigma_hat = churn_noise(x, float(t[i]), p.gamma, generator)
            denoised = prior(x, torch.full((b,), sigma_hat, device=x.device))
            consistent = to_channels(data_consistency(p.op, p.y, to_complex(denoised), dc_weight, cg_iters))
            x = consistent + float(t[i + 1]) / sigma_hat * (x - denoised)
    return to_complex(x) * p.scale
