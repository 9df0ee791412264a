"""Any matrix size in the denoiser: EDMPrecond reflect-pads to the UNet's multiple and crops back."""

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from fastmri_diffmask.prior.edm import EDMPrecond, edm_coefficients
from fastmri_diffmask.prior.padding import crop_padding, pad_to_multiple, padding_for
from fastmri_diffmask.prior.unet import UNet
from fastmri_diffmask.prior.weights import load_prior

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import write_multicoil_volume  # noqa: E402

SIGMA = torch.tensor([0.3, 2.0])


@pytest.fixture(scope="module")
def prior():
    torch.set_num_threads(1)
    return load_prior("default", device="cpu")


@pytest.fixture(scope="module")
def random_prior():
    """A 3-level UNet (multiple 4) with random, non-zero weights everywhere: the shipped init
    zeroes the output conv, which would make any padding look exact."""
    torch.manual_seed(0)
    p = EDMPrecond(UNet(channels=(8, 16, 16), blocks_per_level=1)).eval().requires_grad_(False)
    for t in p.parameters():
        t.copy_(0.2 * torch.randn_like(t))
    return p


def _x(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_padding_reaches_the_multiple_with_less_than_one_multiple():
    for h, w, m in [(640, 396, 16), (640, 372, 16), (127, 120, 8), (5, 3, 8), (64, 48, 8)]:
        left, right, top, bottom = padding_for(h, w, m)
        assert (h + top + bottom) % m == 0 and (w + left + right) % m == 0
        assert 0 <= top <= bottom <= top + 1 and 0 <= left <= right <= left + 1 and top + bottom < m
    x = _x(1, 2, 5, 3)  # smaller than the pad: replicate instead of reflect, and crop back exactly
    xp, pad = pad_to_multiple(x, 8)
    assert xp.shape[-2:] == (8, 8) and torch.equal(crop_padding(xp, pad), x)


def test_odd_size_runs_and_keeps_the_input_shape(prior):
    x = _x(2, 2, 127, 120)
    with pytest.raises(RuntimeError):  # the bare backbone cannot take it: the wrapper must pad
        prior.backbone(x, torch.zeros(2))
    with torch.no_grad():
        out = prior(x, SIGMA)
    assert out.shape == x.shape and torch.isfinite(out).all()
    # it denoises: a clean-ish image plus noise comes back closer to the image than the input
    clean = F.avg_pool2d(_x(2, 2, 128, 120, seed=3), 9, stride=1, padding=4)[:, :, :127] * 3
    noisy = clean + 0.3 * _x(2, 2, 127, 120, seed=4)
    with torch.no_grad():
        den = prior(noisy, torch.full((2,), 0.3))
    assert (den - clean).pow(2).mean() < 0.7 * (noisy - clean).pow(2).mean()


def test_multiple_size_is_bit_identical_to_the_unpadded_network(prior, random_prior):
    for p in (prior, random_prior):
        x = _x(2, 2, 64, 48)
        c_skip, c_out, c_in, c_noise = (c.view(-1, 1, 1, 1) for c in edm_coefficients(SIGMA))
        with torch.no_grad():
            by_hand = c_skip * x + c_out * p.backbone(c_in * x, c_noise.flatten())
            assert torch.equal(p(x, SIGMA), by_hand)


@pytest.mark.parametrize("shape", [(2, 2, 127, 120), (2, 2, 33, 30)])
def test_odd_size_equals_reflect_pad_by_hand_then_network_then_crop(random_prior, prior, shape):
    for p in (random_prior, prior):
        m = p.backbone.size_multiple
        h, w = shape[-2:]
        ph, pw = -h % m, -w % m
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
        x = _x(*shape)
        with torch.no_grad():
            got = p(x, SIGMA)
            by_hand = p(F.pad(x, pad, mode="reflect"), SIGMA)[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]
            zeros = p(F.pad(x, pad), SIGMA)[..., pad[2]:pad[2] + h, pad[0]:pad[0] + w]
        assert got.shape == x.shape
        torch.testing.assert_close(got, by_hand, rtol=0, atol=1e-6)
        assert (got - zeros).abs().max() > 1e-4  # the mode matters, and it is reflect


def test_gradients_flow_through_the_padding(random_prior):
    x = _x(1, 2, 30, 29).requires_grad_(True)
    random_prior(x, torch.tensor([1.0])).pow(2).sum().backward()
    assert x.grad.shape == x.shape and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_check_prior_accepts_an_odd_size_for_a_size_agnostic_prior(prior):
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.api import _check_prior
    from fastmri_diffmask.prior.gaussian import GaussianPrior

    _check_prior(prior, 127, 120)  # does not raise
    gauss = GaussianPrior.fit(torch.randn(4, 16, 16, dtype=torch.complex64))
    with pytest.raises(UserError, match="prior is for"):
        _check_prior(gauss, 16, 15)  # a size-bound prior is still refused at another size


def test_recon_dds_on_a_127_column_file(tmp_path):
    from fastmri_diffmask.cli.main import main

    write_multicoil_volume(tmp_path / "data" / "test" / "odd.h5", num_slices=2, coils=4, height=40, width=127,
                           recon=(40, 127), sens_maps=True)
    out = tmp_path / "out"
    rc = main(["recon", "--data", str(tmp_path / "data"), "--split", "test", "--mask-type", "equispaced_fraction",
               "--acceleration", "4", "--method", "dds", "--steps", "4", "--sens-maps", "file", "--out", str(out),
               "--device", "cpu"])
    assert rc == 0
    with h5py.File(out / "reconstructions" / "odd.h5") as f:
        rec = f["reconstruction"][()]
        assert rec.shape == (2, 40, 127) and f["mask"].shape[-1] == 127
    assert np.isfinite(rec).all() and rec.max() > 0
    mean = json.loads((out / "metrics.json").read_text())["mean"]
    assert np.isfinite(mean["psnr"]) and mean["psnr"] > 15, mean


def test_train_prior_at_an_odd_size_and_load_it(tmp_path):
    from fastmri_diffmask.prior.train import TrainConfig, train_prior

    imgs = torch.randn(4, 15, 22, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    card = train_prior(imgs, tmp_path / "odd.safetensors", TrainConfig(steps=2, batch=2, preset="small"),
                       device="cpu", progress=False)
    assert card["image_size"] == [15, 22] and np.isfinite(card["final_loss"])
    loaded = load_prior(tmp_path / "odd.safetensors", device="cpu")
    with torch.no_grad():
        assert loaded(_x(1, 2, 15, 22), torch.tensor([1.0])).shape == (1, 2, 15, 22)
