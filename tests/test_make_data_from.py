"""``make-data --from FILE``: a user's own magnitude image or volume as fastMRI multi-coil files
(the transfer test set of issue #6), read back with the package's loader and fastMRI's own classes."""

import h5py
import numpy as np
import pytest
from fastmri.data import SliceDataset
from fastmri.data.subsample import create_mask_for_mask_type
from fastmri.data.transforms import VarNetDataTransform

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.dataset import load_slices
from fastmri_diffmask.magnitude import load_magnitude_slices

SIZE, COILS = 32, 4


def head(h: int = 40, w: int = 30, seed: int = 0) -> np.ndarray:
    """A non-square 'head': an ellipse of textured tissue with a bright off-centre marker."""
    y, x = np.mgrid[-1:1:h * 1j, -1:1:w * 1j]
    rng = np.random.default_rng(seed)
    img = ((x / 0.8) ** 2 + (y / 0.9) ** 2 < 1) * (0.5 + 0.2 * rng.random((h, w)))
    img[h // 5:h // 5 + 4, w // 5:w // 5 + 3] = 1.0  # top-left marker: orientation is checkable
    return img


def volume() -> np.ndarray:
    """(40, 30, 7): five slices with tissue along the last axis, the first and last empty."""
    vol = np.stack([head(seed=i) * (0.6 + 0.1 * i) for i in range(7)], axis=-1)
    vol[..., 0] = 0
    vol[..., -1] = 0.001  # faint, below the tissue level
    return vol.astype(np.float32)


def make(src, out, *extra) -> int:
    return main(["make-data", "--from", str(src), "--out", str(out), "--size", str(SIZE), "--coils", str(COILS),
                 *map(str, extra)])


def check_fastmri_reads(folder, n):
    mask_func = create_mask_for_mask_type("equispaced_fraction", [0.125], [4])
    ds = SliceDataset(folder, transform=VarNetDataTransform(mask_func=mask_func), challenge="multicoil")
    assert len(ds) == n
    sample = ds[0]
    assert sample.masked_kspace.shape == (COILS, SIZE, SIZE, 2) and sample.target.shape == (SIZE, SIZE)
    raw = SliceDataset(folder, transform=None, challenge="multicoil")[0]
    assert raw[3]["padding_left"] == 0 and raw[3]["padding_right"] == SIZE


def test_2d_npy_with_repeats(tmp_path):
    src = tmp_path / "subj.npy"
    np.save(src, head())
    assert make(src, tmp_path / "out", "--repeats", 3) == 0
    files = sorted((tmp_path / "out" / "test").glob("*.h5"))
    assert [f.name for f in files] == [f"subj_r{r}_00.h5" for r in range(3)]
    data = load_slices(tmp_path / "out", "test")
    assert data.kspace.shape == (3, COILS, SIZE, SIZE) and data.target.shape == (3, SIZE, SIZE)
    check_fastmri_reads(tmp_path / "out" / "test", 3)
    expected, _ = load_magnitude_slices(src, SIZE)
    images, kspaces = [], []
    with h5py.File(files[0]) as ref_file:
        ref_keys, ref_attrs = set(ref_file), set(ref_file.attrs)
    for r, path in enumerate(files):
        with h5py.File(path) as f:
            assert set(f) == ref_keys and set(f.attrs) == ref_attrs
            assert f.attrs["source_file"] == "subj.npy" and f.attrs["repeat"] == r
            assert f.attrs["slice_index"].tolist() == [0] and f.attrs["patient_id"] == "subj"
            images.append(np.abs(f["image"][0]))
            kspaces.append(f["kspace"][()])
    # the noise-free magnitude is the prepared slice (scaled); the repeats differ only in simulation
    for img in images:
        np.testing.assert_allclose(img / img.max(), expected[0] / expected[0].max(), atol=1e-5)
    assert not np.allclose(kspaces[0], kspaces[1])
    # padded to a square, not stretched: the 40 x 30 image keeps its aspect ratio
    cols = np.flatnonzero(expected[0].max(0) > 0.05)
    rows = np.flatnonzero(expected[0].max(1) > 0.05)
    assert 0.6 < len(cols) / len(rows) < 0.9


def test_3d_npy_skips_empty_slices_and_chunks(tmp_path):
    src = tmp_path / "vol.npy"
    np.save(src, volume())
    out = tmp_path / "out"
    assert make(src, out, "--repeats", 2, "--slices-per-file", 2, "--split-name", "transfer") == 0
    files = sorted((out / "transfer").glob("*.h5"))
    assert len(files) == 2 * 3  # 5 slices with tissue in files of 2, 2, 1; per repeat
    data = load_slices(out, "transfer")
    assert len(data.kspace) == 2 * 5
    check_fastmri_reads(out / "transfer", 10)
    index = []
    for path in files:
        with h5py.File(path) as f:
            if f.attrs["repeat"] == 0:
                index += f.attrs["slice_index"].tolist()
    assert index == [1, 2, 3, 4, 5]
    # another axis: 40 slices of (30, 7), of which some rows of the head are empty
    assert make(src, tmp_path / "ax0", "--axis", 0) == 0
    n0 = len(load_slices(tmp_path / "ax0", "test").kspace)
    assert 20 < n0 < 40


def test_nifti_is_reoriented_like_the_embedded_data(tmp_path):
    nib = pytest.importorskip("nibabel")
    vol = volume()
    np.save(tmp_path / "vol.npy", vol)
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "vol.nii.gz")
    assert make(tmp_path / "vol.nii.gz", tmp_path / "nii", "--slices-per-file", 12) == 0
    assert make(tmp_path / "vol.npy", tmp_path / "npy", "--slices-per-file", 12) == 0
    with h5py.File(tmp_path / "nii" / "test" / "vol_r0_00.h5") as a, h5py.File(tmp_path / "npy" / "test" / "vol_r0_00.h5") as b:
        assert a.attrs["source_file"] == "vol.nii.gz" and a["kspace"].shape == b["kspace"].shape == (5, COILS, SIZE, SIZE)
        # NIfTI voxel order is turned 90 degrees (anterior up), a .npy is taken as stored
        np.testing.assert_allclose(np.abs(a["image"][()]), np.rot90(np.abs(b["image"][()]), axes=(1, 2)), atol=1e-5)
    assert len(load_slices(tmp_path / "nii", "test").kspace) == 5


def _bad_inputs(tmp_path):
    arrays = {"4d.npy": np.ones((3, 3, 3, 3)), "1d.npy": np.ones(50), "zeros.npy": np.zeros((40, 30)),
              "nan.npy": np.full((40, 30), np.nan), "sliver.npy": np.pad(np.ones((2, 2)), 19)}
    for name, arr in arrays.items():
        np.save(tmp_path / name, arr)
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    (tmp_path / "junk.nii.gz").write_bytes(b"not nifti")
    np.save(tmp_path / "ok.npy", head())


@pytest.mark.parametrize("name,extra,words", [
    ("missing.npy", [], "does not exist"),
    ("img.png", [], "unknown file type"),
    ("junk.npy", [], "not a readable .npy"),
    ("junk.nii.gz", [], "NIfTI"),
    ("4d.npy", [], "2D image"),
    ("1d.npy", [], "2D image"),
    ("zeros.npy", [], "all zeros"),
    ("nan.npy", [], "NaN"),
    ("sliver.npy", [], "no slice has tissue"),
    ("ok.npy", ["--repeats", "0"], "--repeats"),
    ("ok.npy", ["--split", "test"], "--split-name"),
    ("ok.npy", ["--split-name", "../x"], "--split-name"),
    ("ok.npy", ["--size", "8"], "--size"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, name, extra, words):
    _bad_inputs(tmp_path)
    out = tmp_path / "out"
    rc = make(tmp_path / name, out, *extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1 and "error" in err and words in err, err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_axis_out_of_range_and_stale_files(tmp_path, capsys):
    np.save(tmp_path / "vol.npy", volume())
    out = tmp_path / "out"
    assert make(tmp_path / "vol.npy", out, "--axis", 3) == 2
    assert "--axis 3" in capsys.readouterr().err and not out.exists()
    # a smaller rerun into the same folder would leave the old repeats mixed in: refused
    assert make(tmp_path / "vol.npy", out, "--repeats", 2) == 0
    before = {p: p.stat().st_mtime_ns for p in (out / "test").glob("*.h5")}
    assert make(tmp_path / "vol.npy", out, "--repeats", 1) == 2
    assert "already holds 1 other h5" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (out / "test").glob("*.h5")} == before
    assert make(tmp_path / "vol.npy", out, "--repeats", 2) == 0  # the same set again overwrites in place


def test_transfer_config_reads_the_masks_the_p1_benchmark_writes(tmp_path):
    """recon_configs/transfer_dipy_t1.yaml points at the files compare writes for the P1 study's masks."""
    import dataclasses
    from pathlib import Path

    from fastmri_diffmask.compare.config import LEARNED, load_config
    from fastmri_diffmask.compare.engine import learned_mask_path

    configs = Path(__file__).resolve().parents[1] / "recon_configs"
    study = load_config(configs / "benchmark_p1_128.yaml")
    transfer = load_config(configs / "transfer_dipy_t1.yaml")
    assert transfer.data == "runs/transfer_dipy_t1" and transfer.split == "test" and transfer.kind == "line"
    assert transfer.accelerations == study.accelerations == [4.0, 8.0]
    assert transfer.num_low_frequencies == study.num_low_frequencies
    learned = {m.name: m for m in transfer.masks if m.type == LEARNED}
    assert set(learned) == {m.name for m in study.masks if m.type == LEARNED}
    assert all(m.learn is None and m.file for m in learned.values())
    for r in transfer.accelerations:
        for name, spec in learned.items():
            # where the study's own run leaves the mask (engine's naming; an existing file is not relearned)
            written = tmp_path / "masks" / f"{name}_R{r:g}.safetensors"
            written.parent.mkdir(exist_ok=True)
            written.touch()
            as_study = learned_mask_path(study, dataclasses.replace(spec, file=None), r, tmp_path)
            assert as_study == written
            assert spec.file.replace("{R}", f"{r:g}") == f"{study.out}/masks/{written.name}"
    baselines = {m.type: m.seeds for m in transfer.masks if m.type != LEARNED}
    assert baselines == {"equispaced_fraction": 1, "vd_random": 2}
    methods = {m.name: m.options for m in transfer.methods}
    assert set(methods) == {"dps", "bart-l1", "zero-filled"} and methods["dps"]["steps"] == 100
