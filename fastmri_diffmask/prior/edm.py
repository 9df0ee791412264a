"""EDM preconditioning and training loss (Karras et al., "Elucidating the Design Space of
Diffusion-Based Generative Models", NeurIPS 2022, Table 1 and Sec. 5).

``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with
``c_skip = s^2/(sigma^2+s^2)``, ``c_out = sigma s/sqrt(sigma^2+s^2)``, ``c_in = 1/sqrt(sigma^2+s^2)``,
``c_noise = ln(sigma)/4`` and ``s = sigma_data``. The backbone ``F`` is any module
``F(x, c_noise)``; this wrapper keeps it separate.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Denoiser, as_sigma

P_MEAN, P_STD, SIGMA_DATA = -1.2, 1.2, 0.5


def edm_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """``(c_skip, c_out, c_in, c_noise)`` for a tensor of noise levels."""
    s2 = sigma ** 2 + sigma_data ** 2
    return sigma_data ** 2 / s2, sigma * sigma_data / s2.sqrt(), 1 / s2.sqrt(), sigma.log() / 4


class EDMPrecond(Denoiser):
    """EDM-preconditioned denoiser around a backbone ``F(x, c_noise)``."""

    prior_id = "edm-unet"

    def __init__(self, backbone: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.backbone = backbone
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in edm_coefficients(sigma, self.sigma_data))
        return c_skip * x + c_out * self.backbone(c_in * x, c_noise.flatten())


def sample_sigma(n: int, generator: torch.Generator | None = None, p_mean: float = P_MEAN,
                 p_std: float = P_STD, device=None) -> torch.Tensor:
    """``ln(sigma) ~ N(p_mean, p_std^2)``, EDM's training distribution."""
    return (torch.randn(n, generator=generator) * p_std + p_mean).exp().to(device)


def edm_loss(denoiser: Denoiser, x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
             sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """EDM's weighted denoising loss ``lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2``, mean over
    pixels and batch, with ``lambda = (sigma^2 + s^2) / (sigma s)^2``."""
    weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
    s = sigma.view(-1, 1, 1, 1)
    err = (denoiser(x0 + s * noise, sigma) - x0) ** 2
    return (weight.view(-1, 1, 1, 1) * err).mean()
