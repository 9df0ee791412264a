import json
import math

import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.prior.edm import EDMPrecond, edm_coefficients
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.shards import read_metadata, read_tensors, split_file
from fastmri_diffmask.prior.train import TrainConfig, export_checkpoint, train_prior
from fastmri_diffmask.prior.unet import UNet
from fastmri_diffmask.prior.weights import load_prior, save_prior

TINY = dict(channels=(8, 16), blocks_per_level=1)


def _images(n=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    blobs = []
    for _ in range(n):
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([0.6, 0.6, 0.3]) + torch.tensor([-0.3, -0.3, 0.3]))
        mag = ((xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2).float() + 0.3 * ((xx ** 2 + yy ** 2) < 0.8).float()
        blobs.append(mag * torch.exp(1j * 0.5 * xx))
    return torch.stack(blobs).to(torch.complex64)


def test_edm_coefficients_match_formulas():
    sigma, sd = torch.tensor([0.01, 0.5, 3.0, 80.0]), 0.5
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    for i, s in enumerate(sigma.tolist()):
        assert math.isclose(c_skip[i], sd ** 2 / (s ** 2 + sd ** 2), rel_tol=1e-6)
        assert math.isclose(c_out[i], s * sd / math.sqrt(s ** 2 + sd ** 2), rel_tol=1e-6)
        assert math.isclose(c_in[i], 1 / math.sqrt(s ** 2 + sd ** 2), rel_tol=1e-6)
        assert math.isclose(c_noise[i], math.log(s) / 4, rel_tol=1e-6, abs_tol=1e-7)


def test_precond_wrapper_uses_backbone_as_edm_says():
    class Probe(torch.nn.Module):
        def forward(self, x, c_noise):
            self.seen = (x.clone(), c_noise.clone())
            return torch.ones_like(x)

    probe = Probe()
    d = EDMPrecond(probe)
    x, sigma = torch.full((2, 2, 4, 4), 3.0), torch.tensor([0.2, 2.0])
    out = d(x, sigma)
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma)
    assert torch.allclose(probe.seen[0], c_in.view(-1, 1, 1, 1) * x)
    assert torch.allclose(probe.seen[1], c_noise)
    assert torch.allclose(out, c_skip.view(-1, 1, 1, 1) * x + c_out.view(-1, 1, 1, 1))


def test_gaussian_prior_is_exact_posterior_mean_dense():
    """D equals Sigma (Sigma + s^2 I)^-1 (x - mu) + mu computed by dense linear algebra."""
    imgs = _images(n=12, size=8)
    prior = GaussianPrior.fit(imgs)
    n = 8 * 8
    eye = torch.eye(n, dtype=torch.complex128)
    from fastmri_diffmask.physics import fft2c

    f = torch.stack([fft2c(eye[i].view(8, 8).to(torch.complex64)).flatten() for i in range(n)], 1).to(torch.complex128)
    cov = f.conj().T @ torch.diag(prior.variance.flatten().to(torch.complex128)) @ f  # per real part
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 8, 8, generator=g)
    for sigma in (0.05, 0.7):
        z = torch.complex(x[0, 0].double(), x[0, 1].double()).flatten()
        mu = prior.mean.flatten().to(torch.complex128)
        ref = mu + cov @ torch.linalg.solve(cov + sigma ** 2 * torch.eye(n, dtype=torch.complex128), z - mu)
        out = prior(x, torch.tensor([sigma]))
        got = torch.complex(out[0, 0], out[0, 1]).flatten().to(torch.complex128)
        assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()


def test_training_lowers_loss_and_resume_is_exact(tmp_path):
    imgs = _images(n=8, size=16)
    cfg = TrainConfig(steps=30, batch=4, lr=2e-3, warmup=2, preset="tiny", checkpoint_every=10, log_every=5)
    full = train_prior(imgs, tmp_path / "full.safetensors", cfg, progress=False)
    log = full["final_loss"]
    csv_rows = (tmp_path / "full.csv").read_text().splitlines()
    first = float(csv_rows[1].split(",")[1])
    assert log < first, (first, log)
    # interrupted run: 20 steps, then resume to 30
    part_cfg = TrainConfig(**{**cfg.__dict__, "steps": 20})
    train_prior(imgs, tmp_path / "part.safetensors", part_cfg, progress=False)
    resumed = train_prior(imgs, tmp_path / "part.safetensors", cfg, resume=True, progress=False)
    a, b = full["_ema"].state_dict(), resumed["_ema"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_lr_schedule_endpoints_and_resumed_decay():
    """Warm-up, then cosine from lr at ``lr_decay_start`` to 0 after the last step, monotone."""
    from fastmri_diffmask.prior.train import learning_rate

    cfg = TrainConfig(steps=100, lr=1e-3, warmup=10, lr_schedule="cosine", lr_decay_start=40)
    lrs = [learning_rate(s, cfg) for s in range(cfg.steps)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warm-up
    assert lrs[39] == pytest.approx(1e-3)                                   # constant until the decay starts
    assert lrs[69] == pytest.approx(0.5e-3)                                 # half-way: cos(pi/2)
    assert lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(b <= a for a, b in zip(lrs[10:], lrs[11:]))
    const = TrainConfig(steps=100, lr=1e-3, warmup=10)
    assert learning_rate(99, const) == pytest.approx(1e-3)


def test_resume_with_decay_matches_uninterrupted_decay(tmp_path):
    """A run resumed with a cosine decay from its checkpoint step ends where one uninterrupted run
    with the same schedule ends (the schedule is a function of the step only)."""
    imgs = _images(n=8, size=16)
    cfg = TrainConfig(steps=12, batch=4, lr=2e-3, warmup=2, preset="tiny", checkpoint_every=6, log_every=3,
                      lr_schedule="cosine", lr_decay_start=6)
    full = train_prior(imgs, tmp_path / "full.safetensors", cfg, progress=False)
    train_prior(imgs, tmp_path / "part.safetensors", TrainConfig(**{**cfg.__dict__, "steps": 6, "lr_schedule": "constant"}),
                progress=False)
    resumed = train_prior(imgs, tmp_path / "part.safetensors", cfg, resume=True, progress=False)
    a, b = full["_ema"].state_dict(), resumed["_ema"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(UserError, match="lr-schedule"):
        train_prior(imgs, tmp_path / "bad.safetensors", TrainConfig(steps=2, preset="tiny", lr_schedule="step"),
                    progress=False)


def test_resume_from_committed_shards_is_exact(tmp_path):
    """A checkpoint split into shards (the form committed to git) resumes to the same weights."""
    imgs = _images(n=8, size=16)
    cfg = TrainConfig(steps=12, batch=4, lr=2e-3, warmup=2, preset="tiny", checkpoint_every=6, log_every=3)
    full = train_prior(imgs, tmp_path / "full.safetensors", cfg, progress=False)
    train_prior(imgs, tmp_path / "part.safetensors", TrainConfig(**{**cfg.__dict__, "steps": 6}), progress=False)
    ckpt = tmp_path / "part.ckpt.safetensors"
    whole, meta = read_tensors(ckpt)
    max_bytes = 20_000
    index = split_file(ckpt, tmp_path / "git", max_bytes=max_bytes)
    shard_files = sorted((tmp_path / "git").glob("part.ckpt-*-of-*.safetensors"))
    assert len(shard_files) >= 2 and index == tmp_path / "git" / "part.ckpt.safetensors.index.json"
    biggest = max(v.numel() * v.element_size() for v in whole.values())
    for f in shard_files:  # each shard holds at most max_bytes of tensors, unless one tensor alone is bigger
        part, _ = read_tensors(f)
        assert sum(v.numel() * v.element_size() for v in part.values()) <= max(max_bytes, biggest)
    # re-splitting into fewer shards leaves no stale shard of the earlier split behind
    split_file(ckpt, tmp_path / "again", max_bytes=max_bytes)
    split_file(ckpt, tmp_path / "again", max_bytes=10 ** 9)
    assert [f.name for f in (tmp_path / "again").glob("*.safetensors")] == ["part.ckpt-00001-of-00001.safetensors"]
    again, meta2 = read_tensors(tmp_path / "git" / "part.ckpt.safetensors")
    assert read_metadata(tmp_path / "git" / "part.ckpt.safetensors") == meta == read_metadata(ckpt)
    assert meta2 == meta and again.keys() == whole.keys() and all(torch.equal(again[k], whole[k]) for k in whole)
    # resume from the shards alone
    resumed = train_prior(imgs, tmp_path / "git" / "part.safetensors", cfg, resume=True, progress=False)
    a, b = full["_ema"].state_dict(), resumed["_ema"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a missing shard is one clear error
    shard_files[0].unlink()
    (tmp_path / "git" / "part.ckpt.safetensors").unlink()
    with pytest.raises(UserError, match="missing"):
        read_tensors(tmp_path / "git" / "part.ckpt.safetensors")


def test_save_load_round_trip_and_errors(tmp_path):
    model = EDMPrecond(UNet(**TINY)).eval()
    cfg = {"kind": "edm-unet", "unet": model.backbone.config, "sigma_data": 0.5}
    path = save_prior(tmp_path / "p.safetensors", model, cfg)
    loaded = load_prior(path, device="cpu")
    x, s = torch.randn(2, 2, 16, 16), torch.tensor([0.3, 1.0])
    assert torch.equal(loaded(x, s), model(x, s))
    assert len(loaded.sha256) == 64
    # wrong architecture: config says wider channels than the weights
    bad = dict(cfg, unet=dict(cfg["unet"], channels=[8, 32]))
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "bad.safetensors"),
              metadata={"fastmri_diffmask_prior": json.dumps(bad)})
    with pytest.raises(UserError, match="do not fit"):
        load_prior(tmp_path / "bad.safetensors")
    with pytest.raises(UserError, match="unknown prior"):
        load_prior("no-such-prior")


def test_pickle_refused(tmp_path):
    torch.save(UNet(**TINY), tmp_path / "model.pt")  # a pickled module, not plain weights
    with pytest.raises(UserError, match="refusing to unpickle"):
        load_prior(tmp_path / "model.pt")
    model = EDMPrecond(UNet(**TINY))
    torch.save({"config": {"kind": "edm-unet", "unet": model.backbone.config}, "state_dict": model.state_dict()},
               tmp_path / "ok.pt")
    assert isinstance(load_prior(tmp_path / "ok.pt", device="cpu"), EDMPrecond)


def test_gaussian_prior_save_load(tmp_path):
    prior = GaussianPrior.fit(_images(n=5, size=8))
    path = save_prior(tmp_path / "g.safetensors", prior, prior.config)
    loaded = load_prior(path, device="cpu")
    x = torch.randn(1, 2, 8, 8)
    assert torch.allclose(loaded(x, torch.tensor([0.4])), prior(x, torch.tensor([0.4])))


def test_export_checkpoint_loads(tmp_path):
    imgs = _images(n=4, size=16)
    train_prior(imgs, tmp_path / "t.safetensors", TrainConfig(steps=2, batch=2, preset="tiny", checkpoint_every=1), progress=False)
    out = export_checkpoint(tmp_path / "t.ckpt.safetensors", tmp_path / "exported.safetensors")
    assert load_prior(out, device="cpu").config["steps"] == 2


def test_train_prior_cli_spreads_num_train_and_refuses_zero(tmp_path, capsys, monkeypatch):
    """``train-prior --num-train N`` trains on N slices spread over the split (the first, middle
    and last of 9 here: the images it saw are checked through a recorded call), writes loadable
    weights; ``--num-train 0`` is one line, exit 2, no file."""
    import numpy as np

    import fastmri_diffmask.prior.train as train_mod
    from fastmri_diffmask.cli.main import main
    from fastmri_diffmask.physics import fft2c
    from fastmri_diffmask.simulate import write_volume

    n = 9
    img = torch.complex(torch.arange(n, dtype=torch.float32).view(n, 1, 1).expand(n, 16, 16).clone(),
                        torch.zeros(n, 16, 16)) + 1.0  # slice i has the constant value i + 1
    vol = {"kspace": fft2c(img[:, None]).numpy().astype(np.complex64),
           "reconstruction_rss": img.abs().numpy().astype(np.float32),
           "sens_maps": np.ones((n, 1, 16, 16), np.complex64), "image": img.numpy(), "noise_std": 0.0}
    write_volume(tmp_path / "data" / "train" / "v.h5", vol)
    seen = {}
    real = train_mod.train_prior

    def spy(images, *args, **kwargs):
        seen["values"] = sorted(round(float(v)) for v in images.abs().mean((1, 2)))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train_prior", spy)
    out = tmp_path / "p.safetensors"
    args = ["train-prior", "--data", str(tmp_path / "data"), "--out", str(out), "--steps", "2", "--batch", "2",
            "--size-preset", "tiny", "--device", "cpu"]
    assert main(args + ["--num-train", "3"]) == 0
    assert seen["values"] == [2, 5, 8] and load_prior(str(out), device="cpu") is not None
    bad = tmp_path / "bad.safetensors"
    capsys.readouterr()
    assert main(args[:4] + [str(bad)] + args[5:] + ["--num-train", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--num-train" in err and not bad.exists()
