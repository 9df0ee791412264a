"""Realistic fastMRI-layout files end to end (issue 15 item 7), generated here, small enough for CI.

* **knee-like**: one kind of file with everything fastMRI's knee files have at once: a 2x
  oversampled readout (``encodedSpace`` x 48 = 2 x ``reconSpace`` x 24, the target the central
  24 rows of the RSS), zero-padded phase-encode columns with ISMRMRD ``kspace_encoding_step_1``
  limits to match (fastMRI's ``padding_left``/``padding_right`` = 4 / 36 of 40), and 15 coils.
  Through fastMRI's own ``SliceDataset`` + ``VarNetDataTransform`` with a learned mask, ``recon``
  (BART l1 + BART ESPIRiT, DDS + file maps), ``learn-mask`` (the unlearned baseline and the
  default refinement, cut down) and ``compare``.
* **brain-like**: a folder of two matrix sizes whose widths (37, 29) are not multiples of 8, also
  readout-oversampled: ``SliceDataset`` + ``VarNetDataTransform``, ``recon``, ``learn-mask`` (the
  most common size), ``train-prior`` (tiny), and ``compare``, which studies the most common size.
"""

import csv
import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.masks.bernoulli import BernoulliMask
from fastmri_diffmask.masks.fastmri_adapter import LearnedDiffusionMaskFunc
from fastmri_diffmask.masks.file import load_mask_file, save_mask_file
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.weights import save_prior

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import write_multicoil_volume  # noqa: E402

torch.set_num_threads(1)
needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="bart not installed")

# knee-like: 48 x 40 encoded (readout x phase encode), reconSpace 24 x 40, 4 zero columns each side
KH, KW, KRX, KPAD, KCOILS = 48, 40, 24, 4, 15
KLEFT, KRIGHT = KPAD, KW - KPAD
K_ACQ = KRIGHT - KLEFT                  # 32 acquirable columns
R, NLF = 4, 6
K_BUDGET = round(K_ACQ / R)             # 8 lines (fastMRI's own count over W would give 10)

# brain-like: two sizes, widths not divisible by 8, readout 2x oversampled
BRAIN = {"a": (48, 37, 24), "b": (40, 29, 20)}   # encoded rows, columns, reconSpace rows
BRAIN_SLICES = {"train": (3, 2), "val": (2, 1), "test": (1, 1)}  # size a outnumbers size b


def _no_padding(mask, left=KLEFT, right=KRIGHT):
    m = np.asarray(mask)
    assert not np.any(m[..., :left]) and not np.any(m[..., right:]), "a padded (zero-filled) column is sampled"


def _mask_file(width, path, acquired=None):
    m = BernoulliMask(width, R, NLF, acquired=acquired)
    return save_mask_file(path, m.to_mask_file("quantile"))


def _gauss(path, h, w):
    g = GaussianPrior(torch.zeros(h, w, dtype=torch.complex64), torch.ones(h, w))
    return save_prior(path, g, g.config)


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def knee(tmp_path_factory):
    root = tmp_path_factory.mktemp("knee")
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        write_multicoil_volume(root / split / f"knee_{split}.h5", num_slices=2, coils=KCOILS, height=KH, width=KW,
                               recon=(KRX, KW), pad=KPAD, seed=seed, sens_maps=True)
    return root, _gauss(root / "gauss.safetensors", KRX, KW)  # bound to the cropped grid


def _learn(root, prior, out, *extra):
    return main(["learn-mask", "--data", str(root), "--prior", str(prior), "--acceleration", str(R),
                 "--out", str(out), "--num-low-frequencies", str(NLF), "--device", "cpu", "--quiet", *extra])


@pytest.fixture(scope="module")
def knee_mask(knee, tmp_path_factory):
    """learn-mask's unlearned baseline on the knee-like data (also the mask the other tests use)."""
    root, prior = knee
    out = tmp_path_factory.mktemp("knee_mask") / "baseline.safetensors"
    assert _learn(root, prior, out, "--steps", "0", "--refine-sweeps", "0") == 0
    return out


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    root = tmp_path_factory.mktemp("brain")
    for j, (split, counts) in enumerate(BRAIN_SLICES.items()):
        for i, ((name, (h, w, rx)), n) in enumerate(zip(BRAIN.items(), counts)):
            write_multicoil_volume(root / split / f"brain_{name}.h5", num_slices=n, coils=4, height=h, width=w,
                                   recon=(rx, w), seed=10 * j + i, sens_maps=True)
    return root


# ---------------------------------------------------------------------------------- knee-like
def test_knee_fastmri_slicedataset_and_varnet_transform_with_the_learned_mask(knee, knee_mask):
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform

    root, _ = knee
    meta = SliceDataset(root / "test", challenge="multicoil").raw_samples[0].metadata
    assert (meta["padding_left"], meta["padding_right"]) == (KLEFT, KRIGHT)
    assert tuple(meta["encoding_size"][:2]) == (KH, KW) and tuple(meta["recon_size"][:2]) == (KRX, KW)
    for mode in ("fixed", "sampled"):
        ds = SliceDataset(root / "test", challenge="multicoil",
                          transform=VarNetDataTransform(LearnedDiffusionMaskFunc(knee_mask, mode=mode, seed=0)))
        assert len(ds) == 2
        for s in ds:
            cols = s.mask.numpy().reshape(-1)
            assert cols.shape == (KW,) and cols.sum() == K_BUDGET  # fastMRI's zeroing of the padding removes nothing
            _no_padding(cols)
            assert tuple(s.masked_kspace.shape) == (KCOILS, KH, KW, 2)
            assert torch.all(s.masked_kspace[:, :, torch.from_numpy(cols == 0)] == 0)
            assert tuple(s.target.shape) == (KRX, KW) and tuple(s.crop_size) == (KRX, KW)


def test_knee_learn_mask_baseline_meets_the_acquirable_budget(knee_mask):
    mf = load_mask_file(knee_mask)
    assert mf.mask.shape == (KW,)
    _no_padding(mf.mask)
    _no_padding(mf.probabilities)
    assert mf.num_sampled == K_BUDGET and mf.mask[(KW - NLF + 1) // 2:][:NLF].all()
    assert mf.metadata["acquired"] == {"columns": [KLEFT, KRIGHT]}
    assert mf.achieved_acceleration == pytest.approx(R)
    assert mf.achieved_acceleration_fastmri == pytest.approx(KW / K_BUDGET)
    assert "refine" not in mf.metadata


def test_knee_learn_mask_default_refinement_cut_down(knee, tmp_path):
    root, prior = knee
    out = tmp_path / "refined.safetensors"
    assert _learn(root, prior, out, "--refine-slices", "1", "--refine-dds-steps", "2", "--dds-steps", "2",
                  "--select-slices", "1") == 0
    mf = load_mask_file(out)
    _no_padding(mf.mask)
    assert mf.num_sampled == K_BUDGET and mf.achieved_acceleration == pytest.approx(R)
    ref = mf.metadata["refine"]
    assert ref["sweeps_run"] >= 1 and ref["end"] >= ref["start"]


def _recon(root, out, method, sens, *extra):
    return main(["recon", "--data", str(root), "--split", "test", "--acceleration", str(R), "--method", method,
                 "--sens-maps", sens, "--out", str(out), "--device", "cpu", *extra])


@pytest.mark.parametrize("method, sens, extra", [
    pytest.param("bart-l1", "espirit-bart", ("--max-iter", "20"), marks=needs_bart),
    ("dds", "file", ("--steps", "3"))])
def test_knee_recon_runs_on_the_cropped_grid(knee, knee_mask, tmp_path, capsys, method, sens, extra):
    root, _ = knee
    mask_args = ("--mask-type", "learned_diffusion", "--learned-mask", str(knee_mask))
    capsys.readouterr()
    rc = _recon(root, tmp_path / "auto", method, sens, *mask_args, *extra)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "readout oversampled" in err and f"{KH} -> {KRX}" in err
    with h5py.File(tmp_path / "auto" / "reconstructions" / "knee_test.h5") as f, \
            h5py.File(root / "test" / "knee_test.h5") as src:
        rec, mask = f["reconstruction"][()], f["mask"][()]
        target = src["reconstruction_rss"][()]
    assert rec.shape == target.shape == (2, KRX, KW) and np.isfinite(rec).all()
    assert mask.shape == (KRX, KW)  # masks and reconstruction on the cropped grid, not the stored 48 rows
    _no_padding(mask)
    assert mask[0].sum() == K_BUDGET
    mean = json.loads((tmp_path / "auto" / "metrics.json").read_text())["mean"]
    assert np.isfinite(mean["psnr"]) and mean["psnr"] > 15 and 0 < mean["ssim"] <= 1, mean
    if method == "bart-l1":  # off keeps the stored grid and scores against the same target
        assert _recon(root, tmp_path / "off", method, sens, *mask_args, *extra, "--readout-crop", "off") == 0
        assert "readout oversampled" not in capsys.readouterr().err
        with h5py.File(tmp_path / "off" / "reconstructions" / "knee_test.h5") as f:
            assert f["mask"].shape == (KH, KW) and f["reconstruction"].shape == (2, KRX, KW)


@needs_bart
def test_knee_compare_tiny_study(knee, knee_mask, tmp_path, capsys):
    root, _ = knee
    cfg = {"data": str(root), "split": "test", "kind": "line", "accelerations": [R], "num_low_frequencies": NLF,
           "sens_maps": "file",
           "masks": [{"name": "equi", "type": "equispaced_fraction"},
                     {"name": "learned", "type": "learned_diffusion", "file": str(knee_mask)}],
           "methods": [{"name": "zero-filled"}, {"name": "bart-l1", "max_iter": 10}], "reference": "equi"}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "study"
    rc = main(["compare", "--config", str(config), "--out", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr().err
    summary = (out / "summary.md").read_text()
    assert "## R = 4" in summary and "learned" in summary
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 2 * 2  # masks x methods x slices
    assert all(np.isfinite(float(r["psnr"])) for r in rows)
    cells = sorted((out / "cells").glob("*.npz"))
    assert len(cells) == 4
    for cell in cells:
        z = np.load(cell)
        assert z["mask"].shape == (KRX, KW) and z["recon"].shape[-2:] == (KRX, KW)
        _no_padding(z["mask"])
    learned = [r for r in rows if r["mask"] == "learned"]
    assert all(float(r["achieved_acceleration"]) == pytest.approx(R) for r in learned)


# ---------------------------------------------------------------------------------- brain-like
def test_brain_fastmri_slicedataset_and_varnet_transform_on_mixed_odd_sizes(brain, tmp_path):
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform

    path = _mask_file(BRAIN["a"][1], tmp_path / "m37.safetensors")
    ds = SliceDataset(brain / "train", challenge="multicoil",
                      transform=VarNetDataTransform(LearnedDiffusionMaskFunc(path)))
    pads = {s.fname.name: (s.metadata["padding_left"], s.metadata["padding_right"]) for s in ds.raw_samples}
    assert pads == {"brain_a.h5": (0, 37), "brain_b.h5": (0, 29)}
    seen = set()
    for s in ds:
        h, w, rx = BRAIN[s.fname[len("brain_")]]
        cols = s.mask.numpy().reshape(-1)
        assert cols.shape == (w,) and cols.sum() == round(w / R)  # resampled to the 29-column files
        assert tuple(s.masked_kspace.shape) == (4, h, w, 2) and tuple(s.target.shape) == (rx, w)
        seen.add(w)
    assert seen == {37, 29}


@pytest.mark.parametrize("method, sens, extra", [
    pytest.param("bart-l1", "espirit-bart", ("--max-iter", "20"), marks=needs_bart),
    ("dds", "file", ("--steps", "3"))])
def test_brain_recon_handles_each_size(brain, tmp_path, capsys, method, sens, extra):
    out = tmp_path / "out"
    rc = _recon(brain, out, method, sens, "--mask-type", "equispaced_fraction", "--num-low-frequencies", str(NLF), *extra)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "readout oversampled" in err and "40 -> 20" in err and "48 -> 24" in err
    for name, (h, w, rx) in BRAIN.items():
        with h5py.File(out / "reconstructions" / f"brain_{name}.h5") as f, \
                h5py.File(brain / "test" / f"brain_{name}.h5") as src:
            rec = f["reconstruction"][()]
            assert rec.shape == src["reconstruction_rss"].shape == (1, rx, w) and np.isfinite(rec).all()
            assert f["mask"].shape == (rx, w)
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["slices"]) == 2 and all(np.isfinite(r["psnr"]) for r in metrics["slices"])
    assert np.isfinite(metrics["mean"]["psnr"])


def test_brain_learn_mask_uses_the_most_common_size(brain, tmp_path, capsys):
    h, w, rx = BRAIN["a"]
    prior = _gauss(tmp_path / "g.safetensors", rx, w)  # refuses any other size
    out = tmp_path / "m.safetensors"
    rc = _learn(brain, prior, out, "--steps", "0", "--refine-sweeps", "0", "--dds-steps", "2", "--select-slices", "1")
    err = capsys.readouterr().err
    assert rc == 0, err
    notes = [line for line in err.splitlines() if "matrix sizes" in line]
    assert len(notes) == 2 and "train" in notes[0] and "val" in notes[1]  # one line per split
    assert all(f"using the 3 slices of {rx}x{w}, skipping 2 of other sizes" in n for n in notes[:1])
    assert f"{rx}x{w}" in notes[1]
    mf = load_mask_file(out)
    assert mf.mask.shape == (w,) and mf.num_sampled == round(w / R) and mf.achieved_acceleration == pytest.approx(w / round(w / R))


def test_brain_train_prior_tiny_on_both_sizes(brain, tmp_path, capsys):
    from fastmri_diffmask.prior.weights import _read, load_prior

    out = tmp_path / "p.safetensors"
    rc = main(["train-prior", "--data", str(brain), "--out", str(out), "--steps", "2", "--batch", "2",
               "--size-preset", "tiny", "--sens-backend", "file", "--checkpoint-every", "2", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "train-prior: 2 matrix sizes (24x37: 3 slices, 20x29: 2 slices); batches drawn per size" in err
    card = _read(out)[0]
    assert card["image_sizes"] == [[24, 37], [20, 29]] and card["num_images"] == 5
    prior = load_prior(out, device="cpu")
    with torch.no_grad():
        for _, w, rx in BRAIN.values():
            assert torch.isfinite(prior(torch.randn(1, 2, rx, w), torch.tensor([1.0]))).all()


def test_brain_compare_studies_the_most_common_size_of_a_mixed_folder(brain, tmp_path, capsys):
    """compare's masks and cells are per study, so on a mixed folder it studies the slices of the
    most common matrix size and says so in one note line (as learn-mask does)."""
    cfg = {"data": str(brain), "split": "test", "kind": "line", "accelerations": [R], "num_low_frequencies": NLF,
           "sens_maps": "file", "masks": [{"name": "equi", "type": "equispaced_fraction"}],
           "methods": [{"name": "zero-filled"}], "reference": "equi"}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "study"
    capsys.readouterr()
    assert main(["compare", "--config", str(config), "--out", str(out), "--device", "cpu"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:") and "matrix sizes" in line]
    assert len(notes) == 1 and "using the" in notes[0] and "24x37" in notes[0], notes
    assert (out / "summary.md").is_file()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert rows and all(np.isfinite(float(r["psnr"])) for r in rows)
