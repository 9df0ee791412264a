import pytest
import torch

from fastmri_diffmask.physics import MultiCoilOperator, fft2c
from fastmri_diffmask.sample.dds import dds_reconstruct

from test_dps import _line_mask, _problem


def test_dds_fully_sampled_returns_measured_image():
    # Every step ends in argmin ||A x - y||^2 + mu ||x - x0_hat||^2; with all of k-space sampled and
    # sum |S|^2 = 1 that is (x + mu x0_hat) / (1 + mu), so a tiny mu returns the measured image.
    prior, x, maps = _problem()
    mask = torch.ones(1, 1, 1, x.shape[-1])
    y = MultiCoilOperator(maps, mask).forward(x)
    out = dds_reconstruct(prior, y, mask, maps, steps=10, dc_weight=1e-6, cg_iters=3,
                          generator=torch.Generator().manual_seed(0), progress=False)
    assert float((out - x).norm() / x.norm()) < 1e-4


def test_dds_keeps_the_sampled_lines_and_fills_the_others():
    prior, x, maps = _problem(size=16, coils=1, seed=1)
    maps = torch.ones_like(maps)  # one coil of ones: A^H A is diagonal in k-space
    mask = _line_mask(x.shape[-1])
    op = MultiCoilOperator(maps, mask)
    y = op.forward(x)
    kw = dict(steps=20, dc_weight=1e-4, cg_iters=5, churn=10, progress=False)
    a = dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(3), **kw)
    b = dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(3), **kw)
    c = dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(4), **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)
    sampled = mask[0, 0, 0].bool()
    k_true, k_out = fft2c(x), fft2c(a)
    err_sampled = (k_out - k_true)[..., sampled].norm() / k_true[..., sampled].norm()
    assert err_sampled < 1e-3
    # the prior fills the unsampled lines: the mean of 16 posterior samples beats zero filling
    many = dds_reconstruct(prior, y.repeat(16, 1, 1, 1), mask, maps.repeat(16, 1, 1, 1),
                           generator=torch.Generator().manual_seed(3), **kw)
    assert (many.mean(0) - x[0]).norm() < 0.9 * (op.adjoint(y) - x).norm()


def test_dds_rejects_zero_steps():
    prior, x, maps = _problem()
    mask = torch.ones(1, 1, 1, x.shape[-1])
    with pytest.raises(ValueError, match="positive"):
        dds_reconstruct(prior, MultiCoilOperator(maps, mask).forward(x), mask, maps, steps=0, progress=False)


def test_fastmri_style_model_with_the_dds_sampler():
    from fastmri_diffmask.sample.model import DiffusionPosteriorModel

    prior, x, maps = _problem(seed=2)
    mask = torch.zeros(1, 1, 1, x.shape[-1])
    mask[..., ::2] = 1
    y = MultiCoilOperator(maps, mask).forward(x)
    from fastmri_diffmask.sample.defaults import SAMPLER_DEFAULTS

    model = DiffusionPosteriorModel(prior, sampler="dds", steps=10, device="cpu")
    want = {**SAMPLER_DEFAULTS["dds"], "steps": 10}  # the entry points' DDS defaults, steps overridden
    assert model.options == want and (model.churn, model.dc_weight) == (want["churn"], want["dc_weight"])
    out = model(torch.view_as_real(y), mask[..., None].bool(), num_low_frequencies=4, sens_maps=maps)
    direct = dds_reconstruct(prior, y, mask, maps, generator=torch.Generator().manual_seed(0), progress=False, **want)
    assert out.shape == x.shape and torch.allclose(out, direct.abs())
    with pytest.raises(Exception, match="unknown sampler"):
        DiffusionPosteriorModel(prior, sampler="ddim", device="cpu")
