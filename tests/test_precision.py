"""The bfloat16 backbone (prior/edm.py ``precision``; prior/weights.py ``set_precision``): the
shipped prior's output and input gradient stay close to float32, the wrapper hands float32 back,
bad values are refused in one line, and every entry point (recon, compare, learn-mask,
DiffusionPosteriorModel) carries the setting."""

import json

import h5py
import numpy as np
import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.prior.edm import EDMPrecond
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.unet import UNet
from fastmri_diffmask.prior.weights import load_prior, set_precision

from fastmri_files import write_multicoil_volume


def _image(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    head = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1).float()
    return torch.stack([head * 0.6, head * 0.1]).unsqueeze(0) + 0.3 * torch.randn(1, 2, size, size, generator=g)


def test_bfloat16_denoiser_is_close_to_float32_and_returns_float32():
    prior = load_prior("default", device="cpu")
    x, sigma = _image(), torch.tensor([0.3])
    with torch.no_grad():
        want = prior(x, sigma)
        set_precision(prior, "bfloat16")
        got = prior(x, sigma)
    assert got.dtype == torch.float32 and prior.precision == "bfloat16"
    rel = float((got - want).norm() / want.norm())
    assert 0 < rel < 1e-2, rel  # not bit-identical (it did run in bfloat16) but close


def test_bfloat16_input_gradient_agrees_with_float32():
    # DPS backpropagates through the denoiser: the bfloat16 gradient must point the same way.
    prior = load_prior("default", device="cpu")
    grads = {}
    for precision in ("float32", "bfloat16"):
        prior.precision = precision
        x = _image(1).requires_grad_(True)
        (prior(x, torch.tensor([0.5])) ** 2).sum().backward()
        grads[precision] = x.grad.flatten()
    cos = float(torch.nn.functional.cosine_similarity(grads["float32"], grads["bfloat16"], dim=0))
    assert cos > 0.99, cos


def test_precision_values_are_checked():
    net = EDMPrecond(UNet(channels=(8, 16)))
    with pytest.raises(ValueError, match="precision must be one of"):
        net.precision = "float16"
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        load_prior("default", precision="fp8")
    gauss = GaussianPrior(torch.zeros(4, 4), torch.ones(4, 4))
    assert set_precision(gauss, "float32") is gauss  # an analytic prior: float32 is a no-op ...
    with pytest.raises(UserError, match="applies to network priors"):
        set_precision(gauss, "bfloat16")  # ... and bfloat16 has nothing to apply to


def test_recon_cli_precision_flag(tmp_path):
    from fastmri_diffmask.cli.main import main

    write_multicoil_volume(tmp_path / "data" / "test" / "v.h5", num_slices=1, coils=4, height=48, width=48,
                           recon=(48, 48), sens_maps=True)
    psnr = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / precision
        rc = main(["recon", "--data", str(tmp_path / "data"), "--split", "test", "--mask-type", "equispaced_fraction",
                   "--acceleration", "4", "--method", "dds", "--steps", "4", "--sens-maps", "file", "--out", str(out),
                   "--device", "cpu", "--precision", precision])
        assert rc == 0
        psnr[precision] = json.loads((out / "metrics.json").read_text())["mean"]["psnr"]
        with h5py.File(out / "reconstructions" / "v.h5") as f:
            assert np.isfinite(f["reconstruction"][()]).all()
    assert abs(psnr["bfloat16"] - psnr["float32"]) < 0.1, psnr
    with pytest.raises(SystemExit) as e:  # argparse: exit 2, one line
        main(["recon", "--data", str(tmp_path / "data"), "--mask-type", "equispaced_fraction", "--acceleration", "4",
              "--method", "dds", "--out", str(tmp_path / "x"), "--precision", "half"])
    assert e.value.code == 2 and not (tmp_path / "x").exists()


def test_model_compare_and_learn_options_carry_precision(tmp_path):
    from fastmri_diffmask.compare.config import parse_config
    from fastmri_diffmask.compare.engine import all_cells, cell_settings
    from fastmri_diffmask.learn.api import LearnMaskOptions, check_inputs
    from fastmri_diffmask.sample.model import DiffusionPosteriorModel

    model = DiffusionPosteriorModel("default", sampler="dds", device="cpu", precision="bfloat16")
    assert model.prior.precision == "bfloat16"
    assert DiffusionPosteriorModel("default", sampler="dds", device="cpu").prior.precision == "float32"
    with pytest.raises(UserError, match="unknown precision"):
        DiffusionPosteriorModel("default", sampler="dds", precision="int8")

    raw = dict(data=str(tmp_path), masks=[{"name": "eq", "type": "equispaced_fraction"}], methods=["dds", "bart-l1"])
    cfg = parse_config({**raw, "precision": "bfloat16"}, base=tmp_path, where="cfg")
    settings = {c.method.name: cell_settings(cfg, c, "sha") for c in all_cells(cfg)}
    assert settings["dds"]["precision"] == "bfloat16" and "precision" not in settings["bart-l1"]
    plain = parse_config(raw, base=tmp_path, where="cfg")
    assert "precision" not in cell_settings(plain, all_cells(plain)[0], "sha")  # old float32 cells still resume
    with pytest.raises(UserError, match="precision must be one of float32, bfloat16"):
        parse_config({**raw, "precision": "fp16"}, base=tmp_path, where="cfg")

    with pytest.raises(UserError, match="--precision must be one of auto, float32, bfloat16"):
        check_inputs(LearnMaskOptions(precision="half"), tmp_path / "m.safetensors", 4.0, "line")


def test_auto_precision_follows_the_hardware_and_the_prior():
    from fastmri_diffmask.prior.weights import has_bfloat16_units, resolve_precision

    prior = load_prior("default", device="cpu")
    want = "bfloat16" if has_bfloat16_units("cpu") else "float32"
    assert resolve_precision("auto", prior) == want
    assert resolve_precision("auto", GaussianPrior(torch.zeros(4, 4), torch.ones(4, 4))) == "float32"  # no network
    assert resolve_precision("float32", prior) == "float32" and resolve_precision("bfloat16", prior) == "bfloat16"
    with pytest.raises(UserError, match="unknown precision"):
        resolve_precision("half", prior)
