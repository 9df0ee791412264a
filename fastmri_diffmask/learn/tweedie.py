"""Tweedie objectives of mask learning: a one-step posterior-mean estimate (and a K-step unroll).

Per batch of scaled images ``x`` (``(B, 2, H, W)``, real and imaginary channels) with coil maps
``S`` (Ravula et al. 2023, arXiv 2306.03284, Sec. 3):

1. draw ``ln sigma ~ N(p_mean, p_std^2)`` and ``x_t = x + sigma n``;
2. draw a mask ``M`` (Gumbel straight-through, or LOUPE's relaxation) and measure
   ``y = M (F S x + e)``;
3. Tweedie: ``x0_hat = D(x_t, sigma) = E[x | x_t]`` (Efron 2011);
4. the likelihood gradient ``g`` of ``||M F S x0_hat - y||^2`` taken either

   * (a) w.r.t. ``x_t`` through the denoiser, ``create_graph=True`` so the loss can be
     differentiated again (the paper's v1; a double backward), objective ``"tweedie"``;
   * (b) w.r.t. ``x0_hat`` analytically, ``g = 2 A^H (A x0_hat - y)`` (the paper's v2; no
     backward through the denoiser), objective ``"tweedie-x0"``;

5. ``x_hat = x0_hat - eta g`` and a reconstruction loss against ``x``.

``"unrolled"`` runs ``K`` DPS-style steps instead (Chung et al. 2023): from ``sigma_0`` (drawn as
above) down a geometric ladder to ``sigma_end`` and then 0, each a Tweedie step, an Euler step of
the probability-flow ODE and a likelihood step, differentiable end to end. ``K = 1`` is the
one-step objective.

Conventions: ``||.||^2`` sums over coils and pixels; the gradient of a squared norm carries the
factor 2, so ``eta = 1/2`` with grad (b) and single-coil data replaces the sampled frequencies of
``x0_hat`` by the measurements exactly.

References
----------
Chung H, Kim J, Mccann MT, Klasky ML, Ye JC. Diffusion posterior sampling for general noisy
inverse problems. ICLR 2023 (DPS).
Efron B. Tweedie's formula and selection bias. J Am Stat Assoc 2011;106:1602-1614.
Wang Z, Bovik AC, Sheikh HR, Simoncelli EP. Image quality assessment: from error visibility to
structural similarity. IEEE Trans Image Process 2004;13:600-612 (SSIM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf

from ..errors import UserError
from ..physics import MultiCoilOperator, to_channels, to_complex

#: Reconstruction losses of :func:`reconstruction_loss`.
LOSSES = ("l2", "nl2", "l1", "ssim")

# -- pieces -------------------------------------------------------------------------------------
def draw_sigma(batch: int, generator: torch.Generator | None, p_mean: float, p_std: float) -> torch.Tensor:
    """``ln sigma ~ N(p_mean, p_std^2)``, ``(batch,)`` on CPU."""
    return (torch.randn(batch, generator=generator, dtype=torch.float64) * p_std + p_mean).exp().float()


def sigma_ladder(sigma0: torch.Tensor, steps: int, sigma_end: float) -> torch.Tensor:
    """``(B, K)`` geometric ladder from ``sigma0`` to ``min(sigma_end, sigma0)``."""
    if steps == 1:
        return sigma0[:, None]
    end = torch.minimum(sigma0, torch.full_like(sigma0, sigma_end))
    t = torch.linspace(0, 1, steps, dtype=sigma0.dtype, device=sigma0.device)
    return sigma0[:, None] * (end / sigma0)[:, None] ** t[None]


class Likelihood:
    """The data term ``||M (F S x - y)||^2`` of one batch, in one of two mask forms.

    ``form="paper"``: ``sum_k M_k^2 |r_k|^2`` with ``r = F S x - y`` - the mask applied in the
    operator and to the data, as in ``||M F S x - M y||^2`` (Ravula et al.). ``form="linear"``:
    ``sum_k M_k |r_k|^2``. For a 0/1 mask both have the same value and the same gradient in
    ``x``, but under the straight-through estimator the paper form gives an unsampled entry
    (``M_k = 0``) no gradient (``d M^2 / dM = 2 M = 0``), so only the sampled entries learn; the
    linear form gives every entry the first-order value of sampling it.

    ``y`` is the full noisy k-space ``F S x + e`` (``(B, C, H, W)``); only ``M y`` ever reaches a
    value, so unmeasured data never leak into the estimate for a 0/1 mask.
    """

    def __init__(self, sens_maps: torch.Tensor, kmask: torch.Tensor, y: torch.Tensor, form: str = "paper"):
        self.sens_maps, self.kmask, self.y, self.form = sens_maps, kmask, y, form
        self.weight = kmask ** 2 if form == "paper" else kmask
        self.full = MultiCoilOperator(sens_maps)

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.full(to_complex(x)) - self.y

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``sum_k w_k |r_k|^2`` summed over the batch (``w = M^2`` or ``M``)."""
        return (self.weight * self.residual(x).abs().pow(2)).sum()

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``2 S^H F^H (w r)``, the gradient of :meth:`value` in the 2-channel ``x``."""
        return 2 * to_channels(self.full.adjoint(self.weight * self.residual(x)))

    def zero_filled(self) -> torch.Tensor:
        """``A^H y = S^H F^H (M y)`` as a 2-channel image."""
        return to_channels(self.full.adjoint(self.kmask * self.y))


def likelihood_grad(prior, x_t: torch.Tensor, sigma: torch.Tensor, lik: Likelihood, grad: str = "xt",
                    create_graph: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0_hat, g)``: the Tweedie estimate and the gradient of the data term at ``x0_hat``.

    ``grad="xt"``: w.r.t. ``x_t`` through the denoiser (``create_graph`` keeps it differentiable,
    the double backward). ``grad="x0"``: w.r.t. ``x0_hat``, ``2 A^H (A x0_hat - y)``.
    """
    if grad == "x0":
        x0 = prior(x_t, sigma)
        return x0, lik.grad(x0)
    with torch.enable_grad():
        if not x_t.requires_grad:
            x_t = x_t.detach().requires_grad_(True)
        x0 = prior(x_t, sigma)
        (g,) = torch.autograd.grad(lik.value(x0), x_t, create_graph=create_graph)
    return x0, g


def one_step_estimate(prior, x_t: torch.Tensor, sigma: torch.Tensor, lik: Likelihood, eta: float,
                      grad: str = "xt", create_graph: bool = True) -> torch.Tensor:
    """``x_hat = D(x_t, sigma) - eta g`` (the paper's one-step posterior-mean estimate)."""
    if grad == "x0":
        with torch.no_grad():  # the mask does not reach D in one step: no graph through it
            x0 = prior(x_t, sigma)
        return x0 - eta * lik.grad(x0)
    x0, g = likelihood_grad(prior, x_t, sigma, lik, grad="xt", create_graph=create_graph)
    return x0 - eta * g


def unrolled_estimate(prior, x_t: torch.Tensor, sigmas: torch.Tensor, lik: Likelihood, eta: float,
                      grad: str = "x0", create_graph: bool = True) -> torch.Tensor:
    """``K`` DPS-style steps along ``sigmas`` (``(B, K)``, decreasing), then to 0.

    Each step: ``x0 = D(x_t, s_i)``, ``g`` the likelihood gradient, then the Euler step of the
    probability-flow ODE plus the likelihood step, ``x_t <- x0 + (s_{i+1}/s_i)(x_t - x0) - eta g``;
    the last step returns ``x0 - eta g``.
    """
    k = sigmas.shape[1]
    for i in range(k):
        s = sigmas[:, i]
        x0, g = likelihood_grad(prior, x_t, s, lik, grad=grad, create_graph=create_graph)
        if i == k - 1:
            return x0 - eta * g
        ratio = (sigmas[:, i + 1] / s).view(-1, 1, 1, 1)
        x_t = x0 + ratio * (x_t - x0) - eta * g
    raise AssertionError("unreachable")


# -- losses -------------------------------------------------------------------------------------
def magnitude(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Differentiable ``|x|`` of a 2-channel image, ``(B, H, W)``."""
    return (x[:, 0] ** 2 + x[:, 1] ** 2 + eps).sqrt()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: torch.Tensor, win: int = 7,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM per image of real ``(B, H, W)`` images, as ``skimage.metrics.structural_similarity``
    with its defaults (7x7 uniform window, sample covariance, border of ``win // 2`` cropped);
    ``data_range`` ``(B,)``. Differentiable (Wang et al. 2004)."""
    a, b = a[:, None].double(), b[:, None].double()
    w = torch.full((1, 1, win, win), 1.0 / win ** 2, dtype=a.dtype, device=a.device)
    mean = lambda z: nnf.conv2d(z, w)  # noqa: E731 - valid region == skimage's cropped map
    ua, ub = mean(a), mean(b)
    cov = win ** 2 / (win ** 2 - 1)
    va, vb, vab = cov * (mean(a * a) - ua ** 2), cov * (mean(b * b) - ub ** 2), cov * (mean(a * b) - ua * ub)
    r = data_range.double().view(-1, 1, 1, 1)
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua ** 2 + ub ** 2 + c1) * (va + vb + c2))
    return s.flatten(1).mean(1).to(data_range.dtype if data_range.is_floating_point() else torch.float32)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, loss: str = "l2") -> torch.Tensor:
    """Mean over the batch of the per-image loss (see :class:`ObjectiveConfig`)."""
    d = x_hat - x
    if loss == "l2":
        per = d.pow(2).flatten(1).sum(1)
    elif loss == "nl2":
        per = d.pow(2).flatten(1).sum(1) / x.pow(2).flatten(1).sum(1).clamp_min(1e-12)
    elif loss == "l1":
        per = d.abs().flatten(1).sum(1)
    elif loss == "ssim":
        gt = magnitude(x)
        rng = (gt.flatten(1).amax(1) - gt.flatten(1).amin(1)).detach()
        per = 1 - ssim(magnitude(x_hat), gt, rng)
    else:
        raise UserError(f"unknown loss {loss!r}; use one of {', '.join(LOSSES)}")
    return per.mean()
