"""ISMRMRD raw data reader and convert-ismrmrd, against the real ISMRMRD phantom generator."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.io.ismrmrd_header import NS
from fastmri_diffmask.io.ismrmrd_raw import read_ismrmrd

GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"
pytestmark = pytest.mark.skipif(shutil.which(GENERATOR) is None, reason=f"{GENERATOR} not installed")


def generate(folder, name, *args):
    """Run the ISMRMRD phantom generator into ``folder/name`` (the tool writes into its cwd)."""
    subprocess.run([GENERATOR, "-o", name, *map(str, args)], cwd=folder, check=True,
                   capture_output=True, timeout=60)
    return folder / name


def fft2c(x):
    x = np.fft.ifftshift(x, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(x, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def ifft2c(x):
    x = np.fft.ifftshift(x, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(x, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def coil_images(path, matrix):
    """The generator's own ground truth ``(coils, rows=x, cols=y)``, readout oversampling cropped."""
    with h5py.File(path, "r") as f:
        c = f["dataset/coil_images"][()]
    c = (c["real"] + 1j * c["imag"])[0].transpose(0, 2, 1)  # stored (coil, y, x)
    start = c.shape[1] // 2 - matrix // 2
    return c[:, start:start + matrix]


def acquired_lines(path, repetition=0):
    """kspace_encode_step_1 of the non-noise readouts, straight from the file."""
    with h5py.File(path, "r") as f:
        head = f["dataset/data"][()]["head"]
    imaging = (head["flags"] & (1 << 18)) == 0
    sel = imaging & (head["idx"]["repetition"] == repetition)
    return np.unique(head["idx"]["kspace_encode_step_1"][sel])


def relerr(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("matrix,coils", [(64, 4), (96, 8)])
def test_fully_sampled_matches_coil_images(tmp_path, matrix, coils):
    path = generate(tmp_path, "full.h5", "-m", matrix, "-c", coils, "-O", 2, "-n", 0)
    r = read_ismrmrd(path)
    assert r.kspace.shape == (1, coils, matrix, matrix) and r.kspace.dtype == np.complex64
    assert relerr(ifft2c(r.kspace[0]), coil_images(path, matrix)) < 1e-5
    assert r.mask.shape == (matrix,) and np.all(r.mask == 1)
    assert r.num_low_frequencies == matrix
    assert r.acceleration is None and r.achieved_acceleration == 1.0
    assert r.noise_std is None
    assert "<trajectory>cartesian</trajectory>" in r.header_xml


@pytest.mark.parametrize("matrix,coils,accel,width", [(64, 4, 2, 16), (96, 8, 3, 12)])
def test_accelerated_mask_and_calibration(tmp_path, matrix, coils, accel, width):
    path = generate(tmp_path, "acc.h5", "-m", matrix, "-c", coils, "-a", accel, "-w", width, "-n", 0, "-C")
    with pytest.raises(UserError, match="zero noise variance.*--no-prewhiten"):  # -n 0: a silent noise scan
        read_ismrmrd(path, repetitions=0)
    r = read_ismrmrd(path, repetitions=0, prewhiten=False)
    assert not r.prewhitened and r.noise_covariance is None
    lines = acquired_lines(path, 0)
    assert np.array_equal(np.flatnonzero(r.mask), lines)
    assert r.num_low_frequencies == width
    assert r.acceleration == accel
    assert r.achieved_acceleration == pytest.approx(matrix / lines.size)
    assert r.noise_std is not None and r.noise_std.shape == (coils,)  # -C noise readout, skipped
    # sampled lines hold exactly the ground truth's k-space; the others are zero
    truth = fft2c(coil_images(path, matrix))
    assert relerr(r.kspace[0][..., lines], truth[..., lines]) < 1e-5
    assert np.all(r.kspace[0][..., r.mask == 0] == 0)


def test_repetitions_separate_average_and_pick(tmp_path):
    path = generate(tmp_path, "rep.h5", "-m", 64, "-c", 4, "-a", 2, "-w", 16, "-r", 2, "-n", 0)
    with h5py.File(path, "r") as f:
        nrep = int(f["dataset/data"][()]["head"]["idx"]["repetition"].max()) + 1
    sep = read_ismrmrd(path)
    assert sep.kspace.shape[0] == nrep == len(sep.entries)
    assert sep.mask.shape == (nrep, 64)  # interleaved repetitions sample different lines
    for k in range(nrep):
        assert np.array_equal(np.flatnonzero(sep.mask[k]), acquired_lines(path, k))
    assert sep.num_low_frequencies == 16
    avg = read_ismrmrd(path, repetitions="average")
    assert avg.kspace.shape[0] == 1 and np.all(avg.mask == 1)
    assert relerr(ifft2c(avg.kspace[0]), coil_images(path, 64)) < 1e-5
    one = read_ismrmrd(path, repetitions=1)
    assert np.array_equal(one.kspace[0], sep.kspace[1])
    with pytest.raises(UserError):
        read_ismrmrd(path, repetitions=nrep)


def test_convert_fully_sampled_loads_in_fastmri(tmp_path):
    from fastmri.data import SliceDataset
    from fastmri.data.subsample import EquiSpacedMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    path = generate(tmp_path, "full.h5", "-m", 64, "-c", 4, "-n", 0)
    root = tmp_path / "fastmri"
    assert main(["convert-ismrmrd", str(path), str(root / "full.h5")]) == 0
    ds = SliceDataset(root, challenge="multicoil", transform=None)
    kspace, mask, target, attrs, fname, slice_num = ds[0]
    assert kspace.shape == (4, 64, 64) and mask is None and target.shape == (64, 64)
    assert (attrs["padding_left"], attrs["padding_right"]) == (0, 64)
    assert tuple(attrs["encoding_size"][:2]) == (64, 64) and tuple(attrs["recon_size"][:2]) == (64, 64)
    rss = np.sqrt((np.abs(coil_images(path, 64)) ** 2).sum(0))
    assert relerr(target, rss) < 1e-5 and attrs["max"] == pytest.approx(target.max())
    assert attrs["acquisition"]
    sample = SliceDataset(root, challenge="multicoil",
                          transform=VarNetDataTransform(EquiSpacedMaskFunc([0.125], [4])))[0]
    assert sample.masked_kspace.shape == (4, 64, 64, 2) and tuple(sample.crop_size) == (64, 64)


def test_convert_accelerated_writes_mask(tmp_path):
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform

    path = generate(tmp_path, "acc.h5", "-m", 64, "-c", 4, "-a", 2, "-w", 16)
    root = tmp_path / "fastmri"
    assert main(["convert-ismrmrd", str(path), str(root / "acc.h5"), "--repetitions", "0"]) == 0
    with h5py.File(root / "acc.h5", "r") as f:
        assert f["kspace"].dtype == np.complex64 and f["kspace"].shape == (1, 4, 64, 64)
        assert np.array_equal(np.flatnonzero(f["mask"][()]), acquired_lines(path, 0))
        assert f.attrs["num_low_frequency"] == 16 and f.attrs["acceleration"] == 2
    sample = SliceDataset(root, challenge="multicoil", transform=VarNetDataTransform())[0]
    assert np.array_equal(np.flatnonzero(sample.mask.numpy().reshape(-1)), acquired_lines(path, 0))


def _edit_header(path, edit):
    with h5py.File(path, "r+") as f:
        root = ET.fromstring(f["dataset/xml"][0])
        edit(root)
        ET.register_namespace("", NS)
        f["dataset/xml"][0] = ET.tostring(root)


def _radial(root):
    root.find(f".//{{{NS}}}trajectory").text = "radial"


def _no_limits(root):
    enc = root.find(f"{{{NS}}}encoding")
    enc.remove(enc.find(f"{{{NS}}}encodingLimits"))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("phantom"), "p.h5", "-m", 32, "-c", 2)


@pytest.mark.parametrize("case", ["radial", "no_limits", "not_ismrmrd", "not_hdf5", "no_acquisitions",
                                  "missing", "fastmri_layout"])
def test_bad_input_user_error_and_exit_2(tmp_path, phantom, capsys, case):
    path = tmp_path / "in.h5"
    if case != "missing":
        shutil.copy(phantom, path)
    if case == "radial":
        _edit_header(path, _radial)
    elif case == "no_limits":
        _edit_header(path, _no_limits)
    elif case == "not_ismrmrd":
        path.unlink()
        with h5py.File(path, "w") as f:
            f["images"] = np.zeros((2, 2))
    elif case == "not_hdf5":
        path.write_text("hello\n")
    elif case == "no_acquisitions":
        with h5py.File(path, "r+") as f:
            del f["dataset/data"]
    elif case == "fastmri_layout":
        path.unlink()
        with h5py.File(path, "w") as f:
            f["kspace"] = np.zeros((1, 2, 4, 4), np.complex64)
            f["ismrmrd_header"] = "<x/>"
    with pytest.raises(UserError) as err:
        read_ismrmrd(path)
    assert "\n" not in str(err.value)
    out = tmp_path / "out" / "out.h5"
    capsys.readouterr()
    assert main(["convert-ismrmrd", str(path), str(out)]) == 2
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1 and "error" in stderr
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no temp file left either


def test_convert_refuses_differing_repetitions_without_output(tmp_path, capsys):
    path = generate(tmp_path, "rep.h5", "-m", 32, "-c", 2, "-a", 2, "-w", 8)
    out = tmp_path / "out.h5"
    assert main(["convert-ismrmrd", str(path), str(out)]) == 2
    assert "--repetitions" in capsys.readouterr().err and not out.exists()


def test_3d_readouts_and_convert_to_partitions(tmp_path):
    """A 3D Cartesian file (ky, kz encodes, 2x readout oversampling) built from a template."""
    from fastmri.data import SliceDataset

    from fastmri_diffmask.sequence import readout_table, write_ismrmrd_template

    rng = np.random.default_rng(0)
    coils, ex, ny, nz = 2, 32, 12, 8
    image = (rng.standard_normal((coils, ex, ny, nz)) + 1j * rng.standard_normal((coils, ex, ny, nz)))
    k = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(image, axes=(1, 2, 3)), axes=(1, 2, 3), norm="ortho"),
                        axes=(1, 2, 3)).astype(np.complex64)
    table = readout_table(np.ones((ny, nz)), 4, "linear")
    path = write_ismrmrd_template(tmp_path / "3d.h5", table, (ny, nz), 4, 2.0, readout=ex)
    with h5py.File(path, "r+") as f:
        rec = f["dataset/data"][()]
        rec["head"]["active_channels"] = rec["head"]["available_channels"] = coils
        for i, row in enumerate(table):
            rec["data"][i] = np.ascontiguousarray(k[:, :, row["ky"], row["kz"]]).view(np.float32).reshape(-1)
        f["dataset/data"][...] = rec
    r = read_ismrmrd(path)
    assert r.kspace.shape == (1, coils, ex // 2, ny, nz) and r.mask.shape == (ny, nz)
    crop = image[:, ex // 4: ex // 4 + ex // 2]
    img = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(r.kspace[0], axes=(1, 2, 3)), axes=(1, 2, 3),
                                       norm="ortho"), axes=(1, 2, 3))
    assert relerr(img, crop) < 1e-5
    root = tmp_path / "fastmri"
    assert main(["convert-ismrmrd", str(path), str(root / "3d.h5")]) == 0
    ds = SliceDataset(root, challenge="multicoil", transform=None)
    assert len(ds) == nz and ds[0][0].shape == (coils, ex // 2, ny)
    # each slice is a partition: its 2D image is the cropped volume at that kz-image position
    part = ifft2c(ds[3][0])
    assert relerr(part, crop[..., 3]) < 1e-5


def test_noise_std_comes_from_the_same_samples_as_the_prewhitener(tmp_path):
    """The generator's -n 0.05 is the std of each real part, so the complex std is 0.05 sqrt(2); the
    reported per-coil std and the whitener's covariance come from one decoding of the noise readouts."""
    path = generate(tmp_path, "noisy.h5", "-m", 64, "-c", 4, "-n", 0.05, "-C")
    r = read_ismrmrd(path, repetitions=0)
    assert r.prewhitened and r.noise_std.shape == (4,)
    np.testing.assert_allclose(r.noise_std, 0.05 * np.sqrt(2), rtol=0.15)  # 128 samples per coil
    diag = np.sqrt(np.real(np.diag(r.noise_covariance)) / r.noise_dwell_scale)
    np.testing.assert_allclose(r.noise_std, diag, rtol=0.02)  # centred vs not: within 2% here


def test_noise_std_per_coil_of_known_samples():
    from fastmri_diffmask.io.ismrmrd_noise import noise_std_per_coil

    rng = np.random.default_rng(0)
    sigma = np.array([0.5, 2.0])
    samples = (sigma[:, None] * (rng.standard_normal((2, 20000)) + 1j * rng.standard_normal((2, 20000)))
               / np.sqrt(2) + 3.0).astype(np.complex64)  # an offset the std must ignore
    np.testing.assert_allclose(noise_std_per_coil(samples), sigma, rtol=0.02)
    assert noise_std_per_coil(None) is None and noise_std_per_coil(samples[:, :1]) is None
