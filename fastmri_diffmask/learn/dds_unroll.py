"""A differentiable short DDS reconstruction from the masked measurements: the objective that sees
the reconstruction used at test time.

The one-step Tweedie objectives (:mod:`.tweedie`) start from ``x + sigma n``, the truth plus noise,
which carries every frequency: they never see the aliasing a mask causes. This objective instead
reconstructs from the measurements alone, as :func:`fastmri_diffmask.sample.dds.dds_reconstruct`
does at test time (Chung, Lee and Ye, ICLR 2024), over a short ladder of ``K`` noise levels
``s_0 > ... > s_{K-1}`` (EDM's rho-schedule from ``sigma_start`` to ``sigma_min``):

    x_0 = A^H y + s_0 n                     (start at the zero-filled image, as in
                                             Chung, Sim, Ye, "Come-closer-diffuse-faster", CVPR 2022;
                                             or ``s_0 n`` alone with ``init="noise"``)
    d_i = D(x_i, s_i)                       (the denoiser; detached by default)
    c_i = argmin_x sum_k w_k |(F S x)_k - y_k|^2 + mu ||x - d_i||^2   (``cg_iters`` CG steps from d_i)
    x_{i+1} = c_i + (s_{i+1} / s_i)(x_i - d_i)

and returns ``c_{K-1}``. The mask ``w`` enters the CG normal equations ``(S^H F^H W F S + mu) x =
S^H F^H W y + mu d``; with the *linear* form (``w = M``) every k-space entry gets the first-order
value of sampling it, so unsampled lines learn too; with the *paper* form ``w = M^2`` (the mask in
the operator and on the data, ``||M A x - M y||^2``) only the sampled ones do. The CG iterations
are unrolled in autograd, so the loss is differentiated exactly w.r.t. the mask through every
data-consistency step. ``denoiser_grad=False`` (default) treats each ``d_i`` as a constant (no
backward pass through the UNet: the cost is ``K`` forward passes); ``True`` backpropagates through
the denoiser as well (first order, no double backward).

References
----------
Chung H, Lee S, Ye JC. Decomposed diffusion sampler for accelerating large-scale inverse
problems. ICLR 2024.
Chung H, Sim B, Ye JC. Come-closer-diffuse-faster: accelerating conditional diffusion models for
inverse problems through stochastic contraction. CVPR 2022.
Ravula S, et al. Optimizing sampling patterns for compressed sensing MRI with diffusion generative
models. arXiv:2306.03284 (2023) (learning masks through a posterior estimate).
"""

from __future__ import annotations

import torch

from ..physics import MultiCoilOperator, to_channels, to_complex
from ..sample.dds import DDS_DEFAULTS
from ..sample.schedule import data_consistency, edm_sigmas


class WeightedOperator:
    """``A = F S`` with the data term ``sum_k w_k |(A x - y)_k|^2``: the ``normal`` / ``adjoint``
    pair that :func:`~fastmri_diffmask.sample.dps.data_consistency` solves with, ``w`` real and
    broadcastable to the k-space (a hard 0/1 mask gives DDS's own problem)."""

    def __init__(self, sens_maps: torch.Tensor, weight: torch.Tensor, centred: bool = True):
        self.full, self.weight, self.centred = MultiCoilOperator(sens_maps, centred=centred), weight, centred

    def uncentred(self) -> "WeightedOperator":
        """The same operator on ``ifftshift``-ed arrays (see :meth:`MultiCoilOperator.uncentred`)."""
        if not self.centred:
            return self
        shifted = MultiCoilOperator(self.full.sens_maps, self.weight).uncentred()
        return WeightedOperator(shifted.sens_maps, shifted.mask, centred=False)

    def adjoint(self, k: torch.Tensor) -> torch.Tensor:
        return self.full.adjoint(self.weight * k)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return self.full.adjoint(self.weight * self.full.forward(x))


def recon_ladder(steps: int, sigma_start: float, sigma_min: float = 0.002, rho: float = 7.0) -> torch.Tensor:
    """The ``steps`` noise levels of the short run: EDM's rho-schedule from ``sigma_start`` down to
    ``sigma_min`` (float64, no trailing zero)."""
    if steps == 1:
        return torch.tensor([sigma_start], dtype=torch.float64)
    return edm_sigmas(steps, sigma_min=sigma_min, sigma_max=sigma_start, rho=rho)[:-1]


def dds_unrolled_estimate(prior, y: torch.Tensor, sens_maps: torch.Tensor, weight: torch.Tensor,
                          noise: torch.Tensor, steps: int = 6, sigma_start: float = 2.0,
                          dc_weight: float = DDS_DEFAULTS["dc_weight"], cg_iters: int = DDS_DEFAULTS["cg_iters"],
                          init: str = "adjoint", denoiser_grad: bool = False) -> torch.Tensor:
    """The short DDS reconstruction (2-channel ``(B, 2, H, W)``) of full k-space ``y`` weighted by
    ``weight``; differentiable w.r.t. ``weight`` (and ``y``).

    Parameters
    ----------
    prior : Denoiser
    y : complex ``(B, C, H, W)``
        Multi-coil k-space of the (scaled) image, noise included; only ``weight * y`` is used.
    weight : real tensor broadcastable to ``y``
        The mask in the data term (``M`` for the linear form, ``M^2`` for the paper form).
    noise : ``(B, 2, H, W)``
        Standard normal noise of the start ``x_0``.
    steps, sigma_start : int, float
        Noise levels of the ladder (:func:`recon_ladder`).
    dc_weight, cg_iters : float, int
        ``mu`` and the CG iterations of each data-consistency step (DDS's tuned values by default).
    init : {"adjoint", "noise"}
        Start from ``A^H W y + s_0 n`` or from ``s_0 n``.
    denoiser_grad : bool
        Backpropagate through the denoiser (default: its outputs are constants).
    """
    op = WeightedOperator(sens_maps, weight)
    sigmas = recon_ladder(steps, sigma_start)
    b = y.shape[0]
    x = sigmas[0].item() * noise
    if init == "adjoint":
        x = x + to_channels(op.adjoint(y))
    consistent = x
    for i in range(steps):
        s = float(sigmas[i])
        level = torch.full((b,), s, device=x.device)
        if denoiser_grad:
            denoised = prior(x, level)
        else:
            with torch.no_grad():
                denoised = prior(x.detach(), level)
        consistent = to_channels(data_consistency(op, y, to_complex(denoised), dc_weight, cg_iters))
        if i + 1 < steps:
            x = consistent + float(sigmas[i + 1]) / s * (x - denoised)
    return consistent
