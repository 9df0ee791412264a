import numpy as np
import torch
import fastmri

from fastmri_diffmask.physics import MultiCoilOperator, combine_coils, fft2c, ifft2c, percentile_scale, rss, to_channels, to_complex


def _rand(shape, g):
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def test_fft_matches_fastmri_convention():
    g = torch.Generator().manual_seed(0)
    x = _rand((3, 16, 12), g)
    ref = torch.view_as_complex(fastmri.fft2c(torch.view_as_real(x)).contiguous())
    assert torch.allclose(fft2c(x), ref, atol=1e-5)
    assert torch.allclose(ifft2c(fft2c(x)), x, atol=1e-5)


def test_operator_adjoint_dot_product():
    g = torch.Generator().manual_seed(1)
    b, c, h, w = 2, 4, 16, 20
    maps = _rand((b, c, h, w), g)
    for mask in (None, (torch.rand(b, 1, 1, w, generator=g) > 0.5).float(), torch.rand(b, 1, h, w, generator=g)):
        op = MultiCoilOperator(maps, mask)
        x, y = _rand((b, h, w), g), _rand((b, c, h, w), g)
        lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
        rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
        assert torch.allclose(lhs, rhs, rtol=1e-4), (lhs, rhs)


def test_normalised_maps_recover_image_and_rss():
    g = torch.Generator().manual_seed(2)
    maps = _rand((1, 5, 8, 8), g)
    maps = maps / rss(maps, dim=1).unsqueeze(1)
    x = _rand((1, 8, 8), g)
    coil_images = ifft2c(MultiCoilOperator(maps).forward(x))
    assert torch.allclose(combine_coils(coil_images, maps), x, atol=1e-5)
    assert torch.allclose(rss(coil_images, dim=1), x.abs(), atol=1e-5)


def test_channels_round_trip_and_percentile_scale():
    g = torch.Generator().manual_seed(3)
    x = _rand((2, 6, 7), g)
    assert torch.equal(to_complex(to_channels(x)), x)
    s = percentile_scale(x)
    assert s.shape == (2, 1, 1)
    assert np.isclose(float(s[0]), np.quantile(x[0].abs().numpy(), 0.99), rtol=1e-5)


def test_uncentred_operator_is_the_shifted_centred_operator_odd_sizes_too():
    from fastmri_diffmask.physics import reshift, unshift
    g = torch.Generator().manual_seed(4)
    for h, w in ((16, 20), (15, 21), (7, 8)):
        maps = _rand((2, 3, h, w), g)
        for mask in (None, (torch.rand(2, 1, 1, w, generator=g) > 0.5).float(),
                     torch.rand(2, 1, h, w, generator=g), (torch.rand(w, generator=g) > 0.5).float()):
            op = MultiCoilOperator(maps, mask)
            shifted = op.uncentred()
            x, k = _rand((2, h, w), g), _rand((2, 3, h, w), g)
            assert torch.allclose(reshift(shifted.forward(unshift(x))), op.forward(x), atol=1e-5)
            assert torch.allclose(reshift(shifted.adjoint(unshift(k))), op.adjoint(k), atol=1e-5)
            assert torch.allclose(reshift(shifted.normal(unshift(x))), op.normal(x), atol=1e-5)
            assert torch.equal(reshift(unshift(x)), x)


def test_normal_is_adjoint_of_forward_and_its_mask_gradient_is_the_two_pass_one():
    # normal() applies mask^2 once and the cached conjugate maps; it must equal adjoint(forward(x))
    # in value and in its gradient w.r.t. a relaxed mask (the mask learners differentiate it).
    g = torch.Generator().manual_seed(5)
    maps = _rand((2, 3, 12, 10), g)
    x = _rand((2, 12, 10), g)
    for mask in (None, torch.rand(2, 1, 1, 10, generator=g), torch.rand(12, 10, generator=g)):
        for centred in (True, False):
            if mask is None:
                op = MultiCoilOperator(maps, None, centred=centred)
                assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)), atol=1e-5)
                continue
            m1, m2 = mask.clone().requires_grad_(), mask.clone().requires_grad_()
            one, two = MultiCoilOperator(maps, m1, centred=centred), MultiCoilOperator(maps, m2, centred=centred)
            a, b = one.normal(x), two.adjoint(two.forward(x))
            assert torch.allclose(a, b, atol=1e-5)
            assert torch.allclose(one.normal(x), a)  # the cached conjugate gives the same again
            w = _rand(a.shape, g)
            g1 = torch.autograd.grad((w.conj() * one.normal(x)).real.sum(), m1)[0]
            g2 = torch.autograd.grad((w.conj() * b).real.sum(), m2)[0]
            assert torch.allclose(g1, g2, atol=1e-4), (g1 - g2).abs().max()
