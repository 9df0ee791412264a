"""LearnedDiffusionMaskFunc inside fastMRI, the factory, run-fastmri and DiffusionDataTransform."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import fastmri.data.subsample as fm_subsample
from fastmri.data import SliceDataset
from fastmri.data.transforms import UnetDataTransform, VarNetDataTransform

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.masks.fastmri_adapter import (
    ENV_MASK,
    ENV_MASK_MODE,
    FASTMRI_MASK_TYPES,
    LearnedDiffusionMaskFunc,
    available_mask_types,
    create_mask_for_mask_type,
)
from fastmri_diffmask.masks.file import MaskFile, centre_slices, save_mask_file
from fastmri_diffmask.transforms import DiffusionDataTransform, DiffusionSample

sys.path.insert(0, str(Path(__file__).parent))
from fastmri_files import make_multicoil_dataset  # noqa: E402

SCRIPT = Path(__file__).parent / "fixtures" / "fastmri_style_script.py"
H, W, R, NLF = 64, 48, 4, 8
ORIGINAL_FACTORY = fm_subsample.create_mask_for_mask_type


# ---------------------------------------------------------------------------- helpers
def _profile(shape, nlf, total):
    """Budget-renormalised probabilities decaying away from the centre (centre = 1)."""
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    dist = np.sqrt(sum(g.astype(float) ** 2 for g in grids))
    centre = np.zeros(shape, bool)
    centre[centre_slices(shape, nlf)] = True
    p = np.exp(-dist / (0.2 * max(shape)))
    p[centre] = 0
    p = np.clip(p / p.sum() * (total - centre.sum()), 0, 1)
    p[centre] = 1
    return p.astype(np.float32), centre


def make_mask_file(path, kind="line", shape=(W,), acceleration=R, nlf=NLF, nested=False):
    size = int(np.prod(shape))
    total = int(round(size / acceleration))
    p, centre = _profile(shape, nlf, total)
    flat_c = centre.ravel()
    outer_rank = np.argsort(-np.where(flat_c, -1, p.ravel()), kind="stable")
    outer_rank = outer_rank[~flat_c[outer_rank]]
    order = np.concatenate([np.flatnonzero(flat_c), outer_rank])
    mask = np.zeros(size, np.float32)
    mask[order[:total]] = 1
    mf = MaskFile(
        mask=mask.reshape(shape), probabilities=p, logits=np.zeros(shape, np.float32), kind=kind,
        acceleration=float(acceleration), num_low_frequencies=nlf, order=order if nested else None,
    )
    return save_mask_file(path, mf), mf


@pytest.fixture
def mask_file(tmp_path):
    return make_mask_file(tmp_path / "mask.safetensors")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("multicoil_train")
    make_multicoil_dataset(root, num_volumes=3, num_slices=3, coils=4, height=H, width=W, sens_maps=True)
    return root


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(ENV_MASK, raising=False)
    monkeypatch.delenv(ENV_MASK_MODE, raising=False)


def _line(m: torch.Tensor) -> np.ndarray:
    return m.to(torch.float32).numpy().reshape(-1)


def _check_centre(mask_1d, nlf):
    c = centre_slices((mask_1d.size,), nlf)[0]
    assert np.all(mask_1d[c] == 1)


class Recorder:
    """Stands in for a mask function and records the masks it hands out."""

    def __init__(self, mask_func):
        self.mask_func = mask_func
        self.masks = []

    def __call__(self, shape, offset=None, seed=None):
        mask, nlf = self.mask_func(shape, offset, seed)
        self.masks.append((mask.clone(), nlf))
        return mask, nlf


# ---------------------------------------------------------------------------- contract
def test_fixed_mode_contract(mask_file):
    path, mf = mask_file
    f = LearnedDiffusionMaskFunc(path)
    mask, nlf = f((1, H, W, 2))
    assert mask.dtype == torch.float32 and tuple(mask.shape) == (1, 1, W, 1)
    assert nlf == NLF
    np.testing.assert_array_equal(_line(mask), mf.mask)
    mask5, _ = f((1, 1, H, W, 2))  # extra leading dims, as fastMRI allows
    assert tuple(mask5.shape) == (1, 1, 1, W, 1)
    with pytest.raises(ValueError):
        f((W, 2))  # fastMRI's own check: at least 3 dimensions


def test_varnet_and_unet_transforms_same_mask_per_volume(mask_file, data_dir):
    path, mf = mask_file
    for mode in ("fixed", "sampled"):
        by_volume = defaultdict(list)
        ds = SliceDataset(data_dir, "multicoil", transform=VarNetDataTransform(LearnedDiffusionMaskFunc(path, mode=mode)))
        for i in range(len(ds)):
            s = ds[i]
            m = _line(s.mask)
            assert m.sum() == mf.num_sampled  # exact budget
            _check_centre(m, NLF)
            assert s.num_low_frequencies == NLF
            by_volume[s.fname].append(m)
        assert len(by_volume) == 3
        for masks in by_volume.values():
            assert all(np.array_equal(masks[0], m) for m in masks)
        firsts = [v[0] for v in by_volume.values()]
        if mode == "fixed":
            assert all(np.array_equal(m, mf.mask) for m in firsts)
        else:  # different draws across volumes
            assert not all(np.array_equal(firsts[0], m) for m in firsts[1:])

    rec = Recorder(LearnedDiffusionMaskFunc(path, mode="sampled"))
    ds = SliceDataset(data_dir, "multicoil", transform=UnetDataTransform("multicoil", mask_func=rec))
    fnames = [ds.raw_samples[i].fname.name for i in range(len(ds))]
    for i in range(len(ds)):
        ds[i]
    by_volume = defaultdict(list)
    for fname, (m, nlf) in zip(fnames, rec.masks):
        by_volume[fname].append(_line(m))
        assert nlf == NLF and _line(m).sum() == mf.num_sampled
    for masks in by_volume.values():
        assert all(np.array_equal(masks[0], m) for m in masks)


def test_sampled_mode_budget_centre_and_frequencies(mask_file):
    path, mf = mask_file
    f = LearnedDiffusionMaskFunc(path, mode="sampled", seed=0)
    counts = np.zeros(W)
    n = 400
    draws = set()
    for _ in range(n):
        mask, nlf = f((1, H, W, 2))
        m = _line(mask)
        assert m.sum() == mf.num_sampled and nlf == NLF
        _check_centre(m, NLF)
        counts += m
        draws.add(m.tobytes())
    assert len(draws) > 50  # really random
    # conditional Bernoulli: inclusion frequencies follow the stored probabilities
    assert np.abs(counts / n - mf.probabilities).max() < 0.12
    # same seed, same draw; temp_seed leaves the rng where it was
    state = f.rng.get_state()[1].copy()
    a, _ = f((1, H, W, 2), seed=(1, 2, 3))
    b, _ = f((1, H, W, 2), seed=(1, 2, 3))
    assert torch.equal(a, b)
    np.testing.assert_array_equal(state, f.rng.get_state()[1])


def _worker_init_fn(worker_id):
    """fastMRI's ``fastmri.pl_modules.data_module.worker_init_fn`` for a single SliceDataset
    without DDP: ``data.transform.mask_func.rng.seed(worker_info.seed % (2**32 - 1))``.
    (Replicated because importing ``fastmri.pl_modules`` needs pytorch_lightning.)"""
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.mask_func.rng.seed(info.seed % (2**32 - 1))


def _worker_masks(path, data_dir, init_fn, seed):
    ds = SliceDataset(
        data_dir, "multicoil", transform=VarNetDataTransform(LearnedDiffusionMaskFunc(path, mode="sampled"), use_seed=False)
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=1, num_workers=2, worker_init_fn=init_fn, multiprocessing_context="fork",
        generator=torch.Generator().manual_seed(seed),
    )
    return [_line(b.mask) for b in loader]


def test_worker_init_fn_reseeding(mask_file, data_dir):
    try:
        from fastmri.pl_modules.data_module import worker_init_fn
    except ImportError:  # pytorch_lightning not installed: use the replica
        worker_init_fn = _worker_init_fn
    path, mf = mask_file
    a = _worker_masks(path, data_dir, worker_init_fn, seed=1)
    b = _worker_masks(path, data_dir, worker_init_fn, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # reproducible
    assert all(m.sum() == mf.num_sampled for m in a)
    # batches 0 and 1 come from workers 0 and 1: reseeded rngs give different draws ...
    assert not np.array_equal(a[0], a[1])
    # ... while without reseeding the forked workers share one rng state
    c = _worker_masks(path, data_dir, None, seed=1)
    assert np.array_equal(c[0], c[1])


def test_point_mask(tmp_path):
    path, mf = make_mask_file(tmp_path / "point.safetensors", kind="point", shape=(H, W), acceleration=8)
    for mode in ("fixed", "sampled"):
        f = LearnedDiffusionMaskFunc(path, mode=mode, seed=0)
        mask, nlf = f((4, H, W, 2))
        assert tuple(mask.shape) == (1, H, W, 1) and nlf == NLF
        m = mask[0, ..., 0].numpy()
        assert m.sum() == mf.num_sampled
        assert np.all(m[centre_slices((H, W), NLF)] == 1)
        if mode == "fixed":
            np.testing.assert_array_equal(m, mf.mask)
    with pytest.raises(UserError, match="point mask"):
        LearnedDiffusionMaskFunc(path, kind="line")


# ---------------------------------------------------------------------------- factory
def test_fastmri_names_pass_through_unchanged():
    shape = (1, H, W, 2)
    for name in FASTMRI_MASK_TYPES:
        ours = create_mask_for_mask_type(name, [0.08], [4])
        theirs = ORIGINAL_FACTORY(name, [0.08], [4])
        assert type(ours) is type(theirs)
        a, na = ours(shape, seed=(7, 8))
        b, nb = theirs(shape, seed=(7, 8))
        assert torch.equal(a, b) and na == nb


def test_unknown_mask_type_one_line():
    with pytest.raises(UserError) as e:
        create_mask_for_mask_type("spiral", [0.08], [4])
    msg = str(e.value)
    assert "\n" not in msg and "spiral" in msg and "learned_diffusion" in msg and "equispaced_fraction" in msg
    with pytest.raises(UserError, match="apply only"):
        create_mask_for_mask_type("random", [0.08], [4], learned_mask="x")
    with pytest.raises(UserError) as e:  # fastMRI's own ValueError, as one line
        create_mask_for_mask_type("random", [0.08, 0.04], [4])
    assert "\n" not in str(e.value)


def test_available_mask_types():
    names = available_mask_types()
    assert names[:5] == FASTMRI_MASK_TYPES and "learned_diffusion" in names


def test_learned_mask_from_argument_or_env(mask_file, monkeypatch):
    path, mf = mask_file
    with pytest.raises(UserError) as e:
        create_mask_for_mask_type("learned_diffusion", [0.08], [4])
    assert "learned_mask" in str(e.value) and ENV_MASK in str(e.value) and "\n" not in str(e.value)
    f = create_mask_for_mask_type("learned_diffusion", [0.08], [4], learned_mask=path)
    assert isinstance(f, LearnedDiffusionMaskFunc) and f.mode == "fixed"
    monkeypatch.setenv(ENV_MASK, str(path))
    monkeypatch.setenv(ENV_MASK_MODE, "sampled")
    f = create_mask_for_mask_type("learned_diffusion", [0.08], [4])
    assert f.mode == "sampled"
    with pytest.raises(UserError, match="mode"):
        create_mask_for_mask_type("learned_diffusion", [0.08], [4], mode="best")


def test_acceleration_mismatch(tmp_path, mask_file):
    path, _ = mask_file
    with pytest.raises(UserError) as e:
        create_mask_for_mask_type("learned_diffusion", [0.08], [8], learned_mask=path)
    assert "R=4" in str(e.value) and "R=8" in str(e.value) and "\n" not in str(e.value)
    nested, mf = make_mask_file(tmp_path / "nested.safetensors", nested=True)
    f = create_mask_for_mask_type("learned_diffusion", [0.08], [2, 4], learned_mask=nested, seed=0)
    seen = set()
    for _ in range(20):
        m, nlf = f((1, H, W, 2))
        m = _line(m)
        _check_centre(m, NLF)
        seen.add(int(m.sum()))
        if m.sum() == W // 2:
            np.testing.assert_array_equal(m, mf.mask_at(2))
        else:
            np.testing.assert_array_equal(m, mf.mask)
    assert seen == {W // 2, W // 4}
    g = LearnedDiffusionMaskFunc(nested, mode="sampled", accelerations=[2], seed=0)
    assert _line(g((1, H, W, 2))[0]).sum() == W // 2


def test_width_mismatch_rule(mask_file):
    path, mf = mask_file
    for mode in ("fixed", "sampled"):
        f = LearnedDiffusionMaskFunc(path, mode=mode, seed=0)
        for w_new in (96, 32, 37):
            mask, nlf = f((1, H, w_new, 2))
            m = _line(mask)
            assert m.size == w_new
            assert m.sum() == round(w_new / R)
            assert nlf == round(NLF * w_new / W)
            _check_centre(m, nlf)
            if mode == "fixed":
                assert torch.equal(mask, f((1, H, w_new, 2))[0])
    # fixed mode at 2x width: top-k of the interpolated profile, symmetric like the file's
    m = _line(LearnedDiffusionMaskFunc(path)((1, H, 2 * W, 2))[0])
    src = (np.arange(2 * W) - W) / (2 * W) * W + W // 2
    p_new = np.interp(src, np.arange(W), mf.probabilities)
    centre = np.zeros(2 * W, bool)
    centre[centre_slices((2 * W,), 2 * NLF)[0]] = True
    chosen, rest = p_new[(m == 1) & ~centre], p_new[(m == 0)]
    assert chosen.min() >= rest.max()
    with pytest.raises(UserError) as e:
        LearnedDiffusionMaskFunc(path, on_width_mismatch="refuse")((1, H, 96, 2))
    assert "96" in str(e.value) and "48" in str(e.value) and "\n" not in str(e.value)


def test_bad_mask_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        create_mask_for_mask_type("learned_diffusion", [0.08], [4], learned_mask=tmp_path / "none.safetensors")
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(os.urandom(300))
    with pytest.raises(UserError) as e:
        LearnedDiffusionMaskFunc(bad)
    assert "\n" not in str(e.value)
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"weight": np.zeros(3, np.float32)}, str(other))
    with pytest.raises(UserError, match="not a fastmri-diffmask mask file"):
        LearnedDiffusionMaskFunc(other)
    # a mask of another kind than asked for
    point, _ = make_mask_file(tmp_path / "point.safetensors", kind="point", shape=(H, W), acceleration=8)
    with pytest.raises(UserError, match="line mask is needed"):
        create_mask_for_mask_type("learned_diffusion", [0.08], [8], learned_mask=point, kind="line")


def test_mask_func_pickles(mask_file):
    import pickle

    path, _ = mask_file
    f = LearnedDiffusionMaskFunc(path, mode="sampled", seed=3)
    g = pickle.loads(pickle.dumps(f))
    assert torch.equal(f((1, H, W, 2))[0], g((1, H, W, 2))[0])


# ---------------------------------------------------------------------------- run-fastmri
def _run(data_dir, out, *extra):
    return main(["run-fastmri", str(SCRIPT), "--data_path", str(data_dir), "--out", str(out), *extra])


def test_run_fastmri_learned_mask(mask_file, data_dir, tmp_path):
    path, mf = mask_file
    argv = sys.argv[:]
    out = tmp_path / "got.npz"
    assert _run(data_dir, out, "--mask_type", "learned_diffusion", "--learned_mask", str(path)) == 0
    got = np.load(out)
    np.testing.assert_array_equal(got["mask"], mf.mask)
    assert int(got["num_low_frequencies"][0]) == NLF and str(got["mask_func"]) == "LearnedDiffusionMaskFunc"
    # everything restored
    assert fm_subsample.create_mask_for_mask_type is ORIGINAL_FACTORY
    assert sys.argv == argv and ENV_MASK not in os.environ
    import argparse

    p = argparse.ArgumentParser()
    with pytest.raises(SystemExit):
        p.add_argument("--mask_type", choices=("random",))
        p.parse_args(["--mask_type", "learned_diffusion"])

    out2 = tmp_path / "sampled.npz"
    assert _run(data_dir, out2, "--mask_type=learned_diffusion", f"--learned_mask={path}", "--learned_mask_mode", "sampled") == 0
    m = np.load(out2)["mask"]
    assert m.sum() == mf.num_sampled
    _check_centre(m, NLF)


def test_run_fastmri_passes_fastmri_names(data_dir, tmp_path):
    out = tmp_path / "random.npz"
    assert _run(data_dir, out, "--mask_type", "random") == 0
    assert str(np.load(out)["mask_func"]) == "RandomMaskFunc"


def test_run_fastmri_errors(tmp_path, data_dir, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a mask")
    assert _run(data_dir, tmp_path / "x.npz", "--mask_type", "learned_diffusion", "--learned_mask", str(bad)) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.safetensors" in err
    assert _run(data_dir, tmp_path / "x.npz", "--mask_type", "learned_diffusion") == 2
    assert "--learned_mask" in capsys.readouterr().err
    assert main(["run-fastmri", str(tmp_path / "missing.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # the script's own argparse error keeps the script's exit code
    assert _run(data_dir, tmp_path / "x.npz", "--mask_type", "spiral") == 2


@pytest.mark.skipif(importlib.util.find_spec("pytorch_lightning") is not None, reason="Lightning installed")
def test_run_fastmri_lightning_missing(tmp_path, capsys):
    script = tmp_path / "needs_pl.py"
    script.write_text("import pytorch_lightning as pl\nprint('ran')\n")
    assert main(["run-fastmri", str(script)]) == 2
    out = capsys.readouterr()
    assert "ran" not in out.out
    assert "pip install 'fastmri-diffmask[lightning]'" in out.err and len(out.err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------- DiffusionDataTransform
def _sens_from_file(root):
    def sens_maps_fn(fname, slice_num):
        with h5py.File(Path(root) / fname, "r") as hf:
            return hf["sens_maps"][slice_num]

    return sens_maps_fn


def test_diffusion_transform_file_backend(mask_file, tmp_path):
    path, mf = mask_file
    root = tmp_path / "padded"
    make_multicoil_dataset(root, num_volumes=1, num_slices=2, coils=4, height=H, width=W, pad=4, sens_maps=True)
    t = DiffusionDataTransform(LearnedDiffusionMaskFunc(path), sens_backend="file", sens_maps_fn=_sens_from_file(root))
    ds = SliceDataset(root, "multicoil", transform=t)
    s = ds[1]
    assert isinstance(s, DiffusionSample)
    assert s.masked_kspace.dtype == torch.complex64 and tuple(s.masked_kspace.shape) == (4, H, W)
    assert tuple(s.mask.shape) == (1, 1, W) and s.num_low_frequencies == NLF
    expected = mf.mask.copy()
    expected[:4] = 0
    expected[W - 4:] = 0  # padding columns, as VarNetDataTransform zeroes them
    np.testing.assert_array_equal(s.mask.numpy().ravel(), expected)
    assert torch.all(s.masked_kspace[..., expected == 0] == 0)
    assert tuple(s.sens_maps.shape) == (4, H, W) and s.sens_maps.dtype == torch.complex64
    assert s.slice_num == 1 and s.max_value > 0 and tuple(s.target.shape) == (32, 32)
    # same mask as fastMRI's VarNetDataTransform gives
    v = SliceDataset(root, "multicoil", transform=VarNetDataTransform(LearnedDiffusionMaskFunc(path)))[1]
    np.testing.assert_array_equal(_line(v.mask), s.mask.numpy().ravel())
    # batches through the default collate
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert tuple(batch.masked_kspace.shape) == (2, 4, H, W)
    # no mask_func: the full mask, padding zeroed; no maps
    s0 = SliceDataset(root, "multicoil", transform=DiffusionDataTransform(sens_backend=None))[0]
    assert s0.mask.sum() == W - 8 and s0.sens_maps.numel() == 0


def test_diffusion_transform_arguments():
    with pytest.raises(UserError, match="sens_maps_fn"):
        DiffusionDataTransform(sens_backend="file")
    with pytest.raises(UserError, match="sens_backend"):
        DiffusionDataTransform(sens_backend="magic")
    with pytest.raises(UserError, match="only used"):
        DiffusionDataTransform(sens_backend="sigpy", sens_maps_fn=lambda f, s: None)


def test_diffusion_transform_sigpy_backend(tmp_path, data_dir):
    pytest.importorskip("sigpy")
    # ESPIRiT needs a calibration region well above its 6x6 kernel: 16 centre lines
    path, _ = make_mask_file(tmp_path / "r2.safetensors", acceleration=2, nlf=16)
    ds = SliceDataset(data_dir, "multicoil", transform=DiffusionDataTransform(LearnedDiffusionMaskFunc(path), sens_backend="sigpy"))
    s = ds[0]
    maps = s.sens_maps.numpy()
    assert maps.shape == (4, H, W) and np.isfinite(maps).all()
    with h5py.File(data_dir / s.fname, "r") as hf:
        true = hf["sens_maps"][s.slice_num]
    # phase-invariant agreement with the true maps inside the object
    num = np.abs((maps * true.conj()).sum(0))
    norm = np.sqrt((np.abs(maps) ** 2).sum(0) * (np.abs(true) ** 2).sum(0)) + 1e-12
    inside = np.sqrt((np.abs(maps) ** 2).sum(0)) > 0.5
    assert s.num_low_frequencies == 16 and inside.mean() > 0.2
    assert np.median((num / norm)[inside]) > 0.95


def test_lightning_1x_with_numpy_2_refused(tmp_path, monkeypatch):
    import importlib.metadata

    from fastmri_diffmask.cli import run_fastmri

    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("numpy < 2 here")
    script = tmp_path / "needs_pl.py"
    script.write_text("import pytorch_lightning as pl\n")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "pytorch_lightning" else real_find_spec(name, *a))
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.9.5")
    with pytest.raises(UserError, match="numpy<2"):
        run_fastmri.check_lightning(script)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.1.0")
    with pytest.raises(UserError, match="pytorch-lightning<2"):
        run_fastmri.check_lightning(script)
