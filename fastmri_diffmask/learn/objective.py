"""The mask-learning objective: its settings and one stochastic evaluation of it.

:class:`ObjectiveConfig` names the objective and its settings; :func:`objective_loss` draws a
training mask (Gumbel straight-through or LOUPE's relaxation), the noise, reconstructs the
batch with the configured estimate and returns the loss against the truth. The estimates are
peers: the one-step Tweedie posterior mean and its K-step unroll (:mod:`.tweedie`; Ravula et al.
2023, arXiv 2306.03284) and the differentiable short DDS reconstruction from the masked
measurements (:mod:`.dds_unroll`; Chung, Lee, Ye, ICLR 2024).
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import UserError
from ..masks.bernoulli import BernoulliMask, as_kspace_mask
from ..physics import MultiCoilOperator, to_complex
from .dds_unroll import dds_unrolled_estimate
from .tweedie import (LOSSES, Likelihood, one_step_estimate, reconstruction_loss, sigma_ladder, unrolled_estimate,
                      draw_sigma)

#: ``dds``: the differentiable short DDS reconstruction of :mod:`.dds_unroll`; the others: :mod:`.tweedie`.
OBJECTIVES = ("tweedie", "tweedie-x0", "unrolled", "dds")
GRADS = ("xt", "x0")
INITS = ("truth", "adjoint")
FORMS = ("paper", "linear")
RECON_INITS = ("adjoint", "noise")


@dataclasses.dataclass
class ObjectiveConfig:
    """Settings of the objective (all recorded in the mask file).

    objective : "tweedie" (grad (a)), "tweedie-x0" (grad (b)), "unrolled" or "dds" (a short
        DDS reconstruction from the masked measurements, differentiated through its CG steps).
    loss : "l2" (sum of squares), "nl2" (sum of squares / sum x^2), "l1", "ssim" (1 - SSIM of |x|).
    eta : likelihood step size.
    p_mean, p_std : ``ln sigma ~ N(p_mean, p_std^2)`` (EDM's training law is -1.2, 1.2).
    meas_noise : std of each real/imag part of the k-space noise added to ``y`` (0: noiseless).
    unroll_steps, unroll_sigma_end, unroll_grad : the K-step variant (grad "x0" or "xt").
    mask_form : "paper" (``||M A x - M y||^2``, only sampled entries learn) or "linear"
        (``sum M |A x - y|^2``, every entry learns); see :class:`Likelihood`.
    init : start ``x_t`` from the truth (``x + sigma n``, the paper) or the zero-filled
        ``A^H y + sigma n``.
    relaxed, relax_slope : LOUPE comparator: ``sigmoid(slope (p' - u))`` instead of Gumbel-ST.
    recon_steps, recon_sigma_start, recon_dc_weight, recon_cg_iters, recon_init, denoiser_grad :
        the ``dds`` objective (:func:`.dds_unroll.dds_unrolled_estimate`): noise levels, first
        level, CG weight ``mu`` and iterations, start (zero-filled + noise or noise alone), and
        whether to backpropagate through the denoiser. ``p_mean``/``p_std``/``init``/``eta`` do
        not apply to it; ``mask_form`` does.
    """

    objective: str = "tweedie"
    loss: str = "l2"
    eta: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    meas_noise: float = 0.0
    unroll_steps: int = 3
    unroll_sigma_end: float = 0.02
    unroll_grad: str = "x0"
    init: str = "truth"
    mask_form: str = "paper"
    relaxed: bool = False
    relax_slope: float = 12.0
    recon_steps: int = 6
    recon_sigma_start: float = 2.0
    recon_dc_weight: float = 0.01
    recon_cg_iters: int = 5
    recon_init: str = "adjoint"
    denoiser_grad: bool = False

    def validate(self) -> "ObjectiveConfig":
        for name, allowed in (("objective", OBJECTIVES), ("loss", LOSSES), ("unroll_grad", GRADS), ("init", INITS),
                              ("mask_form", FORMS), ("recon_init", RECON_INITS)):
            if getattr(self, name) not in allowed:
                raise UserError(f"unknown {name} {getattr(self, name)!r}; use one of {', '.join(allowed)}")
        if self.eta < 0 or self.p_std < 0 or self.meas_noise < 0:
            raise UserError("eta, sigma std and measurement noise must be >= 0")
        if self.unroll_steps < 1:
            raise UserError(f"unroll steps must be >= 1, got {self.unroll_steps}")
        if self.recon_steps < 1 or self.recon_cg_iters < 1:
            raise UserError(f"recon steps and CG iterations must be >= 1, got {self.recon_steps}, {self.recon_cg_iters}")
        if not self.recon_sigma_start > 0 or not self.recon_dc_weight > 0:
            raise UserError("the recon objective's first noise level and CG weight must be > 0")
        return self

    @property
    def grad(self) -> str:
        if self.objective == "unrolled":
            return self.unroll_grad
        return "xt" if self.objective == "tweedie" else "x0"


# -- the objective ------------------------------------------------------------------------------
def draw_mask(mask: BernoulliMask, batch: int, cfg: ObjectiveConfig, generator, tau: float) -> torch.Tensor:
    """A training mask batch ``(B, *shape)``: Gumbel-ST hard, or LOUPE-relaxed."""
    if cfg.relaxed:
        return mask.relaxed(batch, slope=cfg.relax_slope, generator=generator)
    return mask.sample(batch, tau=tau, generator=generator, hard=True)


def estimate(prior, x: torch.Tensor, sens_maps: torch.Tensor, kmask: torch.Tensor, cfg: ObjectiveConfig,
             sigma: torch.Tensor, noise: torch.Tensor, meas_noise: torch.Tensor | None = None,
             create_graph: bool = True) -> torch.Tensor:
    """The reconstruction ``x_hat`` of the configured objective for given randomness.

    ``kmask`` is broadcastable to ``(B, C, H, W)``; ``noise`` is ``(B, 2, H, W)``; ``sigma``
    ``(B,)`` is the (starting) noise level.
    """
    y = MultiCoilOperator(sens_maps)(to_complex(x))
    if meas_noise is not None:
        y = y + meas_noise
    if cfg.objective == "dds":
        weight = kmask ** 2 if cfg.mask_form == "paper" else kmask
        return dds_unrolled_estimate(prior, y, sens_maps, weight, noise, steps=cfg.recon_steps,
                                     sigma_start=cfg.recon_sigma_start, dc_weight=cfg.recon_dc_weight,
                                     cg_iters=cfg.recon_cg_iters, init=cfg.recon_init,
                                     denoiser_grad=cfg.denoiser_grad and create_graph)
    lik = Likelihood(sens_maps, kmask, y, cfg.mask_form)
    base = x if cfg.init == "truth" else lik.zero_filled()
    sig = sigma.to(x.device, x.dtype)
    x_t = base + sig.view(-1, 1, 1, 1) * noise
    if cfg.objective == "unrolled":
        ladder = sigma_ladder(sig, cfg.unroll_steps, cfg.unroll_sigma_end)
        return unrolled_estimate(prior, x_t, ladder, lik, cfg.eta, grad=cfg.unroll_grad, create_graph=create_graph)
    return one_step_estimate(prior, x_t, sig, lik, cfg.eta, grad=cfg.grad, create_graph=create_graph)


def draw_noise(x: torch.Tensor, sens_maps: torch.Tensor, cfg: ObjectiveConfig, generator):
    """``(sigma, noise, meas_noise)`` for a batch, all from ``generator`` (CPU draws)."""
    b = x.shape[0]
    sigma = draw_sigma(b, generator, cfg.p_mean, cfg.p_std)
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    meas = None
    if cfg.meas_noise > 0:
        shape = sens_maps.shape
        re, im = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
        meas = (cfg.meas_noise * torch.complex(re, im)).to(sens_maps.device, sens_maps.dtype)
    return sigma, noise, meas


def objective_loss(prior, mask: BernoulliMask, x: torch.Tensor, sens_maps: torch.Tensor,
                   cfg: ObjectiveConfig, generator: torch.Generator | None = None, tau: float = 1.0) -> torch.Tensor:
    """One stochastic evaluation of the objective; differentiable w.r.t. ``mask.logits``.

    Randomness is drawn in a fixed order from ``generator``: mask, sigma, image noise,
    measurement noise.
    """
    m = draw_mask(mask, x.shape[0], cfg, generator, tau)
    sigma, noise, meas = draw_noise(x, sens_maps, cfg, generator)
    x_hat = estimate(prior, x, sens_maps, as_kspace_mask(m, mask.kind), cfg, sigma, noise, meas)
    return reconstruction_loss(x_hat, x, cfg.loss)
