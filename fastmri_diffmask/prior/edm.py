"""EDM preconditioning and training loss (Karras et al., "Elucidating the Design Space of
Diffusion-Based Generative Models", NeurIPS 2022, Table 1 and Sec. 5).

``D(x, sigma) = c_skip x + c_out F(c_in x, c_noise)`` with
``c_skip = s^2/(sigma^2+s^2)``, ``c_out = sigma s/sqrt(sigma^2+s^2)``, ``c_in = 1/sqrt(sigma^2+s^2)``,
``c_noise = ln(sigma)/4`` and ``s = sigma_data``. The backbone ``F`` is any module
``F(x, c_noise)``; this wrapper keeps it separate (as EDM's ``training/networks.py`` does) and
also adapts the input's size to it: a backbone that needs ``H, W`` divisible by its
``size_multiple`` (a UNet) gets ``c_in x`` reflect-padded up to that multiple and its output
cropped back (:mod:`fastmri_diffmask.prior.padding`), so the denoiser takes any matrix size.

Like EDM's ``use_fp16``, the wrapper can run the backbone alone in reduced precision
(:data:`PRECISIONS`: ``"bfloat16"`` autocast, the CPU's AMX / AVX-512-BF16 units) while the
preconditioning, the input and the output stay float32; the samplers and objectives see a float32
denoiser either way, and gradients flow through autocast.
"""

from __future__ import annotations

import torch
from torch import nn

from . import PRECISIONS
from .base import Denoiser, as_sigma
from .padding import crop_padding, pad_to_multiple, size_multiple

P_MEAN, P_STD, SIGMA_DATA = -1.2, 1.2, 0.5



def edm_coefficients(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA):
    """``(c_skip, c_out, c_in, c_noise)`` for a tensor of noise levels."""
    s2 = sigma ** 2 + sigma_data ** 2
    return sigma_data ** 2 / s2, sigma * sigma_data / s2.sqrt(), 1 / s2.sqrt(), sigma.log() / 4


class EDMPrecond(Denoiser):
    """EDM-preconditioned denoiser around a backbone ``F(x, c_noise)``, for any ``H x W``.

    ``D(x, sigma) = c_skip x + c_out crop(F(pad(c_in x), c_noise))``: ``pad`` reflects ``c_in x``
    up to the backbone's ``size_multiple`` (see :mod:`~fastmri_diffmask.prior.padding` for why
    reflect and not zeros), ``crop`` removes the same pixels. Inputs whose size is already a
    multiple skip both, so their result is the unpadded network call's, bit for bit.
    """

    prior_id = "edm-unet"

    def __init__(self, backbone: nn.Module, sigma_data: float = SIGMA_DATA, precision: str = "float32"):
        super().__init__()
        self.backbone = backbone
        self.sigma_data = sigma_data
        self.precision = precision

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {value!r}")
        self._precision = value

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sigma = as_sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in edm_coefficients(sigma, self.sigma_data))
        inp, pad = pad_to_multiple(c_in * x, size_multiple(self.backbone))
        if self.precision == "float32":
            out = self.backbone(inp, c_noise.flatten())
        else:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                out = self.backbone(inp, c_noise.flatten())
            out = out.to(x.dtype)
        return c_skip * x + c_out * crop_padding(out, pad)


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
