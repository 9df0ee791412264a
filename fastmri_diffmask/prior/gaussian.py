"""An analytic Gaussian prior with a diagonal k-space covariance: an exact denoiser for tests.

Model
-----
A complex image ``z`` (``H x W``) is ``z = mu + F^H (sqrt(2 v) * w)`` with ``F`` the centred
orthonormal 2D FFT (:func:`~fastmri_diffmask.physics.fft2c`) and ``w`` circular standard complex
normal (real and imaginary parts independent, each of variance 1/2).

**Convention.** ``variance[k] = v_k`` is the variance of *each* of the real and imaginary parts of
the k-space coefficient ``(F(z - mu))_k``, i.e. ``E|F(z - mu)|_k^2 = 2 v_k``. This puts ``v`` on the
same scale as the denoiser's ``sigma**2``, which is the noise variance of each of the two real
channels of ``x = (Re z, Im z)``: the noise ``sigma n`` has, per k-space coefficient, real and
imaginary parts of variance ``sigma**2`` each (``F`` is unitary and maps circular white noise to
circular white noise).

Exact posterior mean (Tweedie / Wiener)
---------------------------------------
For ``x_t = x0 + sigma n``,
``E[x0 | x_t] = mu + F^H [v / (v + sigma^2)] F (x_t - mu)``, the Wiener filter per frequency. By
Tweedie's formula (Efron 2011) this equals ``x_t + sigma^2 grad log p_sigma(x_t)``, so this prior
is an ideal denoiser in the sense of :class:`~fastmri_diffmask.prior.base.Denoiser`, with which
every identity of the mask-learning objective (Ravula et al. 2023, arXiv 2306.03284) can be
checked in closed form.

References
----------
Efron B. Tweedie's formula and selection bias. J Am Stat Assoc 2011;106:1602-1614.
Ravula S, Levac B, Jalal A, Tamir JI, Dimakis AG. Optimizing sampling patterns for compressed
sensing MRI with diffusion generative models. arXiv:2306.03284 (2023).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..physics import fft2c, ifft2c, to_channels, to_complex
from .base import Denoiser, as_sigma


class GaussianPrior(Denoiser):
    """Gaussian prior ``N(mu, F^H diag(v) F)`` (per real part) with the exact posterior-mean denoiser.

    Parameters
    ----------
    mean : complex tensor ``(H, W)``
        Mean image ``mu``.
    variance : real tensor ``(H, W)``, >= 0
        Per-frequency variance ``v`` of each of the real and imaginary parts of ``F(z - mu)``
        (see the module docstring for the convention).
    """

    prior_id = "gaussian"

    def __init__(self, mean: torch.Tensor, variance: torch.Tensor):
        super().__init__()
        if mean.dim() != 2 or variance.shape != mean.shape:
            raise UserError(f"GaussianPrior needs mean and variance of one (H, W) shape, got {tuple(mean.shape)} and {tuple(variance.shape)}")
        if not torch.is_complex(mean):
            mean = mean.to(torch.complex64)
        if not torch.all(variance >= 0):
            raise UserError("GaussianPrior variances must be >= 0")
        self.register_buffer("mean_real", mean.real.float().contiguous())
        self.register_buffer("mean_imag", mean.imag.float().contiguous())
        self.register_buffer("variance", variance.float().contiguous())
        #: what :func:`~fastmri_diffmask.prior.weights.build_prior` needs (kind "gaussian");
        #: ``load_prior`` replaces it with the file's config (a superset).
        self.config = {"kind": "gaussian", "shape": list(mean.shape)}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def fit(cls, images: torch.Tensor, floor: float = 1e-8) -> "GaussianPrior":
        """Fit to complex images ``(N, H, W)`` (already scaled): sample mean and per-frequency
        variance ``v = mean_n |F(z_n - mu)|^2 / 2`` (floored at ``floor`` so the filter is defined)."""
        if not torch.is_complex(images) or images.dim() != 3 or images.shape[0] < 2:
            raise UserError("GaussianPrior.fit needs complex images shaped (N, H, W) with N >= 2")
        mean = images.mean(0)
        k = fft2c(images - mean)
        variance = (k.abs() ** 2).mean(0) / 2
        return cls(mean, variance.clamp_min(floor))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.variance.shape)

    @property
    def mean(self) -> torch.Tensor:
        """The mean image, complex ``(H, W)``."""
        return torch.complex(self.mean_real, self.mean_imag)

    @classmethod
    def from_config(cls, config: dict) -> "GaussianPrior":
        """An empty prior of the config's shape; its buffers are then loaded from the state dict."""
        try:
            h, w = (int(s) for s in config["shape"])
        except (KeyError, TypeError, ValueError):
            raise UserError("a gaussian prior config needs 'shape': [H, W]") from None
        return cls(torch.zeros(h, w, dtype=torch.complex64), torch.ones(h, w))

    # -- denoiser ---------------------------------------------------------------------------
    def wiener_gain(self, sigma: torch.Tensor) -> torch.Tensor:
        """``v / (v + sigma^2)`` shaped ``(B, H, W)`` for ``sigma`` shaped ``(B,)``."""
        s2 = sigma.view(-1, 1, 1).to(self.variance.dtype) ** 2
        return self.variance / (self.variance + s2)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Exact ``E[x0 | x0 + sigma n = x]`` for 2-channel ``x`` ``(B, 2, H, W)``."""
        if tuple(x.shape[-2:]) != self.shape:
            raise UserError(f"image shape {tuple(x.shape[-2:])} does not match the Gaussian prior's {self.shape}")
        sigma = as_sigma(sigma, x)
        mu = self.mean
        k = fft2c(to_complex(x) - mu)
        return to_channels(mu + ifft2c(self.wiener_gain(sigma) * k))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` complex images ``(n, H, W)`` drawn from the prior."""
        h, w = self.shape
        re = torch.randn(n, h, w, generator=generator)
        im = torch.randn(n, h, w, generator=generator)
        k = torch.complex(re, im) * self.variance.sqrt()
        return self.mean + ifft2c(k)

    # -- closed forms for tests -------------------------------------------------------------
    def posterior_mean_given_measurements(self, y: torch.Tensor, mask: torch.Tensor,
                                          sens_maps: torch.Tensor | None = None,
                                          noise_var: float = 0.0) -> torch.Tensor:
        """Exact ``E[z | y]`` for ``y = M F S z + e`` when ``A^H A`` is diagonal in k-space.

        Parameters
        ----------
        y : complex ``(B, H, W)`` (single coil) or ``(B, C, H, W)``
            Masked k-space.
        mask : real, 0/1, broadcastable to ``(B, H, W)``
            The sampling mask.
        sens_maps : complex ``(B, C, H, W)``, optional
            Only spatially constant maps are allowed (each coil a constant ``s_c``); then
            ``A^H A = (sum_c |s_c|^2) F^H M F`` and the coils combine into one measurement.
        noise_var : float
            Variance of each of the real and imaginary parts of ``e`` (0: noiseless).

        Returns
        -------
        complex ``(B, H, W)``: sampled frequencies ``mu + v/(v + noise_var/g) (y - mu)`` (``y``
        itself when noiseless), unsampled frequencies the prior mean.
        """
        if y.dim() == 4:
            if sens_maps is None:
                raise UserError("multi-coil y needs sens_maps (spatially constant ones)")
            s = sens_maps.flatten(-2)[..., :1].unsqueeze(-1)  # (B, C, 1, 1)
            if not torch.allclose(sens_maps, s.expand_as(sens_maps)):
                raise UserError("posterior_mean_given_measurements needs spatially constant coil maps")
            gain = (s.abs() ** 2).sum(1)  # (B, 1, 1)
            y = (s.conj() * y).sum(1) / gain
            noise_var = noise_var / gain
        m = mask.to(self.variance.dtype)
        while m.dim() < 3:
            m = m.unsqueeze(0)
        mu_k = fft2c(self.mean)
        nv = torch.as_tensor(noise_var, dtype=self.variance.dtype)
        w = self.variance / (self.variance + nv) if bool((nv > 0).any()) else 1.0
        k = mu_k + m * w * (y - mu_k)
        return ifft2c(k)
