"""Zero-padded k-space (fastMRI's padding_left / padding_right): the reader agrees with
fastMRI's SliceDataset, and no mask of any kind, learned or baseline, samples a padded column,
while budgets count the acquirable columns exactly."""

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.dataset import acquired_range_of, load_slices
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.masks.acquired import acquirable, acquired_acceleration, padding_from_header
from fastmri_diffmask.masks.baselines import LINE_MASK_TYPES, MASK_TYPES, POINT_MASK_TYPES, baseline_mask
from fastmri_diffmask.masks.bernoulli import BernoulliMask
from fastmri_diffmask.masks.fastmri_adapter import LearnedDiffusionMaskFunc
from fastmri_diffmask.masks.file import load_mask_file, save_mask_file
from fastmri_diffmask.masks.select import make_mask
from fastmri_diffmask.prior.gaussian import GaussianPrior
from fastmri_diffmask.prior.weights import save_prior

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import ismrmrd_header, write_multicoil_volume  # noqa: E402

torch.set_num_threads(1)
H, W, PAD = 16, 160, 8
LEFT, RIGHT = PAD, W - PAD  # fastMRI: 160 // 2 - 72 = 8, 8 + 143 + 1 = 152
N_ACQ = RIGHT - LEFT


def _padded_cols(mask) -> np.ndarray:
    m = np.asarray(mask)
    return m[..., :LEFT], m[..., RIGHT:]


def _assert_no_padded_samples(mask):
    lo, hi = _padded_cols(mask)
    assert not np.any(lo) and not np.any(hi), "a padded (zero-filled) column is sampled"


@pytest.fixture(scope="module")
def padded(tmp_path_factory):
    """train/val folders of 160-column files with 8 zero columns each side (header limits to
    match), and a Gaussian prior of that size."""
    root = tmp_path_factory.mktemp("padded")
    for split, n, seed in (("train", 3, 0), ("val", 2, 5)):
        write_multicoil_volume(root / split / f"pad_{split}.h5", num_slices=n, coils=2, height=H, width=W,
                               recon=(H, H), pad=PAD, seed=seed, sens_maps=True)
    prior = GaussianPrior(torch.zeros(H, W, dtype=torch.complex64), torch.ones(H, W))
    path = save_prior(root / "gauss.safetensors", prior, prior.config)
    return root, path


# -- reading ----------------------------------------------------------------------------------
def test_reader_gives_fastmris_padding_and_the_header_matches_the_zero_columns(padded):
    from fastmri.data import SliceDataset

    root, _ = padded
    ds = SliceDataset(root / "train", challenge="multicoil", use_dataset_cache=False)
    fm = {(s.metadata["padding_left"], s.metadata["padding_right"]) for s in ds.raw_samples}
    assert fm == {(LEFT, RIGHT)}
    path = next((root / "train").glob("*.h5"))
    assert acquired_range_of(path) == (LEFT, RIGHT)
    data = load_slices(root, "train", sens_backend="file")
    assert data.acquired == [(LEFT, RIGHT)] * 3 and data.acquired_range == (LEFT, RIGHT)
    col_energy = np.abs(data.kspace.numpy()).sum(axis=(0, 1, 2))
    assert np.all(col_energy[:LEFT] == 0) and np.all(col_energy[RIGHT:] == 0)
    assert np.all(col_energy[LEFT:RIGHT] > 0)
    assert data.subset([2, 0]).acquired == [(LEFT, RIGHT)] * 2


@pytest.mark.parametrize("enc_y, center, maximum", [(160, 72, 143), (160, 75, 140), (161, 70, 139), (320, 150, 299)])
def test_padding_from_header_is_fastmris_formula(tmp_path, enc_y, center, maximum):
    """Asymmetric and odd-width limits: the same numbers as fastMRI's SliceDataset."""
    from fastmri.data import SliceDataset

    path = write_multicoil_volume(tmp_path / "d" / "f.h5", num_slices=1, coils=2, height=8, width=enc_y, recon=(8, 8))
    with h5py.File(path, "r+") as f:
        del f["ismrmrd_header"]
        f.create_dataset("ismrmrd_header", data=ismrmrd_header((8, enc_y, 1), (8, 8, 1), center, maximum))
    meta = SliceDataset(tmp_path / "d", challenge="multicoil").raw_samples[0].metadata
    assert acquired_range_of(path) == (meta["padding_left"], meta["padding_right"])


def test_header_without_limits_means_full_width_and_bad_limits_are_refused():
    assert padding_from_header(None, 40) == (0, 40)
    no_limits = b'<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding><encodedSpace><matrixSize>' \
                b"<x>8</x><y>40</y><z>1</z></matrixSize></encodedSpace></encoding></ismrmrdHeader>"
    assert padding_from_header(no_limits, 40) == (0, 40)
    with pytest.raises(UserError, match="outside"):
        padding_from_header(ismrmrd_header((8, 40, 1), (8, 8, 1), 30, 39), 40)  # left = -10
    with pytest.raises(UserError, match="XML"):
        padding_from_header(b"<not xml", 40)


def test_mixed_ranges_use_the_intersection_and_say_so(tmp_path, capsys):
    for i, pad in enumerate((4, 8)):
        write_multicoil_volume(tmp_path / "mix" / f"v{i}.h5", num_slices=1, coils=2, height=8, width=40,
                               recon=(8, 8), pad=pad, seed=i, sens_maps=True)
    data = load_slices(tmp_path / "mix", sens_backend="file")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "intersection [8, 32)" in err[0]
    assert data.acquired == [(4, 36), (8, 32)] and data.acquired_range == (8, 32)


# -- BernoulliMask ------------------------------------------------------------------------------
def _tempting_line_mask(acceleration=4, nlf=12, **kw) -> BernoulliMask:
    """Logits far highest on the padded columns: any export that ignores the exclusion picks them."""
    logits = torch.zeros(W)
    logits[:LEFT] = logits[RIGHT:] = 10.0
    return BernoulliMask(W, acceleration, nlf, logits=logits, acquired=(LEFT, RIGHT), **kw)


@pytest.mark.parametrize("acceleration", [2, 3, 4, 6, 8])
def test_bernoulli_budget_counts_acquirable_columns_and_every_export_stays_inside(acceleration):
    m = _tempting_line_mask(acceleration, nlf=8)
    budget = round(N_ACQ / acceleration)
    assert m.budget == budget and m.num_acquirable == N_ACQ
    p = m.probabilities().detach()
    assert float(p.sum()) == pytest.approx(budget, abs=1e-4)
    assert not p[:LEFT].any() and not p[RIGHT:].any()
    assert not m.flattened(0.5)[:LEFT].any() and not m.flattened(0.5)[RIGHT:].any()
    exact = [m.binarize("topk"), m.binarize("quantile")] + [m.systematic(u) for u in (0.0, 0.125, 0.5, 0.875)]
    exact += [m.systematic(0.3, probabilities=m.flattened(0.5))]
    g = torch.Generator().manual_seed(0)
    exact += [m.draw_exact(g, stratified=s) for s in (False, True) for _ in range(5)]
    for mask in exact:
        _assert_no_padded_samples(mask.numpy())
        assert int(mask.sum()) == budget
    for soft in (m.sample(64, generator=g), m.sample(8, hard=False, generator=g), m.relaxed(8, generator=g)):
        _assert_no_padded_samples(soft.detach().numpy())
    hard = m.sample(256, generator=g)
    assert float(hard.detach().sum(1).mean()) == pytest.approx(budget, rel=0.05)


def test_bernoulli_point_mask_keeps_to_the_acquired_columns_and_rows():
    shape = (24, 40)
    logits = torch.full(shape, -2.0)
    logits[:, :4] = 8.0
    for acquired, n_acq in (((4, 36), 24 * 32), (((2, 22), (4, 36)), 20 * 32)):
        for corner_cut in (False, True):
            m = BernoulliMask(shape, 4, 6, kind="point", logits=logits, acquired=acquired, corner_cut=corner_cut)
            allowed = acquirable(shape, acquired)
            assert m.budget == round(n_acq / 4)
            g = torch.Generator().manual_seed(1)
            for mask in (m.binarize("topk"), m.binarize("quantile"), m.systematic(0.25), m.draw_exact(g),
                         m.draw_exact(g, stratified=True)):
                assert int(mask.sum()) == m.budget and not mask.numpy()[~allowed].any()
            assert not m.sample(16, generator=g).detach().numpy()[:, ~allowed].any()
            assert not m.relaxed(4, generator=g).detach().numpy()[:, ~allowed].any()


def test_bernoulli_centre_outside_the_acquired_range_is_refused():
    with pytest.raises(UserError, match="outside the acquired range"):
        BernoulliMask(W, 4, 12, acquired=(0, 70))  # centre at 74..85
    fixed = np.zeros(W)
    fixed[3] = 1
    with pytest.raises(UserError, match="outside the acquired range"):
        BernoulliMask(W, 4, 12, fixed=fixed, acquired=(LEFT, RIGHT))
    with pytest.raises(UserError):
        BernoulliMask(W, 4, 12, acquired=(10, 5))


def test_mask_file_records_the_range_and_both_accelerations(tmp_path):
    m = _tempting_line_mask()
    mf = load_mask_file(save_mask_file(tmp_path / "m.safetensors", m.to_mask_file("quantile")))
    assert mf.metadata["acquired"] == {"columns": [LEFT, RIGHT]}
    assert mf.metadata["num_acquirable"] == N_ACQ and mf.metadata["budget_convention"] == "acquirable"
    assert mf.num_sampled == 36
    assert mf.achieved_acceleration == pytest.approx(4.0)
    assert mf.achieved_acceleration_fastmri == pytest.approx(W / 36)
    assert acquired_acceleration(mf.mask, mf.acquirable) == pytest.approx({"acquirable": 4.0, "fastmri": W / 36})
    # a nested ordering that lists padded columns first: mask_at skips them and counts acquirable columns
    order = np.concatenate([np.arange(LEFT), np.flatnonzero(mf.mask), np.setdiff1d(np.arange(LEFT, W), np.flatnonzero(mf.mask))])
    mf.order = order
    m8 = mf.mask_at(8)
    assert m8.sum() == round(N_ACQ / 8)
    _assert_no_padded_samples(m8)
    with pytest.raises(UserError, match="outside the acquired range"):
        m.to_mask_file(mask=torch.ones(W))
    bad = m.to_mask_file()
    bad.mask[2] = 1
    with pytest.raises(UserError, match="outside its acquired range"):
        save_mask_file(tmp_path / "bad.safetensors", bad)


def test_unpadded_masks_are_unchanged_by_the_option():
    a, b = BernoulliMask(64, 4, 8), BernoulliMask(64, 4, 8, acquired=(0, 64))
    assert a.budget == b.budget == 16
    for method in ("topk", "quantile"):
        assert torch.equal(a.binarize(method), b.binarize(method))
    assert a.to_mask_file().metadata["acquired"] is None


# -- baseline masks --------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_type", MASK_TYPES)
@pytest.mark.parametrize("acceleration", [4, 8])
def test_baselines_never_sample_padding_and_report_acquirable_accelerations(mask_type, acceleration):
    if mask_type == "poisson_bart" and shutil.which("bart") is None:
        pytest.skip("bart not installed")
    point = mask_type in POINT_MASK_TYPES
    # point masks on a small ky-kz plane (the Poisson generators are slow), lines on the 160 columns
    shape, (left, right) = ((24, 48), (6, 42)) if point else ((16, W), (LEFT, RIGHT))
    bm = baseline_mask(mask_type, shape, acceleration, num_low_frequencies=6, seed=3, acquired=(left, right))
    grid = np.broadcast_to(bm.mask, shape)
    assert not grid[:, :left].any() and not grid[:, right:].any(), "a padded column is sampled"
    n_acq = (right - left) * (shape[0] if point else 1)
    assert bm.acceleration == pytest.approx(n_acq / bm.mask.sum())
    assert bm.acceleration_fastmri == pytest.approx(bm.mask.size / bm.mask.sum())
    if mask_type in ("vd_random", "vd_random_2d"):
        assert bm.mask.sum() == round(n_acq / acceleration)  # exact budget over acquirable entries
    elif point:
        assert abs(bm.mask.sum() - round(n_acq / acceleration)) <= 0.15 * n_acq / acceleration
    if mask_type.startswith("poisson"):
        return  # make_mask calls the same baseline_mask (slow draws for Poisson disc)
    m2 = make_mask(mask_type, shape, acceleration, 6, seed=3, acquired=(left, right))
    assert not m2.mask[:, :left].any() and not m2.mask[:, right:].any()
    assert m2.acceleration == pytest.approx((right - left) * shape[0] / m2.mask.sum())


def test_fastmri_line_masks_are_fastmris_own_zeroed_outside_the_padding():
    """fastMRI's five are drawn over all W columns and zeroed outside, as VarNetDataTransform does."""
    for mask_type in LINE_MASK_TYPES[:5]:
        full = baseline_mask(mask_type, (W,), 4, num_low_frequencies=12, seed=9).mask
        padded = baseline_mask(mask_type, (W,), 4, num_low_frequencies=12, seed=9, acquired=(LEFT, RIGHT)).mask
        want = full.copy()
        want[:LEFT] = want[RIGHT:] = 0
        assert np.array_equal(padded, want)


def test_baseline_centre_outside_the_range_is_refused():
    with pytest.raises(UserError, match="outside the acquired range"):
        baseline_mask("vd_random", (W,), 4, num_low_frequencies=12, acquired=(90, 160))


# -- learned masks through fastMRI's mask-function contract ----------------------------------------
def test_learned_mask_func_never_samples_padding(tmp_path):
    from fastmri.data.transforms import apply_mask

    mf = _tempting_line_mask().to_mask_file("topk")
    for mode in ("fixed", "sampled"):
        func = LearnedDiffusionMaskFunc(mf, mode=mode, seed=0)
        for seed in range(5):
            mask, _ = func((1, H, W, 2), seed=seed)
            flat = mask.numpy().reshape(W)
            _assert_no_padded_samples(flat)
            assert flat.sum() == 36
        # the data's own range on another grid: resampled, still inside and budget-exact
        other = LearnedDiffusionMaskFunc(mf, mode=mode, seed=0, acquired=(10, 190))
        flat = other((1, H, 200, 2), seed=1)[0].numpy().reshape(200)
        assert not flat[:10].any() and not flat[190:].any() and flat.sum() == round(180 / 4)
    k = torch.ones(2, H, W, 2)
    _, mask, _ = apply_mask(k, LearnedDiffusionMaskFunc(mf), seed=1, padding=(LEFT, RIGHT))
    assert mask.sum() == 36  # fastMRI's zeroing outside the padding removes nothing


# -- learn-mask end to end -----------------------------------------------------------------------
@pytest.mark.parametrize("export", [[], ["--export", "topk"], ["--init-density", "uniform"]],
                         ids=["default-export", "topk", "uniform-start"])
def test_learn_mask_on_padded_data_meets_the_acquirable_budget(padded, tmp_path, capsys, export):
    """Without the range the budget is round(160 / 4) = 40, and from a flat start the default
    (systematic) export puts lines in columns 2 and 155 (checked): both must not happen."""
    root, prior = padded
    out = tmp_path / "m.safetensors"
    rc = main(["learn-mask", "--data", str(root), "--prior", str(prior), "--acceleration", "4", "--out", str(out),
               "--steps", "2", "--num-train", "3", "--num-val", "2", "--device", "cpu", "--quiet", *export])
    assert rc == 0, capsys.readouterr().err
    mf = load_mask_file(out)
    _assert_no_padded_samples(mf.mask)
    assert mf.num_sampled == round(N_ACQ / 4) == 36
    assert not mf.probabilities[:LEFT].any() and not mf.probabilities[RIGHT:].any()
    assert mf.metadata["acquired"] == {"columns": [LEFT, RIGHT]} and mf.achieved_acceleration == pytest.approx(4.0)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["num_sampled"] == 36


# -- recon --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask_type", ["vd_random", "equispaced_fraction"])
def test_recon_masks_keep_to_each_files_acquired_columns(padded, tmp_path, capsys, mask_type):
    root, _ = padded
    out = tmp_path / "recon"
    rc = main(["recon", "--data", str(root), "--split", "train", "--mask-type", mask_type, "--acceleration", "4",
               "--num-low-frequencies", "12", "--method", "zero-filled", "--sens-maps", "file", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    with h5py.File(next((out / "reconstructions").glob("*.h5")), "r") as f:
        mask = f["mask"][()]
        achieved = float(f.attrs["acceleration"])
    assert mask.shape == (H, W)
    _assert_no_padded_samples(mask)
    assert achieved == pytest.approx(N_ACQ / mask[0].sum())
    if mask_type == "vd_random":
        assert mask[0].sum() == 36 and achieved == pytest.approx(4.0)


def test_compare_masks_keep_to_the_study_slices_acquired_columns(padded, tmp_path):
    import yaml

    root, _ = padded
    cfg = {"data": str(root), "split": "train", "kind": "line", "accelerations": [4], "num_low_frequencies": 12,
           "sens_maps": "file", "masks": [{"name": "equi", "type": "equispaced_fraction"}, {"name": "vd", "type": "vd_random"}],
           "methods": [{"name": "zero-filled"}], "reference": "equi"}
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "study"
    assert main(["compare", "--config", str(config), "--out", str(out), "--device", "cpu"]) == 0
    cells = sorted((out / "cells").glob("*.npz"))
    assert len(cells) == 2
    for cell in cells:
        mask = np.load(cell)["mask"]
        _assert_no_padded_samples(mask)
        rows = json.loads(cell.with_suffix(".json").read_text())["rows"]
        assert rows[0]["achieved_acceleration"] == pytest.approx(N_ACQ / mask[0].sum(), abs=1e-3)


def test_fastmris_varnet_transform_with_a_padded_learned_mask(padded, tmp_path):
    """fastMRI's own SliceDataset + VarNetDataTransform: the learned mask loses nothing to
    fastMRI's zeroing outside the padding, so the sample holds exactly the budget."""
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform

    root, _ = padded
    path = save_mask_file(tmp_path / "m.safetensors", _tempting_line_mask().to_mask_file("quantile"))
    for mode in ("fixed", "sampled"):
        ds = SliceDataset(root / "val", challenge="multicoil",
                          transform=VarNetDataTransform(LearnedDiffusionMaskFunc(path, mode=mode, seed=0)))
        for sample in ds:
            cols = sample.mask.numpy().reshape(-1)
            assert cols.sum() == 36
            _assert_no_padded_samples(cols)
