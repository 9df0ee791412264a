"""DPS with data consistency during sampling (``dc_every``): the default path is unchanged, the
sampled frequencies are enforced, and on a Gaussian prior it samples the exact posterior."""

import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.physics import MultiCoilOperator, to_complex
from fastmri_diffmask.sample.defaults import SAMPLER_DEFAULTS
from fastmri_diffmask.sample.dps import (churn_noise, consistency_steps, data_consistency, default_zeta,
                                         dps_reconstruct, mask_acceleration, prepare_sampling)
from fastmri_diffmask.sample.model import DiffusionPosteriorModel

from test_dps import _line_mask, _problem
from test_fast_dds import _gaussian_case, _posterior_stats

torch.set_num_threads(1)


def _reference_dps(prior, y, mask, maps, steps, zeta=None, churn=0.0, generator=None, dc_weight=None, dc_iters=10):
    """Plain DPS written out step by step as it was before ``dc_every`` existed (Euler step, then
    ``x -= zeta / ||r|| grad ||r||^2``; optional final proximal step)."""
    p = prepare_sampling(y, mask, maps, steps, churn, generator)
    op, yy, t, x, b = p.op, p.y, p.sigmas, p.x, y.shape[0]
    if zeta is None:
        zeta = default_zeta(mask_acceleration(op.mask, y.shape[-2:]))
    for i in range(steps):
        x, s = churn_noise(x, float(t[i]), p.gamma, generator)
        x = x.detach().requires_grad_(True)
        d = prior(x, torch.full((b,), s))
        sq = (yy - op.forward(to_complex(d))).abs().pow(2).flatten(1).sum(1)
        (g,) = torch.autograd.grad(sq.sum(), x)
        with torch.no_grad():
            x = x + (float(t[i + 1]) - s) * (x - d) / s - zeta / sq.sqrt().clamp_min(1e-12).view(-1, 1, 1, 1) * g
    out = to_complex(x.detach())
    if dc_weight is not None:
        out = data_consistency(op, yy, out, dc_weight, dc_iters)
    return out * p.scale


@pytest.mark.parametrize("kw", [dict(steps=12), dict(steps=12, churn=5.0, zeta=2.0), dict(steps=10, dc_weight=0.03)])
def test_without_dc_every_dps_is_bit_identical_to_plain_dps(kw):
    prior, x, maps = _problem(seed=1)
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    ref = _reference_dps(prior, y, mask, maps, generator=torch.Generator().manual_seed(5), **kw)
    for extra in ({}, {"dc_every": None}):
        out = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(5), progress=False,
                              **kw, **extra)
        assert torch.equal(out, ref)
    # and the option does change the result when set (the comparison above could not be vacuous)
    dc = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(5), progress=False,
                         dc_every=3, **kw)
    assert not torch.allclose(dc, ref)


def test_consistency_steps_count_back_from_the_last_step():
    assert consistency_steps(10, None) == frozenset()
    assert consistency_steps(10, 1) == frozenset(range(10))
    assert consistency_steps(10, 4) == {9, 5, 1}
    assert consistency_steps(3, 50) == {2}
    for bad in (0, -1, 2.5, True, "2"):
        with pytest.raises(UserError):
            consistency_steps(10, bad)


def _sampled_residual(op, y, out):
    """``||M (A out - y)|| / ||y||`` over the sampled entries of every coil."""
    return float((op.forward(out) - y).norm() / y.norm())


def test_dc_every_fits_the_measured_lines_where_plain_dps_does_not():
    # random complex coil maps: A^H A is not diagonal, CG does the work
    prior, x, maps = _problem(seed=2)
    mask = _line_mask(x.shape[-1])
    op = MultiCoilOperator(maps, mask)
    y = op.forward(x)
    kw = dict(steps=30, zeta=1.0, progress=False)
    plain = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(0), **kw)
    dc = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(0), dc_every=5,
                         dc_weight=1e-3, dc_iters=20, **kw)
    r_plain, r_dc = _sampled_residual(op, y, plain), _sampled_residual(op, y, dc)
    # mu = 1e-3 leaves a residual of order mu (noiseless data); plain DPS's fixed-length
    # likelihood step leaves one of order zeta / ||r|| (several per cent here)
    assert r_dc < 1e-2 and r_plain > 1e-2 and r_dc < r_plain / 10, (r_dc, r_plain)
    # it is still a better image than the zero-filled one
    assert (dc - x).norm() < (op.adjoint(y) - x).norm()


def test_dc_every_samples_the_exact_gaussian_posterior():
    """Single coil of ones: ``A^H A = F^H M F`` is diagonal in k-space, and with noiseless data the
    posterior of the prior (which acts on images divided by ``scale``, as in DPS) is a point mass at
    ``y`` on the sampled frequencies and the prior ``N(scale mu_k, 2 scale^2 v_k)`` elsewhere."""
    prior, y, mask, maps, exact, un, trace = _gaussian_case()  # K = 64 posterior samples in one batch
    out = dps_reconstruct(prior, y, mask, maps, steps=40, zeta=1.0, dc_every=1, dc_weight=1e-3,
                          generator=torch.Generator().manual_seed(0), progress=False)
    sampled, err2, spread = _posterior_stats(out, exact, un, trace)
    # sampled frequencies: every sample equals the posterior mean (= y) up to mu = 1e-3
    assert sampled < 3e-3, sampled
    # unsampled frequencies: exact posterior samples would give E||mean_K - E[z|y]||^2 = tr(cov) / K
    # (cov = 2 scale^2 v there), err2 = 1. Allow [0.5, 1.5]: about 300 real degrees of freedom make
    # the chi-square spread ~10%, and 40 Euler steps shrink the sample variance by ~12% (measured
    # 0.87 x); a bias towards the wrong mean or collapsed samples would fall outside.
    assert 0.5 < err2 < 1.5, err2
    assert 0.7 < spread < 1.2, spread


def test_dc_every_rejects_bad_settings_and_reaches_the_model():
    prior, x, maps = _problem(seed=2)
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    for bad in (dict(dc_every=0), dict(dc_every=2, dc_weight=0.0), dict(dc_every=2, dc_iters=0)):
        with pytest.raises(UserError):
            dps_reconstruct(prior, y, mask, maps, steps=4, progress=False, **bad)
    model = DiffusionPosteriorModel(prior, steps=10, zeta=1.0, device="cpu", dc_every=2, dc_weight=1e-3)
    direct = dps_reconstruct(prior, y, mask, maps, steps=10, zeta=1.0, dc_every=2, dc_weight=1e-3,
                             generator=torch.Generator().manual_seed(0), progress=False,
                             **{k: SAMPLER_DEFAULTS["dps"][k] for k in ("churn", "init", "sigma_start")})
    assert torch.allclose(model.reconstruct(y, mask, sens_maps=maps), direct)
    with pytest.raises(UserError):
        DiffusionPosteriorModel(prior, sampler="dds", dc_every=2, device="cpu")
    # a zero weight with the default per-step consistency is refused at construction, not at the first call
    with pytest.raises(UserError, match="dc_every"):
        DiffusionPosteriorModel(prior, device="cpu", dc_weight=0.0)
    assert DiffusionPosteriorModel(prior, device="cpu", dc_weight=0.0, dc_every=0).options["dc_every"] is None


def test_dc_every_reaches_recon_and_compare_settings():
    import numpy as np

    from fastmri_diffmask.compare.config import _method_spec
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices

    assert _method_spec({"name": "dps", "dc_every": 5}, "cfg").options == {"dc_every": 5}
    # 0 turns the per-step consistency off; only then may the (final-step) weight be 0
    assert _method_spec({"name": "dps", "dc_every": 0, "dc_weight": 0}, "cfg").options == {"dc_every": 0, "dc_weight": 0}
    for bad in ({"name": "dps", "dc_every": -1}, {"name": "dps", "dc_every": 2.5}, {"name": "dds", "dc_every": 2},
                {"name": "dps", "dc_weight": 0}):
        with pytest.raises(UserError):
            _method_spec(bad, "cfg")
    prior, x, maps = _problem(seed=2)
    mask = _line_mask(x.shape[-1])
    k = MultiCoilOperator(maps, torch.ones_like(mask)).forward(x)
    mask2d = mask[0, 0].expand(x.shape[-2:]).numpy()
    s = ReconSettings(method="dps", steps=8, zeta=1.0, dc_every=2.0, dc_weight=1e-3, prior=prior, device="cpu")
    got = reconstruct_slices(k.numpy(), mask2d, maps.numpy(), 2.0, s)
    want = dps_reconstruct(prior, k * mask, mask, maps, steps=8, zeta=1.0, dc_every=2, dc_weight=1e-3,
                           generator=torch.Generator().manual_seed(0), progress=False,
                           **{k_: SAMPLER_DEFAULTS["dps"][k_] for k_ in ("churn", "init", "sigma_start")}).abs().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_recon_refuses_a_zero_weight_with_per_step_consistency(tmp_path, capsys):
    """``recon --method dps --dc-weight 0`` with the default ``--dc-every 5``: one line, exit 2,
    nothing written; with ``--dc-every 0`` the same weight passes this check."""
    from fastmri_diffmask.cli.main import main

    out = tmp_path / "out"
    base = ["recon", "--data", str(tmp_path / "none"), "--method", "dps", "--mask-type", "equispaced_fraction",
            "--acceleration", "4", "--out", str(out)]
    for extra in (["--dc-weight", "0"], ["--dc-every", "-1"]):
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--dc-" in err[0] and not out.exists()
    assert main(base + ["--dc-weight", "0", "--dc-every", "0"]) == 2  # fails later: the data folder is missing
    assert "dc_weight" not in capsys.readouterr().err
