"""A folder with several matrix sizes (fastMRI brain): train-prior trains on all of them, each
batch from one size; learn-mask learns on the size most training slices have and says what it
skipped; the other loaders still refuse a mixed folder."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.dataset import load_slice_groups, load_slices
from fastmri_diffmask.errors import UserError

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import write_multicoil_volume  # noqa: E402

torch.set_num_threads(1)
H, WA, WB = 16, 24, 20  # size A (3 slices per split) outnumbers size B (2)


def _two_volume_folder(root, coils_a: int, coils_b: int, width_b: int):
    """train/ and val/ each with a.h5 (3 slices, ``coils_a`` coils, H x WA) and b.h5 (2 slices,
    ``coils_b`` coils, H x ``width_b``)."""
    for split, seed in (("train", 0), ("val", 10)):
        write_multicoil_volume(root / split / "a.h5", num_slices=3, coils=coils_a, height=H, width=WA, recon=(H, WA),
                               seed=seed, sens_maps=True)
        write_multicoil_volume(root / split / "b.h5", num_slices=2, coils=coils_b, height=H, width=width_b,
                               recon=(H, width_b), seed=seed + 1, sens_maps=True)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return _two_volume_folder(tmp_path_factory.mktemp("mixed"), 2, 2, WB)


def test_loaders(mixed, capsys):
    with pytest.raises(UserError, match="one matrix size per folder"):
        load_slices(mixed, "train", sens_backend="file")  # the default still refuses
    groups = load_slice_groups(mixed, "train", sens_backend="file")
    assert [tuple(g.kspace.shape) for g in groups] == [(3, 2, H, WA), (2, 2, H, WB)]
    assert [g.fnames for g in groups] == [["a.h5"] * 3, ["b.h5"] * 2]
    most = load_slices(mixed, "train", sens_backend="file", size="most-common", num_slices=2, spread=True)
    assert most.kspace.shape == (2, 2, H, WA) and most.fnames == ["a.h5"] * 2 and most.slice_nums == [0, 2]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "using the 3 slices of 16x24, skipping 2 of other sizes" in err[0]
    only_b = load_slices(mixed, "val", sens_backend="file", size=(H, WB))
    assert only_b.kspace.shape == (2, 2, H, WB) and only_b.fnames == ["b.h5"] * 2
    with pytest.raises(UserError, match="no slices of 16x30"):
        load_slices(mixed, "val", sens_backend="file", size=(H, 30))


def test_train_prior_draws_each_batch_from_one_size_and_uses_every_size(mixed, tmp_path, capsys, monkeypatch):
    import fastmri_diffmask.prior.train as train_mod
    from fastmri_diffmask.prior.weights import _read, load_prior

    shapes = []
    real = train_mod.edm_loss

    def spy(net, x0, *args):
        shapes.append(tuple(x0.shape))
        return real(net, x0, *args)

    monkeypatch.setattr(train_mod, "edm_loss", spy)
    out = tmp_path / "p.safetensors"
    assert main(["train-prior", "--data", str(mixed), "--out", str(out), "--steps", "12", "--batch", "2",
                 "--size-preset", "tiny", "--sens-backend", "file", "--checkpoint-every", "12", "--device", "cpu"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train-prior: 2 matrix")]
    assert err == ["train-prior: 2 matrix sizes (16x24: 3 slices, 16x20: 2 slices); batches drawn per size"]
    assert len(shapes) == 12 and {s[-1] for s in shapes} == {WA, WB}  # both sizes trained, whole batches
    assert all(s[:2] == (2, 2) for s in shapes)
    card = _read(out)[0]
    assert card["image_sizes"] == [[H, WA], [H, WB]] and card["num_images"] == 5 and card["steps"] == 12
    prior = load_prior(out, device="cpu")
    with torch.no_grad():
        for w in (WA, WB):
            assert torch.isfinite(prior(torch.randn(1, 2, H, w), torch.tensor([1.0]))).all()


def test_learn_mask_uses_the_most_common_size(mixed, tmp_path, capsys):
    from fastmri_diffmask.masks.file import load_mask_file
    from fastmri_diffmask.prior.gaussian import GaussianPrior
    from fastmri_diffmask.prior.weights import save_prior

    gauss = GaussianPrior(torch.zeros(H, WA, dtype=torch.complex64), torch.ones(H, WA))  # refuses any other size
    gpath = save_prior(tmp_path / "g.safetensors", gauss, gauss.config)
    out = tmp_path / "m.safetensors"
    assert main(["learn-mask", "--data", str(mixed), "--prior", str(gpath), "--acceleration", "4", "--out", str(out),
                 "--steps", "1", "--export", "topk", "--num-low-frequencies", "4", "--device", "cpu", "--quiet"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "matrix sizes" in line]
    assert len(notes) == 2  # train, then val (held to the training size)
    assert all("using the 3 slices of 16x24, skipping 2 of other sizes" in n for n in notes)
    assert "train" in notes[0] and "val" in notes[1]
    mf = load_mask_file(out)
    assert mf.mask.shape == (WA,) and mf.num_sampled == round(WA / 4)
    assert np.isfinite(mf.probabilities).all()


@pytest.fixture(scope="module")
def mixed_coils(tmp_path_factory):
    return _two_volume_folder(tmp_path_factory.mktemp("mixed_coils"), 3, 2, WA)


def test_mixed_coil_counts_are_named_as_such(mixed_coils, capsys):
    with pytest.raises(UserError, match=r"different coil counts \(2, 3\); use one coil count per folder"):
        load_slices(mixed_coils, "train", sens_backend="file")
    most = load_slices(mixed_coils, "train", sens_backend="file", size="most-common")
    assert tuple(most.kspace.shape) == (3, 3, H, WA) and most.fnames == ["a.h5"] * 3
    note = capsys.readouterr().err.strip()
    assert note.startswith("note: ") and "2 k-space shapes" in note
    assert f"{H}x{WA} (3 coils): 3 slices, {H}x{WA} (2 coils): 2 slices" in note
    assert f"using the 3 slices of {H}x{WA} (3 coils), skipping 2 of other shapes" in note
    groups = load_slice_groups(mixed_coils, "train", sens_backend="file")
    assert [tuple(g.kspace.shape) for g in groups] == [(3, 3, H, WA), (2, 2, H, WA)]
