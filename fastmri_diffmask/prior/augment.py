"""On-the-fly augmentation of complex training images for the prior (``train-prior --augment``).

What real acquisitions vary and one head cannot show: the head's size and position in the field
of view, its in-plane rotation, left-right orientation, the contrast and the smooth background
phase. Every draw comes from the trainer's ``torch.Generator``, so a resumed run stays exact.

``basic`` (the default, as before): left-right flip and a global phase (MR images carry no
absolute phase). ``full`` adds, each with probability ``p``:

* a similarity transform: rotation ``U(-max_rotation, max_rotation)`` degrees, zoom
  ``log U(min_zoom, max_zoom)`` (head size / field of view; more room to shrink than to grow, so
  a zoomed head is rarely cut by the field of view), shift ``U(-max_shift, max_shift)``
  of the field of view per axis; bilinear resampling of the real and imaginary parts, zeros
  outside (an image's background);
* contrast: ``|x|^gamma`` with ``log gamma ~ U(-log max_gamma, log max_gamma)``, phase kept;
* a smooth random phase: ``exp(i phi)``, ``phi`` a bicubically upsampled ``4 x 4`` grid of
  ``N(0, phase_std^2)`` values (low-order, as the simulated phase of ``simulate.smooth_phase``).

Each augmented image is rescaled to a 99th percentile of 1, the trainer's scaling.

References
----------
Karras T, et al. Elucidating the design space of diffusion-based generative models. NeurIPS 2022
(augmentation of diffusion training data, Appendix C.4).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

MODES = ("basic", "full")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    mode: str = "basic"
    flip: bool = True
    global_phase: bool = True
    p: float = 0.8
    max_rotation: float = 20.0
    min_zoom: float = 0.7
    max_zoom: float = 1.15
    max_shift: float = 0.1
    max_gamma: float = 1.5
    phase_std: float = 1.0


def flip_and_global_phase(x: torch.Tensor, g: torch.Generator, flip: bool = True,
                          global_phase: bool = True) -> torch.Tensor:
    """Left-right flip with probability 1/2 and a uniform global phase, on ``(B, 2, H, W)``
    (each optional; the draws in that order)."""
    b = x.shape[0]
    if flip:
        flipped = torch.rand(b, generator=g) < 0.5
        x = torch.where(flipped.view(-1, 1, 1, 1), x.flip(-1), x)
    if global_phase:
        theta = torch.rand(b, generator=g) * 2 * math.pi
        x = rotate_phase(x, theta.view(-1, 1, 1))
    return x


def rotate_phase(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Multiply the complex image ``x`` (2 channels) by ``exp(i theta)``; ``theta`` broadcasts to ``(B, H, W)``."""
    c, s = theta.cos(), theta.sin()
    return torch.stack([c * x[:, 0] - s * x[:, 1], s * x[:, 0] + c * x[:, 1]], dim=1)


def similarity_transform(x: torch.Tensor, angle_deg: torch.Tensor, zoom: torch.Tensor,
                         shift: torch.Tensor) -> torch.Tensor:
    """Rotate by ``angle_deg``, zoom by ``zoom`` (> 1 enlarges the head) and shift by ``shift``
    (fractions of the field of view, ``(B, 2)``) each image of ``(B, 2, H, W)``; zeros outside."""
    a = angle_deg * math.pi / 180
    cos, sin = a.cos() / zoom, a.sin() / zoom
    theta = torch.stack([torch.stack([cos, -sin, -2 * shift[:, 0]], -1),
                         torch.stack([sin, cos, -2 * shift[:, 1]], -1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def smooth_phase_field(b: int, h: int, w: int, std: float, g: torch.Generator) -> torch.Tensor:
    """``(B, H, W)`` smooth phase maps: a ``4 x 4`` Gaussian grid upsampled bicubically."""
    coarse = torch.randn(b, 1, 4, 4, generator=g) * std
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[:, 0]


def rescale(x: torch.Tensor) -> torch.Tensor:
    """Divide each image by the 99th percentile of its magnitude (the trainer's scaling)."""
    mag = torch.linalg.vector_norm(x, dim=1).flatten(1)
    return x / torch.quantile(mag, 0.99, dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)


def augment(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """Augment a batch of 2-channel complex images ``(B, 2, H, W)`` (see the module docstring)."""
    if cfg.mode not in MODES:
        raise ValueError(f"unknown augmentation mode {cfg.mode!r}; use one of {', '.join(MODES)}")
    x = flip_and_global_phase(x, g, cfg.flip, cfg.global_phase)
    if cfg.mode == "basic":
        return x
    b, _, h, w = x.shape
    u = torch.rand(b, 3, generator=g) < cfg.p  # which images get geometry, contrast, phase
    angle = (torch.rand(b, generator=g) * 2 - 1) * cfg.max_rotation
    lo, hi = math.log(cfg.min_zoom), math.log(cfg.max_zoom)
    zoom = torch.exp(lo + torch.rand(b, generator=g) * (hi - lo))
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * cfg.max_shift
    gamma = torch.exp((torch.rand(b, generator=g) * 2 - 1) * math.log(cfg.max_gamma))
    phase = smooth_phase_field(b, h, w, cfg.phase_std, g)
    geo = u[:, 0]
    angle, zoom = torch.where(geo, angle, 0.0), torch.where(geo, zoom, 1.0)
    shift = torch.where(geo.view(-1, 1), shift, 0.0)
    x = similarity_transform(x, angle, zoom, shift)
    gamma = torch.where(u[:, 1], gamma, 1.0).view(-1, 1, 1, 1)
    mag = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    x = x * (mag.clamp_min(1e-12) ** (gamma - 1))
    x = rotate_phase(x, torch.where(u[:, 2].view(-1, 1, 1), phase, 0.0))
    return rescale(x)
