"""Reconstruct a folder of fastMRI files with one mask and one method, and score every slice.

The engine behind ``fastmri-diffmask recon`` (and reused by ``compare``): masks per volume
(seeded by the file name, as fastMRI's transforms do), ESPIRiT maps from the undersampled data,
zero-filled / BART / sigpy / DPS / DDS reconstruction, fastMRI's metrics against the file's target,
reconstructions written in fastMRI's layout (``reconstruction`` per file).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from ..sample.defaults import DDS_DEFAULTS, resolve_sampler_options
from .classical import default_lamda

METHODS = ("zero-filled", "bart-l1", "sigpy-l1", "dps", "dds")
#: Methods that need a diffusion prior.
DIFFUSION_METHODS = ("dps", "dds")

SENS_CHOICES = ("espirit-bart", "espirit-sigpy", "file")


@dataclass
class ReconSettings:
    method: str = "zero-filled"
    lamda: float | None = None          # CS regularisation; None = tuned default per acceleration
    max_iter: int = 100
    steps: int | None = None            # DPS / DDS; None = SAMPLER_DEFAULTS
    zeta: float | None = None           # DPS likelihood step; None = tuned per acceleration
    churn: float | None = None          # EDM S_churn; None = SAMPLER_DEFAULTS
    dc_weight: float | None = None      # DPS: final data-consistency mu (None = default 0.03, 0 = off); DDS: per-step mu
    dc_every: int | None = None         # DPS: data consistency every k steps during sampling (None = default 5, 0 = off)
    cg_iters: int = DDS_DEFAULTS["cg_iters"]  # DDS: CG iterations per step
    init: str | None = None             # DPS / DDS: start estimate (sample.warm_start.INITS); None = default
    sigma_start: float | None = None    # DPS / DDS: first noise level; None = default (sample.defaults)
    eta: float | None = None            # DDS: fresh-noise fraction per step; None = default
    sigma_min: float | str | None = None  # DDS: last noise level ("auto" by acceleration); None = default
    batch: int = 4
    sens: str = "espirit-bart"
    seed: int = 0
    device: str = "auto"
    prior: object = field(default=None, repr=False)  # a loaded Denoiser for DPS / DDS

    def sampler_options(self) -> dict:
        """This diffusion method's sampler options with their defaults filled in
        (:func:`~fastmri_diffmask.sample.defaults.resolve_sampler_options`)."""
        names = ("steps", "churn", "dc_weight", "init", "sigma_start") + (
            ("eta", "sigma_min") if self.method == "dds" else ("dc_every",))
        return resolve_sampler_options(self.method, **{k: getattr(self, k) for k in names})


def volume_seed(fname: str, seed: int) -> int:
    """A per-volume seed from the file name, so all slices of a volume share one mask."""
    return (zlib.crc32(fname.encode()) + seed) % 2**31


def center_crop(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = x.shape[-2:]
    th, tw = shape
    if th > h or tw > w:
        return x
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


def sens_maps_for(kspace_masked: np.ndarray, file_maps: np.ndarray | None, nlf: int, how: str, device="auto") -> np.ndarray:
    """Maps for one slice: the file's true maps, or ESPIRiT from the undersampled centre."""
    if how == "file":
        if file_maps is None:
            raise UserError("--sens-maps file needs a 'sens_maps' dataset in the h5 files; use espirit-bart")
        return file_maps
    from .espirit import espirit_maps

    return espirit_maps(kspace_masked, num_low_frequencies=nlf, backend=how.split("-")[1], device=device)


def reconstruct_slices(kspace: np.ndarray, mask2d: np.ndarray, maps: np.ndarray, acceleration: float,
                       s: ReconSettings) -> np.ndarray:
    """Reconstruct slices ``(N, C, H, W)`` sharing one mask ``(H, W)``; magnitudes ``(N, H, W)``."""
    masked = kspace * mask2d
    if s.method in ("zero-filled", "bart-l1", "sigpy-l1"):
        from .classical import reconstruct

        lamda = s.lamda if s.lamda is not None else default_lamda(acceleration)
        return np.stack([np.abs(reconstruct(masked[i], mask2d, method=s.method, sens_maps=maps[i], lamda=lamda,
                                            max_iter=s.max_iter, device=s.device)) for i in range(len(masked))])
    if s.method in DIFFUSION_METHODS:
        from ..sample.dds import dds_reconstruct
        from ..sample.dps import dps_reconstruct
        from ..utils import resolve_device

        dev = resolve_device(s.device)
        out = []
        g = torch.Generator().manual_seed(s.seed)
        m = torch.from_numpy(np.ascontiguousarray(mask2d, np.float32))[None, None].to(dev)
        for i in range(0, len(masked), s.batch):
            k = torch.from_numpy(masked[i:i + s.batch]).to(dev)
            sm = torch.from_numpy(np.ascontiguousarray(maps[i:i + s.batch])).to(dev)
            kw = dict(s.sampler_options(), generator=g)
            if s.method == "dps":
                x = dps_reconstruct(s.prior, k, m, sm, zeta=s.zeta, **kw)
            else:
                x = dds_reconstruct(s.prior, k, m, sm, cg_iters=s.cg_iters, **kw)
            out.append(x.abs().cpu().numpy())
        return np.concatenate(out)
    raise UserError(f"unknown method {s.method!r}; use one of {', '.join(METHODS)}")
