"""Validation of a mask being learned: the deterministic one-step proxy, and the PSNR of DPS or DDS
reconstructions of the validation slices; and the choice of the exported binary mask among
exact-budget draws (:func:`choose_sampled`).

*Proxy*: the training objective evaluated deterministically on the validation slices with the
*binarized* mask (with the analytic likelihood gradient, :func:`cheap_proxy`), at fixed noise
levels (the quantiles ``val_quantiles`` of the sigma law) and fixed noise; lower is better.
*DPS* / *DDS*: PSNR of full posterior-sampling reconstructions
(:func:`fastmri_diffmask.sample.dps.dps_reconstruct`, :func:`fastmri_diffmask.sample.dds.dds_reconstruct`);
higher is better. Which judge ranks masks like a 100-step DPS: ``benchmarks/judge_study.py``.
"""

from __future__ import annotations

import dataclasses
from statistics import NormalDist
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from ..masks.bernoulli import BernoulliMask, as_kspace_mask
from ..physics import percentile_scale, to_channels
from .objective import ObjectiveConfig, draw_noise, estimate
from .tweedie import reconstruction_loss

if TYPE_CHECKING:
    from .config import LearnConfig


def scaled_batch(data) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, sens_maps)``: 2-channel images divided by their 99th-percentile magnitude."""
    images = data.images
    return to_channels(images / percentile_scale(images)), data.sens_maps



def cheap_proxy(obj: ObjectiveConfig) -> ObjectiveConfig:
    """The default validation objective: the training one with the analytic likelihood gradient
    (no backward through the denoiser; on a 0/1 mask the two forms differ only through D's
    Jacobian) - a forward-only score, several times cheaper than the double backward."""
    return dataclasses.replace(obj, objective="tweedie-x0" if obj.objective == "tweedie" else obj.objective,
                               unroll_grad="x0", relaxed=False)


class Validator:
    """Deterministic proxy (and optional DPS) scores of a binary mask on the validation slices."""

    def __init__(self, prior, val, cfg: LearnConfig, device):
        self.prior, self.cfg, self.device = prior, cfg, device
        self.obj = cfg.val_objective or cheap_proxy(cfg.objective)
        self.val = val
        self.magnitudes = val.images.abs().to(device)  # the PSNR targets, computed once, not per candidate
        x, s = scaled_batch(val)
        self.x, self.s = x.to(device), s.to(device)
        q = cfg.val_quantiles
        z = torch.tensor([NormalDist().inv_cdf(p) for p in q], dtype=torch.float64)
        self.sigmas = (z * self.obj.p_std + self.obj.p_mean).exp().float()
        g = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise = [draw_noise(self.x, self.s, self.obj, g)[1:] for _ in q]

    def proxy(self, mask01: torch.Tensor, kind: str) -> float:
        km = as_kspace_mask(mask01[None].to(self.device), kind)
        total = 0.0
        for sig, (noise, meas) in zip(self.sigmas, self.noise):
            sigma = sig.expand(self.x.shape[0])
            x_hat = estimate(self.prior, self.x, self.s, km, self.obj, sigma, noise, meas, create_graph=False)
            total += float(reconstruction_loss(x_hat.detach(), self.x, self.obj.loss))
        return total / len(self.sigmas)

    def dps_psnr(self, mask01: torch.Tensor, kind: str, steps: int | None = None, seed: int = 0,
                 num_slices: int | None = None) -> float:
        """Mean PSNR of DPS on the (first ``num_slices``) validation slices with a binary mask."""
        from ..sample.dps import dps_reconstruct

        n = num_slices or self.val.kspace.shape[0]
        km = as_kspace_mask(mask01[None].to(self.device), kind)
        k = self.val.kspace[:n].to(self.device)
        g = torch.Generator().manual_seed(seed)
        rec = dps_reconstruct(self.prior, k * km, km, self.val.sens_maps[:n].to(self.device),
                              steps=steps or self.cfg.dps_steps, generator=g, progress=False,
                              dc_weight=self.cfg.select_dc_weight)
        return float(psnr(rec.abs(), self.magnitudes[:n]).mean())

    def dds_psnr(self, mask01: torch.Tensor, kind: str, seed: int = 0, num_slices: int | None = None) -> float:
        """Mean PSNR of DDS (``cfg.dds_steps`` steps, otherwise
        :data:`~fastmri_diffmask.sample.dds.DDS_DEFAULTS`) on the first ``num_slices`` validation slices."""
        from ..sample.dds import dds_reconstruct

        n = num_slices or self.val.kspace.shape[0]
        km = as_kspace_mask(mask01[None].to(self.device), kind)
        k = self.val.kspace[:n].to(self.device)
        rec = dds_reconstruct(self.prior, k * km, km, self.val.sens_maps[:n].to(self.device), steps=self.cfg.dds_steps,
                              generator=torch.Generator().manual_seed(seed), progress=False)
        return float(psnr(rec.abs(), self.magnitudes[:n]).mean())


def psnr(rec: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of magnitudes ``(B, H, W)`` with data range ``max - min`` of ``gt``."""
    rng = gt.flatten(1).amax(1) - gt.flatten(1).amin(1)
    mse = (rec - gt).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(rng ** 2 / mse.clamp_min(1e-20))


# -- export ------------------------------------------------------------------------------------


def candidate_masks(mask: BernoulliMask, cfg: LearnConfig) -> tuple[list[torch.Tensor], list[str]]:
    """The exact-budget candidates of the export, with labels: ``cfg.export_draws`` masks from
    ``p'`` and from each flattened density ``(1 - w) p' + w s`` of ``cfg.export_flatten``.
    ``cfg.export_sampling``: ``"systematic"`` - the offsets ``(i + 1/2) / export_draws`` of
    :meth:`BernoulliMask.systematic` (deterministic); ``"stratified"`` / ``"independent"`` -
    random draws (:meth:`BernoulliMask.draw_exact`) from one generator seeded ``cfg.seed + 2``,
    so the first family's draws do not depend on the others."""
    g = torch.Generator().manual_seed(cfg.seed + 2)
    draws, labels = [], []
    for i, (w, u) in enumerate(candidate_densities(cfg)):
        p = mask.flattened(w)
        prefix = "" if w == 0 else f"flat {w:g} "
        if u is not None:
            draws.append(mask.systematic(u, probabilities=p))
            labels.append(f"{prefix}offset {u:g}")
        else:
            draws.append(mask.draw_exact(g, stratified=cfg.export_sampling == "stratified", probabilities=p))
            labels.append(f"{prefix}draw {i % cfg.export_draws}")
    return draws, labels


def candidate_densities(cfg: LearnConfig) -> list[tuple[float, float | None]]:
    """``(flattening weight, systematic offset)`` of each candidate of :func:`candidate_masks`, in
    its order; the offset is ``None`` for random draws."""
    n = cfg.export_draws
    offsets = [(i + 0.5) / n for i in range(n)] if cfg.export_sampling == "systematic" else [None] * n
    return [(w, u) for w in cfg.export_flatten for u in offsets]


def choose_sampled(mask: BernoulliMask, validator: Validator, cfg: LearnConfig, progress: bool = False) -> dict:
    """Best of the exact-budget candidates of :func:`candidate_masks` (with ``cfg.export ==
    "best"`` the top-k and quantile masks join them) by the validation
    proxy, by the PSNR of DPS (``cfg.dps_steps`` steps, then the data-consistency step
    ``cfg.select_dc_weight``, first ``cfg.select_slices`` validation slices) when
    ``cfg.export_select == "dps"`` or ``cfg.dps_every``, or by the PSNR of DDS (``cfg.dds_steps``
    steps, same slices) when ``cfg.export_select == "dds"``.
    Returns ``{"mask", "scores", "chosen", "labels", "chosen_label", "chosen_weight",
    "chosen_offset"}`` (the chosen candidate's flattening weight and systematic offset, ``None``
    for a random draw or the top-k export; the quantile export is offset 0.5)."""
    draws, labels = candidate_masks(mask, cfg)
    densities = candidate_densities(cfg)
    if cfg.export == "best":  # the deterministic exports compete with the draws
        draws = [mask.binarize("topk"), mask.binarize("quantile")] + draws
        labels = ["topk", "quantile"] + labels
        densities = [(0.0, None), (0.0, 0.5)] + densities
    select = "dds" if cfg.export_select == "dds" else ("dps" if cfg.export_select == "dps" or cfg.dps_every else "proxy")

    def judge(d: torch.Tensor) -> float:  # lower is better
        if select == "dds":
            return -validator.dds_psnr(d, mask.kind, num_slices=cfg.select_slices)
        if select == "dps":
            return -validator.dps_psnr(d, mask.kind, num_slices=cfg.select_slices)
        return validator.proxy(d, mask.kind)

    scores = [judge(d) for d in tqdm(draws, desc=f"export: judging draws by {select}", unit="mask",
                                     disable=not progress, leave=False)]
    i = int(np.argmin(scores))
    return {"mask": draws[i].tolist(), "scores": scores, "chosen": i, "labels": labels, "chosen_label": labels[i],
            "chosen_weight": densities[i][0], "chosen_offset": densities[i][1]}
