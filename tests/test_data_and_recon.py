"""make-data files through fastMRI's own classes, and the recon command's outputs and errors."""

import json

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset
from fastmri.data.subsample import create_mask_for_mask_type
from fastmri.data.transforms import VarNetDataTransform

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.embedded import TEST_BLOCK, VAL_BLOCK, split_indices


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    assert main(["make-data", "--out", str(out), "--split", "val,test", "--size", "32", "--coils", "4",
                 "--slices-per-file", "5"]) == 0
    return out


def test_splits_are_separated():
    train, val, test = (set(split_indices(s).tolist()) for s in ("train", "val", "test"))
    assert not (train & val or train & test or val & test)
    for held in (val, test):
        assert all(abs(i - j) > 1 for i in train for j in held), "a training slice neighbours a held-out slice"
    assert len(train) >= 100 and len(val) == len(VAL_BLOCK) and len(test) == len(TEST_BLOCK)


@pytest.mark.parametrize("mask_type", ["random", "equispaced", "equispaced_fraction", "magic", "magic_fraction"])
def test_files_load_in_fastmri_with_its_masks(data_dir, mask_type):
    mask_func = create_mask_for_mask_type(mask_type, [0.125], [4])
    ds = SliceDataset(data_dir / "test", transform=VarNetDataTransform(mask_func=mask_func), challenge="multicoil")
    assert len(ds) == len(TEST_BLOCK)
    sample = ds[0]
    assert sample.masked_kspace.shape == (4, 32, 32, 2)
    assert sample.target.shape == (32, 32)
    m = sample.mask.flatten()
    assert m.numel() == 32 and 0 < m.sum() < 32
    # fastMRI's padding from our header: nothing padded
    raw = SliceDataset(data_dir / "test", transform=None, challenge="multicoil")[0]
    assert raw[3]["padding_left"] == 0 and raw[3]["padding_right"] == 32


def test_load_slices_spread_takes_centred_strata_across_files(data_dir):
    from fastmri_diffmask.dataset import load_slices

    full = load_slices(data_dir, "test", sens_backend="none")
    total = len(full.fnames)  # 12 slices in files of 5, 5, 2
    order = list(zip(full.fnames, full.slice_nums))
    sub = load_slices(data_dir, "test", num_slices=3, sens_backend="none", spread=True)
    picked = [order.index(key) for key in zip(sub.fnames, sub.slice_nums)]
    assert picked == [int((j + 0.5) * total / 3) for j in range(3)] == [2, 6, 10]
    assert len(set(sub.fnames)) == 3  # one slice from each file, not the head of the first
    np.testing.assert_array_equal(sub.kspace.numpy(), full.kspace.numpy()[picked])
    first = load_slices(data_dir, "test", num_slices=3, sens_backend="none")
    assert first.slice_nums == [0, 1, 2] and len(set(first.fnames)) == 1
    assert len(load_slices(data_dir, "test", num_slices=99, sens_backend="none", spread=True).fnames) == total


def test_file_contents_are_consistent(data_dir):
    with h5py.File(sorted((data_dir / "val").glob("*.h5"))[0]) as f:
        k, maps, image, target = f["kspace"][()], f["sens_maps"][()], f["image"][()], f["reconstruction_rss"][()]
        assert f.attrs["max"] == pytest.approx(target.max())
        assert np.isfinite(k).all() and k.dtype == np.complex64
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(1), 1, atol=1e-4)
    from fastmri_diffmask.simulate import ifft2c_np

    combined = (maps.conj() * ifft2c_np(k)).sum(1)
    noise = float(np.abs(combined - image).std())
    assert noise < 0.01 and noise > 0  # noise at the stated SNR (50 dB -> std 0.003), not zero


def test_recon_zero_filled_writes_outputs(data_dir, tmp_path):
    out = tmp_path / "r"
    rc = main(["recon", "--data", str(data_dir), "--split", "test", "--mask-type", "equispaced_fraction",
               "--acceleration", "4", "--method", "zero-filled", "--out", str(out), "--sens-maps", "file",
               "--num-low-frequencies", "4"])
    assert rc == 0
    res = json.loads((out / "metrics.json").read_text())
    assert len(res["slices"]) == len(TEST_BLOCK) and 5 < res["mean"]["psnr"] < 60
    with h5py.File(sorted((out / "reconstructions").glob("*.h5"))[0]) as f:
        assert f["reconstruction"].shape[1:] == (32, 32)
        assert f.attrs["acceleration"] == pytest.approx(32 / f["mask"][0].sum())


def test_recon_dds_with_a_user_prior_file_beats_zero_filled(data_dir, tmp_path):
    # A user's own prior file (here a GaussianPrior fitted to the validation slices at the
    # samplers' 99th-percentile scale) drives `recon --method dds` end to end.
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.physics import percentile_scale
    from fastmri_diffmask.prior.gaussian import GaussianPrior
    from fastmri_diffmask.prior.weights import save_prior

    images = load_slices(data_dir, "val", sens_backend="file").images
    prior = GaussianPrior.fit(images / percentile_scale(images))
    weights = save_prior(tmp_path / "gauss.safetensors", prior, prior.config)
    psnr = {}
    for method in ("zero-filled", "dds"):
        out = tmp_path / method
        assert main(["recon", "--data", str(data_dir), "--split", "test", "--mask-type", "equispaced_fraction",
                     "--acceleration", "4", "--method", method, "--out", str(out), "--sens-maps", "file",
                     "--num-low-frequencies", "4", "--prior", str(weights), "--steps", "10", "--device", "cpu"]) == 0
        psnr[method] = json.loads((out / "metrics.json").read_text())["mean"]["psnr"]
    assert psnr["dds"] > psnr["zero-filled"] + 1.0, psnr


def _bad(tmp_path, capsys, argv):
    out = tmp_path / "out"
    rc = main(argv + ["--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "error" in err
    assert not (out / "metrics.csv").exists() and not (out / "metrics.json").exists()
    return err


def _recon(data, **kw):
    args = {"--data": str(data), "--split": "test", "--mask-type": "equispaced_fraction", "--acceleration": "4",
            "--method": "zero-filled", "--sens-maps": "file"}
    args.update(kw)
    return [x for kv in [("recon",)] + [(k, v) for k, v in args.items()] for x in kv]


def test_recon_bad_inputs(data_dir, tmp_path, capsys, monkeypatch):
    assert "does not exist" in _bad(tmp_path, capsys, _recon(tmp_path / "missing"))
    assert "unknown method" in _bad(tmp_path, capsys, _recon(data_dir, **{"--method": "magic-recon"}))
    assert "mask" in _bad(tmp_path, capsys, _recon(data_dir, **{"--mask-type": "spiral"}))
    assert "acceleration" in _bad(tmp_path, capsys, _recon(data_dir, **{"--acceleration": "1"}))
    assert _bad(tmp_path, capsys, _recon(data_dir, **{"--acceleration": "16", "--num-low-frequencies": "8"}))
    assert "--cg-iters" in _bad(tmp_path, capsys, _recon(data_dir, **{"--method": "dds", "--cg-iters": "0"}))
    assert "--churn" in _bad(tmp_path, capsys, _recon(data_dir, **{"--method": "dds", "--churn": "-1"}))
    # NaN k-space, truncated file, non-fastMRI h5
    bad = tmp_path / "bad"
    (bad / "test").mkdir(parents=True)
    src = sorted((data_dir / "test").glob("*.h5"))[0]
    with h5py.File(src) as f, h5py.File(bad / "test" / "nan.h5", "w") as g:
        k = f["kspace"][()]
        k[0, 0, 0, 0] = np.nan
        g["kspace"] = k
    assert "NaN" in _bad(tmp_path, capsys, _recon(bad))
    (bad / "test" / "nan.h5").unlink()
    (bad / "test" / "trunc.h5").write_bytes(src.read_bytes()[:5000])
    assert "not a readable HDF5 file" in _bad(tmp_path, capsys, _recon(bad))
    (bad / "test" / "trunc.h5").unlink()
    with h5py.File(bad / "test" / "other.h5", "w") as g:
        g["data"] = np.zeros(3)
    assert "not a fastMRI file" in _bad(tmp_path, capsys, _recon(bad))
    # bart missing
    monkeypatch.setenv("FASTMRI_DIFFMASK_BART", str(tmp_path / "no-bart"))
    assert "bart" in _bad(tmp_path, capsys, _recon(data_dir, **{"--method": "bart-l1"}))
