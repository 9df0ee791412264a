"""A compact UNet backbone for 2-channel MR images, conditioned on the noise level.

DDPM-style (Ho et al. 2020): residual blocks with GroupNorm and SiLU (the
noise embedding as a scale and shift), one skip connection per down block, the noise embedding added
to every block, average-pool down / nearest up, skip connections by concatenation. No attention:
at 128^2 on two CPU cores convolutions give more per second. The preconditioning (EDM's c_skip,
c_out, c_in, c_noise) lives in :mod:`fastmri_diffmask.prior.edm`, not here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Named sizes. "small" is the default prior shipped for 128^2 on 2 CPU cores.
PRESETS = {
    "tiny": dict(channels=(16, 32), blocks_per_level=1),
    "small": dict(channels=(32, 64, 96, 128), blocks_per_level=1),
    "medium": dict(channels=(48, 96, 144, 192), blocks_per_level=2),
    "large": dict(channels=(64, 128, 192, 256, 256), blocks_per_level=2),
}


def _groups(ch: int) -> int:
    return math.gcd(ch, 8)


class FourierEmbedding(nn.Module):
    """Sinusoidal embedding of the scalar noise condition ``c_noise``."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("freqs", torch.exp(-math.log(1e4) * torch.arange(dim // 2) / (dim // 2)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        arg = 100.0 * t[:, None] * self.freqs[None]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        return self.skip(x) + self.conv2(h)


class UNet(nn.Module):
    """UNet ``F(x, c_noise)`` for ``(B, in_channels, H, W)``; H and W divisible by 2**(levels-1).

    That multiple is :attr:`size_multiple`; :class:`~fastmri_diffmask.prior.edm.EDMPrecond` pads
    other sizes up to it and crops back, so the backbone itself stays size-strict.

    Parameters
    ----------
    in_channels : int
        2 for complex images as (real, imaginary).
    channels : tuple of int
        Feature widths per resolution level.
    blocks_per_level : int
        Residual blocks per level, on the way down and on the way up.
    """

    def __init__(self, in_channels: int = 2, channels=(32, 64, 96, 128), blocks_per_level: int = 1,
                 emb_dim: int | None = None):
        super().__init__()
        self.config = dict(in_channels=in_channels, channels=list(channels), blocks_per_level=blocks_per_level)
        emb_dim = emb_dim or 4 * channels[0]
        self.config["emb_dim"] = emb_dim
        self.embed = nn.Sequential(FourierEmbedding(channels[0]), nn.Linear(channels[0], emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.inp = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        ch, skips = channels[0], []
        for level, width in enumerate(channels):
            for _ in range(blocks_per_level):
                self.down.append(ResBlock(ch, width, emb_dim))
                ch = width
                skips.append(ch)
            if level < len(channels) - 1:
                self.down.append(nn.AvgPool2d(2))
        self.mid = ResBlock(ch, ch, emb_dim)
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            for _ in range(blocks_per_level):
                self.up.append(ResBlock(ch + skips.pop(), width, emb_dim))
                ch = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
        self.out = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), nn.Conv2d(ch, in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)
        self.levels = len(channels)

    @property
    def size_multiple(self) -> int:
        """``2**(levels-1)``: H and W must be divisible by it (one halving per level below the top)."""
        return 2 ** (self.levels - 1)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        emb = self.embed(c_noise)
        h = self.inp(x)
        hs = []
        for layer in self.down:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
                hs.append(h)
            else:
                h = layer(h)
        h = self.mid(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, hs.pop()], dim=1), emb) if isinstance(layer, ResBlock) else layer(h)
        return self.out(h)
