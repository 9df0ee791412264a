"""The differentiable short DDS objective (``learn/dds_unroll.py``): its mask gradient agrees with
finite differences, it reduces to DDS's own data-consistency step, and it plugs into the loop."""

import pytest
import torch

from fastmri_diffmask.learn.dds_unroll import WeightedOperator, dds_unrolled_estimate, recon_ladder
from fastmri_diffmask.learn.objective import ObjectiveConfig, estimate, objective_loss
from fastmri_diffmask.masks.bernoulli import BernoulliMask, as_kspace_mask
from fastmri_diffmask.physics import MultiCoilOperator, to_channels, to_complex
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.sample.dps import data_consistency

torch.set_num_threads(1)


def _problem(h=8, w=8, coils=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.complex(torch.randn(h, w, generator=g), torch.randn(h, w, generator=g))
    prior = GaussianPrior(mean.to(torch.complex64), torch.rand(h, w, generator=g) * 2 + 0.05).double()
    x = to_complex(torch.randn(1, 2, h, w, generator=g, dtype=torch.float64))
    maps = torch.complex(torch.randn(1, coils, h, w, generator=g, dtype=torch.float64),
                         torch.randn(1, coils, h, w, generator=g, dtype=torch.float64))
    y = MultiCoilOperator(maps)(x)
    noise = torch.randn(1, 2, h, w, generator=g, dtype=torch.float64)
    weight = (torch.rand(1, 1, 1, w, generator=g, dtype=torch.float64) * 0.8 + 0.1)
    return prior, x, maps, y, noise, weight, g


def _loss(prior, x, maps, y, noise, weight, **kw):
    out = dds_unrolled_estimate(prior, y, maps, weight, noise, **kw)
    return (out - to_channels(x)).pow(2).sum()


@pytest.mark.parametrize("kw", [dict(steps=3, init="adjoint", denoiser_grad=True),
                                dict(steps=1, init="noise", denoiser_grad=False),
                                dict(steps=2, init="noise", denoiser_grad=True, cg_iters=3)])
def test_mask_gradient_matches_finite_differences(kw):
    prior, x, maps, y, noise, weight, g = _problem()
    w = weight.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_loss(prior, x, maps, y, noise, w, **kw), w)
    v = torch.randn(weight.shape, generator=g, dtype=torch.float64)
    eps = 1e-5
    fd = (_loss(prior, x, maps, y, noise, weight + eps * v, **kw)
          - _loss(prior, x, maps, y, noise, weight - eps * v, **kw)) / (2 * eps)
    assert float(grad.abs().max()) > 0
    assert torch.allclose((grad * v).sum(), fd, rtol=1e-5, atol=1e-8)


def test_one_level_is_dds_data_consistency_of_the_denoised_start():
    prior, x, maps, y, noise, weight, _ = _problem(seed=1)
    mask = (weight > 0.5).double()
    out = dds_unrolled_estimate(prior, y, maps, mask, noise, steps=1, sigma_start=0.7, dc_weight=0.05, cg_iters=4)
    op = MultiCoilOperator(maps, mask)
    start = 0.7 * noise + to_channels(op.adjoint(y))
    denoised = prior(start, torch.tensor([0.7], dtype=torch.float64))
    want = to_channels(data_consistency(op, mask * y, to_complex(denoised), 0.05, 4))
    assert torch.allclose(out, want, atol=1e-10)
    # the weighted operator is DDS's masked operator for a 0/1 mask
    wop = WeightedOperator(maps, mask)
    v = to_complex(noise)
    assert torch.allclose(wop.normal(v), op.normal(v), atol=1e-10)


def test_ladder_is_decreasing_from_the_start_to_sigma_min():
    t = recon_ladder(6, 2.0)
    assert t.shape == (6,) and float(t[0]) == pytest.approx(2.0) and float(t[-1]) == pytest.approx(0.002)
    assert bool((t[1:] < t[:-1]).all())


def test_linear_form_gives_unsampled_lines_a_gradient_and_paper_form_does_not():
    prior, x, maps, y, noise, weight, g = _problem(seed=2)
    drawn = (weight > 0.5).double()
    assert 0 < float(drawn.sum()) < 8
    grads = {}
    for form in ("linear", "paper"):
        cfg = ObjectiveConfig(objective="dds", mask_form=form, recon_steps=2).validate()
        m = drawn.clone().requires_grad_(True)
        loss = (estimate(prior, to_channels(x), maps, m, cfg, torch.ones(1), noise) - to_channels(x)).pow(2).sum()
        (grads[form],) = torch.autograd.grad(loss, m)
    unsampled = drawn < 0.5
    assert float(grads["linear"][unsampled].abs().min()) > 0
    assert float(grads["paper"][unsampled].abs().max()) == 0.0


def test_the_objective_never_starts_from_the_truth():
    """The estimate uses only the sampled k-space: replacing every unsampled entry of the data by
    another image's gives the same reconstruction (a start from the truth would not)."""
    prior, x, maps, y, noise, weight, g = _problem(seed=3)
    mask = torch.zeros(1, 1, 1, 8, dtype=torch.float64)
    mask[..., 2:6] = 1
    other = x + to_complex(torch.randn(1, 2, 8, 8, generator=g, dtype=torch.float64))
    cfg = ObjectiveConfig(objective="dds", mask_form="linear", recon_steps=2).validate()
    a = estimate(prior, to_channels(x), maps, mask, cfg, torch.ones(1), noise)
    y_other = MultiCoilOperator(maps)(other)
    y_mixed = mask * MultiCoilOperator(maps)(x) + (1 - mask) * y_other
    b = dds_unrolled_estimate(prior, y_mixed, maps, mask, noise, steps=2)
    assert torch.allclose(a, b, atol=1e-10)
