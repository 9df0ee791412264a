"""Warm-started DDS (``init``, ``sigma_start``) and its stochastic step (``eta``): the default is
today's sampler bit for bit, the data are kept, the exact Gaussian posterior is sampled, runs are
seeded, and bad values fail with one line in the library, ``recon``, compare configs and the model."""

import shutil

import numpy as np
import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.physics import MultiCoilOperator, fft2c, percentile_scale, to_channels, to_complex
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.sample.dds import dds_reconstruct
from fastmri_diffmask.sample.dps import churn_noise, data_consistency, prepare_sampling

from test_dps import _line_mask, _problem
from test_prior import _images

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="bart binary not installed")


def _dds_before_warm_starts(prior, masked_kspace, mask, sens_maps, steps, dc_weight, cg_iters, churn, generator):
    """The DDS loop as it was before warm starts existed (a reference copy for the identity test)."""
    p = prepare_sampling(masked_kspace, mask, sens_maps, steps, churn, generator)
    t, x, b = p.sigmas, p.x, masked_kspace.shape[0]
    with torch.no_grad():
        for i in range(steps):
            x, sigma_hat = churn_noise(x, float(t[i]), p.gamma, generator)
            denoised = prior(x, torch.full((b,), sigma_hat))
            consistent = to_channels(data_consistency(p.op, p.y, to_complex(denoised), dc_weight, cg_iters))
            x = consistent + float(t[i + 1]) / sigma_hat * (x - denoised)
    return to_complex(x) * p.scale


def test_the_default_start_is_todays_sampler_bit_for_bit():
    prior, x, maps = _problem(seed=1)
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    kw = dict(steps=12, dc_weight=0.01, cg_iters=5, churn=20.0)
    want = _dds_before_warm_starts(prior, y, mask, maps, generator=torch.Generator().manual_seed(5), **kw)
    for extra in ({}, dict(init="noise", sigma_start=None, eta=None), dict(init="noise", sigma_start=80.0),
                  dict(eta=0.0)):
        got = dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(5), progress=False,
                              **kw, **extra)
        assert torch.equal(got, want), extra


@pytest.mark.parametrize("init", ["zero-filled", "sense", pytest.param("l1", marks=needs_bart)])
@pytest.mark.parametrize("eta", [None, 1.0])
def test_warm_started_dds_keeps_the_measured_lines(init, eta):
    # 3 coils with random maps: the last step's x0_dc solves min ||A x - y||^2 + mu ||x - D||^2, so
    # with a small mu the sampled k-space of every coil equals the data to about the CG tolerance.
    prior, x, maps = _problem(size=16, coils=3, seed=3)
    mask = _line_mask(x.shape[-1])
    op = MultiCoilOperator(maps, mask)
    y = op.forward(x)
    out = dds_reconstruct(prior, y, mask, maps, steps=6, dc_weight=1e-4, cg_iters=20, churn=0.0, init=init,
                          sigma_start=1.0, eta=eta, generator=torch.Generator().manual_seed(0), progress=False)
    assert float((op.forward(out) - y).norm() / y.norm()) < 1e-3
    assert (out - x).norm() < (op.adjoint(y) - x).norm()  # and it is a better image than zero filling


def test_fully_sampled_warm_start_returns_the_measured_image():
    prior, x, maps = _problem()
    mask = torch.ones(1, 1, 1, x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    for init in ("zero-filled", "sense"):
        out = dds_reconstruct(prior, y, mask, maps, steps=4, dc_weight=1e-6, cg_iters=3, init=init, sigma_start=0.5,
                              eta=1.0, generator=torch.Generator().manual_seed(0), progress=False)
        assert float((out - x).norm() / x.norm()) < 1e-4, init


def _gaussian_case(k_samples: int = 64):
    """Single coil of ones (``A^H A`` diagonal in k-space, as in test_dps_consistency): the exact
    posterior is a point mass at ``y`` on the sampled frequencies and the prior elsewhere."""
    size = 16
    imgs = _images(n=30, size=size, seed=4)
    prior = GaussianPrior.fit(imgs[1:])
    maps = torch.ones(1, 1, size, size, dtype=torch.complex64)
    mask = _line_mask(size)
    op = MultiCoilOperator(maps, mask)
    y = op.forward(imgs[:1])
    scale = float(percentile_scale(op.adjoint(y)).flatten()[0])
    exact = fft2c(prior.posterior_mean_given_measurements(y[:, 0] / scale, mask[0, 0]) * scale)[0]
    un = 1 - mask[0, 0, 0]
    trace = float((un * 2 * scale ** 2 * prior.variance).sum())  # tr(posterior cov) on unsampled frequencies
    rep = lambda v: v.repeat(k_samples, 1, 1, 1)  # noqa: E731
    return prior, rep(y), mask, rep(maps), exact, un, trace


def _posterior_stats(out, exact, un, trace):
    k, n = fft2c(out), out.shape[0]
    sampled = float(((1 - un) * (k - exact)).norm() / ((1 - un) * exact).norm() / n ** 0.5)
    err2 = float((un * (k.mean(0) - exact)).abs().pow(2).sum()) / (trace / n)  # 1 for exact samples
    spread = float((un * (k - k.mean(0))).abs().pow(2).sum()) / (n - 1) / trace  # 1 for exact samples
    return sampled, err2, spread


def test_warm_started_dds_samples_the_exact_gaussian_posterior():
    prior, y, mask, maps, exact, un, trace = _gaussian_case()
    # deterministic step, warm start at sigma 10 (well above the prior's spread): exact samples
    # would give err2 = spread = 1; measured 0.93 / 0.87 (40 Euler steps shrink the spread a little)
    out = dds_reconstruct(prior, y, mask, maps, steps=40, dc_weight=1e-4, churn=0.0, init="zero-filled",
                          sigma_start=10.0, generator=torch.Generator().manual_seed(0), progress=False)
    sampled, err2, spread = _posterior_stats(out, exact, un, trace)
    assert sampled < 1e-4 and 0.5 < err2 < 1.5 and 0.7 < spread < 1.2, (sampled, err2, spread)


def test_eta_one_pulls_the_samples_towards_the_posterior_mean():
    # eta = 1 re-noises each data-consistent estimate with fresh noise instead of keeping the noise
    # direction: the samples' spread shrinks (measured 0.45 of the posterior's) and their mean sits
    # at least as close to E[z | y] as exact samples' would; the sampled frequencies stay = y.
    prior, y, mask, maps, exact, un, trace = _gaussian_case()
    out = dds_reconstruct(prior, y, mask, maps, steps=40, dc_weight=1e-4, churn=0.0, init="zero-filled",
                          sigma_start=10.0, eta=1.0, generator=torch.Generator().manual_seed(0), progress=False)
    sampled, err2, spread = _posterior_stats(out, exact, un, trace)
    assert sampled < 1e-4 and err2 < 1.0 and 0.2 < spread < 0.7, (sampled, err2, spread)


def test_warm_start_is_seeded():
    prior, x, maps = _problem(seed=2)
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    kw = dict(steps=5, churn=10.0, init="sense", sigma_start=2.0, eta=0.5, progress=False)
    a, b, c = (dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(s), **kw) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("bad", [dict(init="cs"), dict(init=None), dict(sigma_start=0.0), dict(sigma_start=-1.0),
                                 dict(sigma_start=float("nan")), dict(sigma_start="2"), dict(sigma_start=True),
                                 dict(eta=1.5), dict(eta=-0.1), dict(eta="1")])
def test_bad_warm_start_values_fail_with_one_line(bad):
    prior, x, maps = _problem()
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    with pytest.raises(UserError) as e:
        dds_reconstruct(prior, y, mask, maps, steps=2, progress=False, **bad)
    assert len(str(e.value).splitlines()) == 1


def test_warm_start_reaches_recon_settings_compare_and_the_model():
    from fastmri_diffmask.compare.config import _method_spec
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices
    from fastmri_diffmask.sample.model import DiffusionPosteriorModel

    spec = _method_spec({"name": "dds", "init": "sense", "sigma_start": 1, "eta": 1, "steps": 8}, "cfg")
    assert spec.options == {"init": "sense", "sigma_start": 1, "eta": 1, "steps": 8}
    for bad in ({"name": "dds", "init": "magic"}, {"name": "dds", "sigma_start": 0}, {"name": "dds", "eta": 2},
                {"name": "dps", "eta": 1}, {"name": "dps", "init": "cs"}, {"name": "dds", "sigma_start": "high"}):
        with pytest.raises(UserError):
            _method_spec(bad, "cfg")
    prior, x, maps = _problem(seed=2)
    mask = _line_mask(x.shape[-1])
    k = MultiCoilOperator(maps, torch.ones_like(mask)).forward(x)
    warm = dict(init="sense", sigma_start=1.0, eta=1.0)
    want = dds_reconstruct(prior, k * mask, mask, maps, steps=6, churn=0.0, generator=torch.Generator().manual_seed(0),
                           progress=False, sigma_min="auto", **warm)  # the entry points' schedule end
    s = ReconSettings(method="dds", steps=6, churn=0.0, prior=prior, device="cpu", **warm)
    got = reconstruct_slices(k.numpy(), mask[0, 0].expand(x.shape[-2:]).numpy(), maps.numpy(), 2.0, s)
    np.testing.assert_allclose(got, want.abs().numpy(), rtol=1e-5, atol=1e-6)
    model = DiffusionPosteriorModel(prior, sampler="dds", steps=6, churn=0.0, device="cpu", dds_init="sense",
                                    sigma_start=1.0, eta=1.0)
    assert torch.allclose(model.reconstruct(k * mask, mask, sens_maps=maps), want)
    for bad in (dict(sampler="dps", eta=1.0), dict(sampler="dds", dds_init="cs"),
                dict(sampler="dds", sigma_start=-1.0), dict(sampler="dds", eta=3.0)):
        with pytest.raises(UserError):
            DiffusionPosteriorModel(prior, device="cpu", **bad)


def test_recon_refuses_bad_warm_start_flags_before_writing(tmp_path, capsys):
    from fastmri_diffmask.cli.main import main

    data = tmp_path / "data"
    assert main(["make-data", "--out", str(data), "--split", "test", "--size", "32", "--coils", "2",
                 "--slices-per-file", "2"]) == 0
    capsys.readouterr()
    base = ["recon", "--data", str(data), "--mask-type", "equispaced_fraction", "--acceleration", "4",
            "--sens-maps", "file"]
    cases = [(["--method", "dds", "--dds-init", "magic"], "init"), (["--method", "dds", "--sigma-start", "0"], "sigma_start"),
             (["--method", "dds", "--dds-eta", "2"], "eta"), (["--method", "dps", "--dds-eta", "1"], "--method dds"),
             (["--method", "zero-filled", "--sigma-start", "1"], "--method dps or dds"),
             (["--method", "dps", "--init", "cs"], "init"), (["--method", "dps", "--sigma-min", "0.01"], "DDS option"),
             (["--method", "dds", "--sigma-min", "0"], "sigma_min"),
             (["--method", "dds", "--sigma-min", "0.6"], "--sigma-min")]
    for i, (flags, needle) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert main(base + flags + ["--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
        assert not out.exists()


def test_schedule_end_rises_with_the_acceleration_and_is_clamped():
    from fastmri_diffmask.sample.dds import default_sigma_min

    values = [default_sigma_min(r) for r in (1.5, 4, 6, 8, 12, 20)]
    assert values[0] == values[1] == pytest.approx(0.005) and values[-1] == values[-2] == pytest.approx(0.02)
    assert values[3] == pytest.approx(0.01)
    assert all(a < b for a, b in zip(values[1:-1], values[2:-1]))


def test_auto_schedule_end_is_the_explicit_value_of_the_masks_acceleration():
    from fastmri_diffmask.sample.dds import default_sigma_min
    from fastmri_diffmask.sample.schedule import mask_acceleration

    prior, x, maps = _problem(seed=3)
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    r = mask_acceleration(mask, x.shape[-2:])
    kw = dict(steps=4, init="sense", sigma_start=0.5, eta=1.0, churn=0.0, progress=False)
    run = lambda end: dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(0), sigma_min=end, **kw)
    auto, explicit, edm = run("auto"), run(default_sigma_min(r)), run(0.002)
    assert torch.equal(auto, explicit)
    assert not torch.allclose(auto, edm)  # the end of the schedule changes the result
    for bad in (0.0, -1.0, "high", True):
        with pytest.raises(UserError):
            run(bad)


def test_compare_and_the_model_take_the_schedule_end():
    from fastmri_diffmask.compare.config import _method_spec
    from fastmri_diffmask.sample.model import DiffusionPosteriorModel

    assert _method_spec({"name": "dds", "sigma_min": "auto"}, "cfg").options == {"sigma_min": "auto"}
    assert _method_spec({"name": "dds", "sigma_min": 0.002}, "cfg").options == {"sigma_min": 0.002}
    for bad in ({"name": "dds", "sigma_min": 0}, {"name": "dds", "sigma_min": -1}, {"name": "dds", "sigma_min": "x"},
                {"name": "dps", "sigma_min": 0.01}, {"name": "dds", "sigma_min": 0.6, "sigma_start": 0.5}):
        with pytest.raises(UserError):
            _method_spec(bad, "cfg")
    assert DiffusionPosteriorModel(GaussianPrior.fit(torch.randn(4, 8, 8, dtype=torch.complex64)), sampler="dds",
                                   device="cpu").options["sigma_min"] == "auto"
    for bad in (dict(sampler="dds", sigma_min=-1.0), dict(sampler="dps", sigma_min=0.01)):
        with pytest.raises(UserError):
            DiffusionPosteriorModel(GaussianPrior.fit(torch.randn(4, 8, 8, dtype=torch.complex64)), device="cpu", **bad)
