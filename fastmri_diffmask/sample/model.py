"""``DiffusionPosteriorModel``: DPS (or DDS) reconstruction behind fastMRI's VarNet call signature.

fastMRI's ``VarNet.forward(masked_kspace, mask, num_low_frequencies)`` takes k-space as a real
view ``(B, C, H, W, 2)`` and a mask ``(B, 1, 1, W, 1)`` and returns the RSS magnitude image
``(B, H, W)``. This module does the same with a diffusion prior, so fastMRI-style evaluation code
can swap it in; ESPIRiT maps are computed from the fully sampled centre when none are given.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from ..prior.base import Denoiser
from ..utils import resolve_device
from .dds import dds_reconstruct
from .schedule import check_sigma_min
from .defaults import check_dps_consistency, resolve_sampler_options
from .dps import consistency_steps, dps_reconstruct
from .warm_start import check_eta, check_warm_start


def _as_complex_kspace(k: torch.Tensor) -> torch.Tensor:
    if torch.is_complex(k):
        return k if k.dim() == 4 else k.unsqueeze(0)
    if k.shape[-1] == 2:  # fastMRI's real view (..., 2)
        k = torch.view_as_complex(k.contiguous())
        return k if k.dim() == 4 else k.unsqueeze(0)
    raise UserError(f"masked_kspace must be complex (B, C, H, W) or fastMRI's real view (B, C, H, W, 2), got {tuple(k.shape)}")


def _as_mask(mask: torch.Tensor, kspace: torch.Tensor) -> torch.Tensor:
    m = mask.float()
    if m.dim() == kspace.dim() + 1 and m.shape[-1] == 1:  # fastMRI's (B, 1, 1, W, 1)
        m = m[..., 0]
    while m.dim() < 4:
        m = m.unsqueeze(0)
    return m


class DiffusionPosteriorModel(nn.Module):
    """Diffusion posterior sampling as a fastMRI-style reconstruction model.

    Parameters
    ----------
    prior : Denoiser or str
        A denoiser, ``"default"`` (the shipped prior) or a path to prior weights.
    sampler : "dps" | "dds"
        :func:`~fastmri_diffmask.sample.dps.dps_reconstruct` (the paper's) or the Jacobian-free
        :func:`~fastmri_diffmask.sample.dds.dds_reconstruct` (about 3x faster at equal quality here).
    steps, zeta, churn, dc_weight : sampler settings; ``None`` takes the sampler's default
        (the table in :mod:`~fastmri_diffmask.sample.defaults`). ``zeta`` is DPS only.
    dc_every : int, optional
        DPS only: enforce the data every ``dc_every`` steps during sampling
        (:func:`~fastmri_diffmask.sample.dps.dps_reconstruct`; ``dc_weight`` is its ``mu``,
        default 0.03 as above). ``None``: the default (5); 0: only the final step.
    dds_init, sigma_start : the warm start of either sampler (:mod:`~fastmri_diffmask.sample.warm_start`);
        ``None`` takes the sampler's default, ``dds_init="noise"`` alone starts from ``sigma_max``.
    eta : DDS only: the fresh-noise fraction of each step
        (:func:`~fastmri_diffmask.sample.dds.dds_reconstruct`); ``None`` takes the default.
    sigma_min : DDS only: the schedule's last noise level; ``None`` takes the default ``"auto"``
        (:func:`~fastmri_diffmask.sample.dds.default_sigma_min` of each mask's acceleration).
    sens_backend : "sigpy" | "bart"
        ESPIRiT backend used when ``forward`` gets no ``sens_maps``.
    num_samples : int
        Average this many posterior samples (the posterior mean estimate).
    seed : int
        Seeds the sampler so repeated calls give the same reconstruction.
    precision : "float32" | "bfloat16", optional
        The network's arithmetic (:func:`~fastmri_diffmask.prior.weights.set_precision`):
        bfloat16 is about 2x faster on CPUs with bfloat16 units at the same quality (BENCHMARKS.md).
        ``None`` leaves a given denoiser as it is and loads a named one in float32; a value is set
        on the denoiser (a module passed in is changed in place).
    """

    def __init__(self, prior: Denoiser | str = "default", steps: int | None = None, zeta: float | None = None,
                 churn: float | None = None, sens_backend: str = "sigpy", num_samples: int = 1, seed: int = 0,
                 device="auto", progress: bool = False, sampler: str = "dps", dc_weight: float | None = None,
                 dc_every: int | None = None, dds_init: str | None = None, sigma_start: float | None = None,
                 eta: float | None = None, precision: str | None = None, sigma_min: float | str | None = None):
        super().__init__()
        if sampler not in ("dps", "dds"):
            raise UserError(f"unknown sampler {sampler!r}; use dps or dds")
        if dc_every is not None and sampler != "dps":
            raise UserError("dc_every is a DPS option; DDS enforces the data every step already")
        consistency_steps(1, dc_every or None)  # a bad value fails here, not at the first reconstruction
        if sampler != "dds" and (eta is not None or sigma_min is not None):
            raise UserError("eta and sigma_min are DDS options; use sampler='dds'")
        given = dict(steps=steps, churn=churn, dc_weight=dc_weight, init=dds_init, sigma_start=sigma_start)
        if sampler == "dds":
            given["eta"] = check_eta(eta)
            given["sigma_min"] = sigma_min
        else:
            given["dc_every"] = dc_every
        self.options = resolve_sampler_options(sampler, **given)
        end = check_sigma_min(self.options["sigma_min"]) if sampler == "dds" else 0.002  # a bad value fails here
        check_warm_start(self.options["init"], self.options["sigma_start"], end)
        if sampler == "dps":
            check_dps_consistency(self.options)
        from ..prior.weights import check_precision, load_prior, set_precision

        if precision is not None:
            check_precision(precision)
        if isinstance(prior, str):
            prior = load_prior(prior, device=device)
        if precision is not None:
            set_precision(prior, precision)
        self.prior = prior.to(resolve_device(device))
        self.sampler, self.zeta, self.dc_every = sampler, zeta, self.options.get("dc_every")
        self.steps, self.churn, self.dc_weight = (self.options[k] for k in ("steps", "churn", "dc_weight"))
        self.sens_backend, self.num_samples, self.seed, self.progress = sens_backend, num_samples, seed, progress

    def estimate_sens_maps(self, kspace: torch.Tensor, num_low_frequencies) -> torch.Tensor:
        from ..recon.espirit import espirit_maps

        nlf = num_low_frequencies
        maps = []
        for i in range(kspace.shape[0]):
            n = None if nlf is None else int(nlf[i] if torch.is_tensor(nlf) and nlf.dim() else nlf)
            maps.append(espirit_maps(kspace[i].cpu().numpy(), num_low_frequencies=n, backend=self.sens_backend))
        return torch.from_numpy(np.stack(maps)).to(kspace.device)

    def reconstruct(self, masked_kspace, mask, num_low_frequencies=None, sens_maps=None) -> torch.Tensor:
        """Complex coil-combined images ``(B, H, W)``."""
        device = next(self.prior.parameters(), torch.empty(0)).device
        k = _as_complex_kspace(masked_kspace).to(device)
        m = _as_mask(mask, k).to(device)
        if sens_maps is None:
            sens_maps = self.estimate_sens_maps(k, num_low_frequencies)
        sens_maps = _as_complex_kspace(sens_maps).to(device)
        if sens_maps.shape != k.shape:
            raise UserError(f"sens_maps shape {tuple(sens_maps.shape)} differs from k-space shape {tuple(k.shape)}")
        g = torch.Generator().manual_seed(self.seed)
        out = 0
        for _ in range(self.num_samples):
            kw = dict(self.options, generator=g, progress=self.progress)
            if self.sampler == "dps":
                out = out + dps_reconstruct(self.prior, k, m, sens_maps, zeta=self.zeta, **kw)
            else:
                out = out + dds_reconstruct(self.prior, k, m, sens_maps, **kw)
        return out / self.num_samples

    def forward(self, masked_kspace, mask, num_low_frequencies=None, sens_maps=None) -> torch.Tensor:
        """Magnitude images ``(B, H, W)``, like fastMRI's VarNet output."""
        return self.reconstruct(masked_kspace, mask, num_low_frequencies, sens_maps).abs()
