"""Warm-started DPS (``init``, ``sigma_start``; sample/warm_start.py): the noise start is today's
sampler bit for bit, a warm start keeps the measured lines and beats zero filling, every entry
point (library, ``recon`` settings, the fastMRI-style model) runs the same sampler, and the
defaults table resolves an explicit noise start to ``sigma_max``."""

import numpy as np
import pytest
import torch

from fastmri_diffmask.physics import MultiCoilOperator
from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices
from fastmri_diffmask.sample import defaults
from fastmri_diffmask.sample.defaults import resolve_sampler_options
from fastmri_diffmask.sample.dps import dps_reconstruct
from fastmri_diffmask.sample.model import DiffusionPosteriorModel

from test_dps import _line_mask, _problem


def test_noise_start_is_the_cold_sampler_bit_for_bit():
    prior, x, maps = _problem(seed=1)
    mask = _line_mask(x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    kw = dict(steps=10, zeta=1.0, churn=10.0, dc_weight=0.03, progress=False)
    want = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(4), **kw)
    for extra in (dict(init="noise"), dict(init="noise", sigma_start=80.0)):
        got = dps_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(4), **kw, **extra)
        assert torch.equal(got, want), extra


@pytest.mark.parametrize("init", ["zero-filled", "sense"])
def test_warm_started_dps_keeps_the_measured_lines(init):
    prior, x, maps = _problem(size=16, coils=3, seed=3)
    mask = _line_mask(x.shape[-1])
    op = MultiCoilOperator(maps, mask)
    y = op.forward(x)
    out = dps_reconstruct(prior, y, mask, maps, steps=10, zeta=0.5, dc_weight=1e-4, dc_iters=30, init=init,
                          sigma_start=1.0, generator=torch.Generator().manual_seed(0), progress=False)
    assert float((op.forward(out) - y).norm() / y.norm()) < 1e-3
    assert (out - x).norm() < (op.adjoint(y) - x).norm()


def test_a_low_warm_start_stays_near_its_estimate_and_a_high_one_forgets_it():
    # Fully sampled data and no likelihood step (zeta 0): the sample is the prior's reverse run
    # from x_init + sigma_start n. From sigma 0.05 it must stay close to the (exact) SENSE image;
    # from sigma 80 the start is swamped by noise and the result is a prior sample, far from x.
    prior, x, maps = _problem(seed=5)
    mask = torch.ones(1, 1, 1, x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    err = {}
    for s0 in (0.05, 80.0):
        out = dps_reconstruct(prior, y, mask, maps, steps=8, zeta=0.0, init="sense", sigma_start=s0,
                              generator=torch.Generator().manual_seed(0), progress=False)
        err[s0] = float((out - x).norm() / x.norm())
    assert err[0.05] < 0.25 * err[80.0] and err[0.05] < 0.2, err


def test_entry_points_run_the_same_warm_sampler():
    prior, x, maps = _problem(seed=2)
    mask = _line_mask(x.shape[-1])
    k = MultiCoilOperator(maps, torch.ones_like(mask)).forward(x)
    warm = dict(init="sense", sigma_start=1.0)
    kw = dict(steps=6, churn=0.0, dc_weight=0.03)
    every = defaults.SAMPLER_DEFAULTS["dps"]["dc_every"]  # the entry points' default; the library's is off
    want = dps_reconstruct(prior, k * mask, mask, maps, generator=torch.Generator().manual_seed(0), progress=False,
                           dc_every=every, **kw, **warm)
    s = ReconSettings(method="dps", prior=prior, device="cpu", **kw, **warm)
    got = reconstruct_slices(k.numpy(), mask[0, 0].expand(x.shape[-2:]).numpy(), maps.numpy(), 2.0, s)
    np.testing.assert_allclose(got, want.abs().numpy(), rtol=1e-5, atol=1e-6)
    model = DiffusionPosteriorModel(prior, sampler="dps", device="cpu", dds_init="sense", sigma_start=1.0, **kw)
    assert torch.allclose(model.reconstruct(k * mask, mask, sens_maps=maps), want)
    # dc_every 0 at every entry point is the library's default (only the final step)
    plain = dps_reconstruct(prior, k * mask, mask, maps, generator=torch.Generator().manual_seed(0), progress=False,
                            **kw, **warm)
    assert not torch.allclose(plain, want)
    s0 = ReconSettings(method="dps", prior=prior, device="cpu", dc_every=0, **kw, **warm)
    got0 = reconstruct_slices(k.numpy(), mask[0, 0].expand(x.shape[-2:]).numpy(), maps.numpy(), 2.0, s0)
    np.testing.assert_allclose(got0, plain.abs().numpy(), rtol=1e-5, atol=1e-6)
    model0 = DiffusionPosteriorModel(prior, sampler="dps", device="cpu", dds_init="sense", sigma_start=1.0, dc_every=0, **kw)
    assert torch.allclose(model0.reconstruct(k * mask, mask, sens_maps=maps), plain)


def test_defaults_table_fills_unset_options_and_an_explicit_noise_start_means_sigma_max(monkeypatch):
    for method in ("dps", "dds"):
        got = resolve_sampler_options(method)
        assert got == defaults.SAMPLER_DEFAULTS[method]
        assert resolve_sampler_options(method, steps=7)["steps"] == 7
    warm = {**defaults.SAMPLER_DEFAULTS["dps"], "init": "sense", "sigma_start": 0.5}
    monkeypatch.setitem(defaults.SAMPLER_DEFAULTS, "dps", warm)
    assert resolve_sampler_options("dps")["sigma_start"] == 0.5
    assert resolve_sampler_options("dps", init="noise")["sigma_start"] is None
    assert resolve_sampler_options("dps", init="zero-filled")["sigma_start"] == 0.5
    with pytest.raises(KeyError):
        resolve_sampler_options("dps", eta=1.0)
