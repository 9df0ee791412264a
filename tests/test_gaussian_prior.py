"""GaussianPrior: the exact posterior-mean denoiser, its fit, its file round trip, and the
closed forms the mask-learning objective must reproduce with it."""

import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.learn.tweedie import Likelihood, one_step_estimate
from fastmri_diffmask.physics import MultiCoilOperator, fft2c, ifft2c, to_channels, to_complex
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.weights import load_prior, save_prior

torch.set_num_threads(1)


def _prior(h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.complex(torch.randn(h, w, generator=g), torch.randn(h, w, generator=g))
    var = torch.rand(h, w, generator=g) * 2 + 0.01
    return GaussianPrior(mean, var), g


def _dense_covariance(var: torch.Tensor) -> torch.Tensor:
    """Real ``(2n, 2n)`` covariance of ``(Re z, Im z)`` for ``z - mu = F^H (sqrt(2 v) w)``, built
    from the dense unitary DFT matrix (independent of the FFT-domain implementation)."""
    h, w = var.shape
    n = h * w
    eye = torch.eye(n, dtype=torch.complex128).reshape(n, h, w)
    f = fft2c(eye).reshape(n, n).T  # column j = F e_j
    c = f.conj().T @ torch.diag(var.reshape(-1).to(torch.complex128)) @ f  # = F^H diag(v) F
    top = torch.cat([c.real, -c.imag], 1)
    bottom = torch.cat([c.imag, c.real], 1)
    return torch.cat([top, bottom], 0)


def test_denoiser_equals_dense_posterior_mean():
    prior, g = _prior()
    sigma = 0.7
    x = torch.randn(1, 2, 8, 8, generator=g)
    cov = _dense_covariance(prior.variance.double())
    mu = torch.cat([prior.mean_real.reshape(-1), prior.mean_imag.reshape(-1)]).double()
    xv = torch.cat([x[0, 0].reshape(-1), x[0, 1].reshape(-1)]).double()
    dense = mu + cov @ torch.linalg.solve(cov + sigma ** 2 * torch.eye(128, dtype=torch.float64), xv - mu)
    got = prior(x, torch.tensor([sigma]))
    got = torch.cat([got[0, 0].reshape(-1), got[0, 1].reshape(-1)]).double()
    assert torch.allclose(got, dense, atol=2e-5, rtol=1e-5)


def test_samples_follow_the_variance_convention_and_fit_recovers_it():
    prior, g = _prior(seed=1)
    z = prior.sample(6000, g)
    k = fft2c(z - prior.mean)
    # each of Re and Im of F(z - mu) has variance v
    assert torch.allclose(k.real.var(0).mean() / prior.variance.mean(), torch.tensor(1.0), atol=0.03)
    assert torch.allclose(k.imag.var(0).mean() / prior.variance.mean(), torch.tensor(1.0), atol=0.03)
    fitted = GaussianPrior.fit(z)
    ratio = fitted.variance / prior.variance
    assert abs(float(ratio.mean()) - 1) < 0.02 and float((ratio - 1).abs().max()) < 0.15
    assert torch.allclose(fitted.mean, prior.mean, atol=0.1)


def test_save_and_load_round_trip(tmp_path):
    prior, g = _prior()
    path = save_prior(tmp_path / "g.safetensors", prior, prior.config)
    loaded = load_prior(path, device="cpu")
    assert isinstance(loaded, GaussianPrior) and loaded.config["kind"] == "gaussian"
    assert len(loaded.sha256) == 64
    x = torch.randn(2, 2, 8, 8, generator=g)
    s = torch.tensor([0.3, 2.0])
    assert torch.equal(loaded(x, s), prior(x, s))


def test_shape_mismatch_is_a_user_error():
    prior, _ = _prior()
    with pytest.raises(UserError):
        prior(torch.zeros(1, 2, 16, 16), torch.ones(1))


def _single_coil_problem(seed=0):
    prior, g = _prior(8, 8, seed)
    x = to_channels(prior.sample(2, g))
    maps = torch.ones(2, 1, 8, 8, dtype=torch.complex64)
    mask = (torch.rand(8, generator=g) < 0.4).float()
    mask[3:5] = 1
    kmask = mask.view(1, 1, 1, 8).expand(2, 1, 1, 8)
    y = MultiCoilOperator(maps)(to_complex(x))
    return prior, g, x, maps, kmask, y


def test_one_step_x0_at_large_sigma_equals_exact_posterior_mean_given_measurements():
    """Single coil, noiseless, grad w.r.t. x0_hat, eta = 1/2: x_hat keeps the measured
    frequencies exactly (x0 - 2 eta M (x0 - y) = y there) and the Tweedie estimate elsewhere.
    As sigma -> inf the Tweedie estimate tends to the prior mean, so x_hat tends to the exact
    E[x | y] (measured frequencies = y, unmeasured = prior mean): the remainder
    w (X_t - mu) with w = v / (v + sigma^2) and X_t - mu = O(sigma) is O(v / sigma)."""
    prior, g, x, maps, kmask, y = _single_coil_problem()
    lik = Likelihood(maps, kmask, y, "paper")
    exact = prior.posterior_mean_given_measurements((kmask * y)[:, 0], kmask[:, 0])
    noise = torch.randn(x.shape, generator=g)
    errs = []
    for sigma in (1e2, 1e3, 1e4):
        x_hat = one_step_estimate(prior, x + sigma * noise, torch.full((2,), sigma), lik, eta=0.5, grad="x0")
        errs.append(float((to_complex(x_hat) - exact).abs().max()))
    assert errs[0] < 0.2 and errs[2] < 2e-3
    assert errs[1] < errs[0] / 5 and errs[2] < errs[1] / 5  # ~ 1 / sigma
    # at any sigma the measured frequencies equal y exactly
    x_t = x + 0.3 * torch.randn(x.shape, generator=g)
    k_hat = fft2c(to_complex(one_step_estimate(prior, x_t, torch.full((2,), 0.3), lik, eta=0.5, grad="x0")))
    sampled = kmask[:, 0].expand(2, 8, 8) > 0
    assert torch.allclose(k_hat[sampled], y[:, 0][sampled], atol=1e-5)


def test_one_step_through_denoiser_matches_its_closed_form():
    """grad (a) w.r.t. x_t through D: J_D = F^H diag(w) F with w = v / (v + sigma^2), so
    x_hat = F^H [X0 - 2 eta w M (X0 - Y)] in k-space."""
    prior, g, x, maps, kmask, y = _single_coil_problem(seed=3)
    sigma, eta = 0.8, 0.37
    x_t = x + sigma * torch.randn(x.shape, generator=g)
    s = torch.full((2,), sigma)
    x_hat = one_step_estimate(prior, x_t, s, Likelihood(maps, kmask, y, "paper"), eta=eta, grad="xt")
    x0 = fft2c(to_complex(prior(x_t, s)))
    w = prior.wiener_gain(s)
    m = kmask[:, 0]
    closed = ifft2c(x0 - 2 * eta * w * m * (x0 - y[:, 0]))
    assert torch.allclose(to_complex(x_hat), closed, atol=1e-5)


def test_posterior_mean_with_constant_multicoil_maps_equals_single_coil():
    prior, g = _prior(seed=4)
    z = prior.sample(1, g)
    mask = torch.zeros(8)
    mask[[1, 3, 4, 6]] = 1
    s = torch.tensor([0.6, 0.8j]).view(1, 2, 1, 1).expand(1, 2, 8, 8).to(torch.complex64)
    y = fft2c(s * z[:, None]) * mask
    multi = prior.posterior_mean_given_measurements(y, mask.view(1, 1, 8), sens_maps=s)
    single = prior.posterior_mean_given_measurements(fft2c(z) * mask, mask.view(1, 1, 8))
    assert torch.allclose(multi, single, atol=1e-5)
