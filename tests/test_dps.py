import torch

from fastmri_diffmask.physics import MultiCoilOperator, rss
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.sample.dps import dps_posterior, dps_reconstruct, edm_sigmas
from fastmri_diffmask.sample.model import DiffusionPosteriorModel

from test_prior import _images


def _problem(size=16, coils=3, seed=0):
    imgs = _images(n=20, size=size, seed=seed)
    prior = GaussianPrior.fit(imgs[1:])
    g = torch.Generator().manual_seed(seed)
    maps = torch.complex(torch.randn(1, coils, size, size, generator=g), torch.randn(1, coils, size, size, generator=g))
    maps = maps / rss(maps, dim=1).unsqueeze(1)
    return prior, imgs[:1], maps


def test_edm_schedule_endpoints():
    t = edm_sigmas(10)
    assert len(t) == 11 and abs(t[0] - 80) < 1e-9 and abs(t[-2] - 0.002) < 1e-9 and t[-1] == 0
    assert torch.all(t[:-1] > t[1:])


def test_dps_fully_sampled_returns_measured_image():
    prior, x, maps = _problem()
    mask = torch.ones(1, 1, 1, x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    # The normalised DPS step (zeta / ||r|| grad ||r||^2) has a fixed length, so DPS settles within
    # O(zeta) of the data, never exactly on them: a small zeta and enough steps must get close.
    out = dps_reconstruct(prior, y, mask, maps, steps=200, zeta=0.3, generator=torch.Generator().manual_seed(0), progress=False)
    rel = float((out - x).norm() / x.norm())
    prior_mean_err = float((prior.mean - x[0]).norm() / x.norm())
    assert rel < 0.06 and rel < prior_mean_err / 5, (rel, prior_mean_err)


def _line_mask(w: int) -> torch.Tensor:
    """Every third line and a 4-line centre, shaped (1, 1, 1, W)."""
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::3] = 1
    mask[..., w // 2 - 2:w // 2 + 2] = 1
    return mask


def test_dps_undersampled_beats_zero_filled_and_is_seeded():
    prior, x, maps = _problem(seed=1)
    mask = _line_mask(x.shape[-1])
    op = MultiCoilOperator(maps, mask)
    y = op.forward(x)
    kw = dict(steps=40, zeta=1.0, progress=False)
    a = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(3), **kw)
    b = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(3), **kw)
    assert torch.equal(a, b)
    zf = op.adjoint(y)
    assert (a - x).norm() < (zf - x).norm()


def test_posterior_summary_and_fastmri_style_model():
    prior, x, maps = _problem(seed=2)
    mask = torch.zeros(1, 1, 1, x.shape[-1])
    mask[..., ::2] = 1
    y = MultiCoilOperator(maps, mask).forward(x)
    summ = dps_posterior(prior, y, mask, maps, num_samples=3, steps=20, zeta=1.0, progress=False)
    assert summ.samples.shape == (3, 1, *x.shape[-2:]) and summ.std.min() >= 0 and summ.std.max() > 0
    model = DiffusionPosteriorModel(prior, steps=20, zeta=1.0, device="cpu")
    # fastMRI's VarNet call: real-view k-space (B, C, H, W, 2) and a mask (B, 1, 1, W, 1)
    out = model(torch.view_as_real(y), mask[..., None].bool(), num_low_frequencies=4, sens_maps=maps)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.all(out >= 0)
    same = model(y, mask, sens_maps=maps)
    assert torch.allclose(out, same)


def test_data_consistency_matches_closed_form_single_coil():
    # With one coil of ones, A^H A = F^H M F is diagonal in k-space, so the proximal step has the
    # closed form x = F^H [(M y + mu F x0) / (M + mu)]; CG must reach it.
    from fastmri_diffmask.physics import fft2c, ifft2c
    from fastmri_diffmask.sample.dps import data_consistency

    g = torch.Generator().manual_seed(3)
    shape = (2, 16, 12)
    x_true = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    x0 = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    mask = (torch.rand(1, 1, 1, 12, generator=g) < 0.4).float()
    op = MultiCoilOperator(torch.ones(1, 1, 16, 12, dtype=torch.complex64), mask)
    y = op.forward(x_true)
    mu = 0.3
    out = data_consistency(op, y, x0, mu, iters=20)
    m = mask[0, 0]
    expected = ifft2c((m * y[:, 0] + mu * fft2c(x0)) / (m + mu))
    assert float((out - expected).norm() / expected.norm()) < 1e-4
    # small mu: the sampled frequencies equal the data, the others stay those of x0
    out = data_consistency(op, y, x0, 1e-3, iters=20)
    k_out, k_x0 = fft2c(out), fft2c(x0)
    assert float((m * (k_out - y[:, 0])).norm() / (m * y[:, 0]).norm()) < 5e-3
    assert float(((1 - m) * (k_out - k_x0)).norm() / ((1 - m) * k_x0).norm()) < 1e-3


def test_dps_final_data_consistency_fits_the_data():
    prior, x, maps = _problem(seed=2)
    mask = torch.zeros(1, 1, 1, x.shape[-1])
    mask[..., ::2] = 1
    y = MultiCoilOperator(maps, mask).forward(x)
    kw = dict(steps=20, generator=torch.Generator().manual_seed(0), progress=False)
    plain = dps_reconstruct(prior, y, mask, maps, **kw)
    kw["generator"] = torch.Generator().manual_seed(0)
    dc = dps_reconstruct(prior, y, mask, maps, dc_weight=1e-3, dc_iters=30, **kw)
    op = MultiCoilOperator(maps, mask)
    res = lambda z: float((op.forward(z) - y).norm() / y.norm())  # noqa: E731
    assert res(dc) < 0.01 and res(dc) < res(plain) / 5, (res(dc), res(plain))


def test_data_consistency_equals_cg_on_the_centred_operator():
    """The shift-free CG solves the same system as CG written with the centred FFT (odd sizes too)."""
    from fastmri_diffmask.sample.dps import data_consistency

    def centred_cg(op, y, x0, mu, iters):
        normal = lambda v: op.normal(v) + mu * v  # noqa: E731
        x, r = x0.clone(), op.adjoint(y) + mu * x0 - normal(x0)
        p, rs = r.clone(), r.abs().pow(2).sum()
        for _ in range(iters):
            ap = normal(p)
            alpha = rs / (p.conj() * ap).real.sum()
            x, r = x + alpha * p, r - alpha * ap
            rs, rs_old = r.abs().pow(2).sum(), rs
            p = r + (rs / rs_old) * p
        return x

    g = torch.Generator().manual_seed(5)
    for h, w in ((32, 32), (31, 27)):
        maps = torch.complex(torch.randn(1, 4, h, w, generator=g), torch.randn(1, 4, h, w, generator=g))
        mask = (torch.rand(1, 1, 1, w, generator=g) < 0.4).float()
        op = MultiCoilOperator(maps, mask)
        y = op.forward(torch.complex(torch.randn(1, h, w, generator=g), torch.randn(1, h, w, generator=g)))
        x0 = torch.complex(torch.randn(1, h, w, generator=g), torch.randn(1, h, w, generator=g))
        want = centred_cg(op, y, x0, 0.05, 6)
        got = data_consistency(op, y, x0, 0.05, 6)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
