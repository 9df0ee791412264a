"""Augmentation, validation loss and fine-tuning of the prior trainer (issue 14)."""

import csv
import math

import pytest
import torch

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.prior.augment import AugmentConfig, augment, rescale, rotate_phase, similarity_transform
from fastmri_diffmask.prior.train import TrainConfig, _augment, train_prior, validation_loss
from fastmri_diffmask.prior.weights import load_prior


def _blobs(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        cx, cy = (torch.rand(2, generator=g) - 0.5) * 0.4
        mag = ((xx - cx) ** 2 + (yy - cy) ** 2 < 0.3).float() + 0.2 * torch.rand(size, size, generator=g)
        out.append(mag * torch.exp(1j * 0.5 * xx))
    return torch.stack(out).to(torch.complex64)


def _channels(z):
    return torch.stack([z.real, z.imag], 1)


def test_basic_mode_flips_and_rotates_phase_as_its_flags_say():
    x = _channels(_blobs())
    a = _augment(x, torch.Generator().manual_seed(3), TrainConfig())
    mag, mag_a = x.norm(dim=1), a.norm(dim=1)
    for m, ma in zip(mag, mag_a):  # a global phase keeps magnitudes: each image is x or its mirror
        assert torch.allclose(ma, m, atol=1e-5) or torch.allclose(ma, m.flip(-1), atol=1e-5)
    no_flip = _augment(x, torch.Generator().manual_seed(3), TrainConfig(flip_augment=False))
    assert torch.allclose(no_flip.norm(dim=1), mag, atol=1e-5) and not torch.allclose(no_flip, x, atol=1e-3)
    assert torch.equal(_augment(x, torch.Generator(), TrainConfig(flip_augment=False, phase_augment=False)), x)


def test_identity_transform_is_exact_and_quarter_turn_is_rot90():
    x = _channels(_blobs(2))
    zero = torch.zeros(2)
    same = similarity_transform(x, zero, torch.ones(2), torch.zeros(2, 2))
    assert torch.allclose(same, x, atol=1e-6)
    turned = similarity_transform(x, torch.full((2,), 90.0), torch.ones(2), torch.zeros(2, 2))
    assert min((turned - torch.rot90(x, k, dims=(-2, -1))).abs().max() for k in (1, -1)) < 1e-5


def test_shift_moves_content_and_zoom_shrinks_support():
    x = torch.zeros(1, 2, 16, 16)
    x[:, 0, 6:10, 6:10] = 1.0
    moved = similarity_transform(x, torch.zeros(1), torch.ones(1), torch.tensor([[0.25, 0.0]]))
    assert torch.allclose(moved, torch.roll(x, 4, dims=-1), atol=1e-6)  # 1/4 of 16 columns
    small = similarity_transform(x, torch.zeros(1), torch.full((1,), 0.5), torch.zeros(1, 2))
    assert math.isclose(float(small[:, 0].sum()), float(x[:, 0].sum()) / 4, rel_tol=1e-5)


def test_full_mode_is_seeded_rescaled_and_changes_images():
    x = _channels(_blobs(6))
    cfg = AugmentConfig(mode="full", p=1.0)
    a = augment(x, torch.Generator().manual_seed(1), cfg)
    b = augment(x, torch.Generator().manual_seed(1), cfg)
    c = augment(x, torch.Generator().manual_seed(2), cfg)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    q = torch.quantile(a.norm(dim=1).flatten(1), 0.99, dim=1)
    assert torch.allclose(q, torch.ones(6), atol=1e-4)
    assert (a.norm(dim=1) - rescale(x).norm(dim=1)).abs().max() > 0.1


def test_phase_only_changes_keep_magnitude():
    x = _channels(_blobs(3))
    theta = torch.randn(3, 16, 16)
    assert torch.allclose(rotate_phase(x, theta).norm(dim=1), x.norm(dim=1), atol=1e-5)


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment(_channels(_blobs(1)), torch.Generator(), AugmentConfig(mode="wild"))
    with pytest.raises(UserError, match="--augment"):
        train_prior(_blobs(2), "unused.safetensors", TrainConfig(steps=1, augment="wild"), progress=False)


def test_validation_loss_is_deterministic_and_best_weights_kept(tmp_path):
    imgs, val = _blobs(8), _blobs(3, seed=9)
    cfg = TrainConfig(steps=6, batch=2, lr=2e-3, warmup=1, preset="tiny", checkpoint_every=2, log_every=2,
                      augment="full")
    card = train_prior(imgs, tmp_path / "p.safetensors", cfg, progress=False, val_images=val)
    from fastmri_diffmask.prior.train import scaled_training_images

    v = [scaled_training_images(val)]
    assert validation_loss(card["_ema"], v) == validation_loss(card["_ema"], v)
    with open(tmp_path / "p.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["val_loss"]]
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    losses = [float(r["val_loss"]) for r in rows]
    assert card["best_val_loss"] == pytest.approx(min(losses)) and card["val_loss"] == pytest.approx(losses[-1])
    best = load_prior(tmp_path / "p.best.safetensors", device="cpu")
    assert validation_loss(best, v) == pytest.approx(min(losses), rel=1e-5)


def test_init_starts_from_given_weights_and_checks_architecture(tmp_path):
    imgs = _blobs(4)
    base = TrainConfig(steps=3, batch=2, lr=2e-3, warmup=1, preset="tiny", checkpoint_every=3)
    train_prior(imgs, tmp_path / "a.safetensors", base, progress=False)
    tuned = TrainConfig(**{**base.__dict__, "lr": 1e-12, "steps": 1, "init": str(tmp_path / "a.safetensors")})
    card = train_prior(imgs, tmp_path / "b.safetensors", tuned, progress=False)
    init = load_prior(tmp_path / "a.safetensors", device="cpu").state_dict()
    new = card["_ema"].state_dict()
    assert max(float((init[k] - new[k]).abs().max()) for k in init) < 1e-8
    wrong = TrainConfig(**{**tuned.__dict__, "preset": "small"})
    with pytest.raises(UserError, match="--init"):
        train_prior(imgs, tmp_path / "c.safetensors", wrong, progress=False)


def test_train_prior_cli_refuses_a_missing_init_before_reading_data(tmp_path, capsys):
    from fastmri_diffmask.cli.main import main

    out = tmp_path / "p.safetensors"
    rc = main(["train-prior", "--data", str(tmp_path / "no_data"), "--out", str(out), "--init",
               str(tmp_path / "nope.safetensors"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--init: unknown prior" in err
    assert not out.exists()
