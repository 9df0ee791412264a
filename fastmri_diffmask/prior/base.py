"""The denoiser interface every prior implements.

A denoiser ``D(x, sigma)`` takes noisy 2-channel images ``x`` shaped ``(B, 2, H, W)`` (real,
imaginary) and noise levels ``sigma`` shaped ``(B,)`` and returns its estimate of the clean image,
``E[x0 | x0 + sigma n = x]`` for an ideal denoiser (Tweedie). The score of the noised data
distribution follows as ``(D(x, sigma) - x) / sigma**2`` (Karras et al. 2022, EDM, eq. 3).
"""

from __future__ import annotations

import torch
from torch import nn


class Denoiser(nn.Module):
    """Base class: subclasses implement ``forward(x, sigma) -> x0_hat``."""

    #: A short id recorded in mask files (e.g. "edm-unet" or "gaussian").
    prior_id: str = "denoiser"

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def score(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``grad log p_sigma(x) = (D(x, sigma) - x) / sigma^2``."""
        s = as_sigma(sigma, x)
        return (self(x, s) - x) / s.view(-1, 1, 1, 1) ** 2


def as_sigma(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or ``(B,)`` sigma to a float tensor ``(B,)`` on ``x``'s device."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.expand(x.shape[0]) if s.dim() == 0 else s.reshape(x.shape[0])
