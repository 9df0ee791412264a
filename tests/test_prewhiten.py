"""Noise prewhitening: the whitening matrix, ISMRMRD noise readouts, convert-ismrmrd's output."""

from __future__ import annotations

import shutil
import subprocess

import h5py
import numpy as np
import pytest

from fastmri_diffmask.cli.main import main
from fastmri_diffmask.errors import UserError
from fastmri_diffmask.io.ismrmrd_raw import read_ismrmrd
from fastmri_diffmask.io.prewhiten import (apply_whitening, dwell_time_scale, noise_covariance,
                                           whitening_matrix)

GENERATOR = "ismrmrd_generate_cartesian_shepp_logan"
needs_generator = pytest.mark.skipif(shutil.which(GENERATOR) is None, reason=f"{GENERATOR} not installed")
NOISE_BIT = 1 << 18  # ACQ_IS_NOISE_MEASUREMENT (flag 19)


def mixing_matrix(coils, seed=0):
    """A known complex coil mixing: unequal gains and strong complex cross-talk."""
    rng = np.random.default_rng(seed)
    cross = (rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils))) * 0.5
    gains = np.geomspace(0.5, 3.0, coils)
    return (np.diag(gains) @ (np.eye(coils) + cross)).astype(np.complex128)


def white(rng, coils, n):
    return (rng.standard_normal((coils, n)) + 1j * rng.standard_normal((coils, n))) / np.sqrt(2)


def sample_cov(x):
    return x @ x.conj().T / x.shape[1]


def tolerance(*counts, k=6.0):
    """k standard errors of a unit-variance sample covariance entry (1/sqrt(N) each)."""
    return k * sum(1 / np.sqrt(n) for n in counts)


# ----------------------------------------------------------------------------- the matrix


def test_whitening_matrix_is_inverse_lower_cholesky():
    M = mixing_matrix(6)
    psi = M @ M.conj().T
    W = whitening_matrix(psi)
    assert np.allclose(np.triu(W, 1), 0)  # lower-triangular, as BART's optmat
    assert np.all(np.real(np.diag(W)) > 0) and np.allclose(np.imag(np.diag(W)), 0)
    assert np.allclose(W @ psi @ W.conj().T, np.eye(6), atol=1e-10)
    assert np.allclose(np.linalg.inv(W) @ np.linalg.inv(W).conj().T, psi)


@pytest.mark.parametrize("coils,n_noise,n_data", [(4, 256, 4096), (8, 512, 20000), (16, 4000, 4000)])
def test_whitened_independent_noise_has_identity_covariance(coils, n_noise, n_data):
    """W estimated from one noise scan whitens *other* noise of the same coils (not a tautology)."""
    rng = np.random.default_rng(coils)
    M = mixing_matrix(coils, seed=coils)
    psi_hat = noise_covariance(M @ white(rng, coils, n_noise))
    W = whitening_matrix(psi_hat)
    data_noise = (M @ white(rng, coils, n_data)).astype(np.complex64)
    out = apply_whitening(data_noise, W, axis=0)
    assert out.dtype == np.complex64
    dev = np.abs(sample_cov(out.astype(np.complex128)) - np.eye(coils)).max()
    tol = tolerance(n_noise, n_data)
    assert dev < tol
    # the check discriminates: unwhitened noise, or W in another convention, fails it
    assert np.abs(sample_cov(data_noise) - np.eye(coils)).max() > tol
    for wrong in (W.T, W.conj(), W.conj().T):
        assert np.abs(sample_cov(apply_whitening(data_noise, wrong)) - np.eye(coils)).max() > tol


def test_covariance_estimate_and_dwell_scale():
    rng = np.random.default_rng(1)
    x = white(rng, 3, 10) * 2
    assert np.allclose(noise_covariance(x), x @ x.conj().T / 10)  # 1/N, no mean subtraction
    assert dwell_time_scale(10.0, 5.0) == 2.0
    assert dwell_time_scale(0.0, 5.0) == 1.0 and dwell_time_scale(5.0, 0.0) == 1.0


@pytest.mark.parametrize("case", ["dead_coil", "singular", "not_hermitian", "nan", "few_samples"])
def test_bad_covariance_user_error(case):
    rng = np.random.default_rng(2)
    n = white(rng, 4, 100)
    if case == "dead_coil":
        n[2] = 0
    elif case == "singular":
        n[3] = n[1]
    elif case == "nan":
        n[0, 5] = np.nan
    with pytest.raises(UserError) as err:
        if case == "not_hermitian":
            whitening_matrix(np.triu(np.ones((3, 3))) + np.eye(3))
        elif case == "few_samples":
            noise_covariance(n[:, :3])
        else:
            whitening_matrix(noise_covariance(n))
    assert "\n" not in str(err.value)
    if case == "dead_coil":
        assert "coil 2" in str(err.value)


# ----------------------------------------------------------------------------- ISMRMRD files


def generate(folder, name, *args):
    subprocess.run([GENERATOR, "-o", name, *map(str, args)], cwd=folder, check=True,
                   capture_output=True, timeout=60)
    return folder / name


def mix_file(path, M):
    """Apply the coil mixing ``M`` to every acquisition's samples (noise and imaging) in place."""
    with h5py.File(path, "r+") as f:
        rec = f["dataset/data"][()]
        for i in range(len(rec)):
            nc = int(rec["head"][i]["active_channels"])
            d = rec["data"][i].view(np.complex64).reshape(nc, -1)
            rec["data"][i] = (M @ d).astype(np.complex64).view(np.float32).reshape(-1)
        f["dataset/data"][...] = rec


def truth_kspace(path, matrix):
    """Noise-free coil k-space (coils, x, y) of the generator's ground truth, oversampling cropped."""
    with h5py.File(path, "r") as f:
        c = f["dataset/coil_images"][()]
    c = (c["real"] + 1j * c["imag"])[0].transpose(0, 2, 1)
    start = c.shape[1] // 2 - matrix // 2
    c = c[:, start:start + matrix]
    c = np.fft.ifftshift(c, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(c, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Phantom, 128 matrix, 4 coils, R = 2 with 16 calibration lines, noise scan (-C), mixed."""
    folder = tmp_path_factory.mktemp("mixed")
    path = generate(folder, "mixed.h5", "-m", 128, "-c", 4, "-a", 2, "-w", 16, "-n", 0.05, "-C")
    M = mixing_matrix(4, seed=3)
    mix_file(path, M)
    return path, M


@needs_generator
def test_phantom_whitened_imaging_noise_is_white(mixed):
    path, M = mixed
    r = read_ismrmrd(path, repetitions=0)
    assert r.prewhitened and r.noise_samples == 256 and r.noise_dwell_scale == 1.0
    assert r.noise_covariance.shape == (4, 4)
    W = whitening_matrix(r.noise_covariance)
    lines = r.mask > 0
    truth = np.einsum("ij,jxy->ixy", W @ M, truth_kspace(path, 128))
    residual = (r.kspace[0] - truth)[..., lines].reshape(4, -1)  # the imaging readouts' noise
    n_data = residual.shape[1]
    dev = np.abs(sample_cov(residual) - np.eye(4)).max()
    assert dev < tolerance(r.noise_samples, n_data)
    # the estimated covariance is the mixed noise's, within sampling error
    sigma2 = 2 * 0.05 ** 2  # the generator's -n is the std of real and imaginary parts
    rel = np.abs(r.noise_covariance - sigma2 * M @ M.conj().T) / (sigma2 * np.abs(M @ M.conj().T).max())
    assert rel.max() < tolerance(r.noise_samples)
    # and without whitening the same noise is far from white
    off = read_ismrmrd(path, repetitions=0, prewhiten=False)
    assert not off.prewhitened and off.noise_covariance is None
    raw_res = (off.kspace[0] - np.einsum("ij,jxy->ixy", M, truth_kspace(path, 128)))[..., lines]
    raw_cov = sample_cov(raw_res.reshape(4, -1) / np.sqrt(sigma2))
    assert np.abs(raw_cov - np.eye(4)).max() > 10 * tolerance(r.noise_samples, n_data)
    # whitening is W applied to the unwhitened k-space, nothing else
    expected = apply_whitening(off.kspace, W, axis=1)
    assert np.linalg.norm(r.kspace - expected) / np.linalg.norm(expected) < 1e-6


@needs_generator
def test_convert_round_trip_stores_covariance(tmp_path, mixed):
    from fastmri.data import SliceDataset
    from fastmri.data.transforms import VarNetDataTransform

    path, _ = mixed
    out, off = tmp_path / "w" / "w.h5", tmp_path / "off" / "off.h5"
    assert main(["convert-ismrmrd", str(path), str(out), "--repetitions", "0"]) == 0
    assert main(["convert-ismrmrd", str(path), str(off), "--repetitions", "0", "--no-prewhiten"]) == 0
    r = read_ismrmrd(path, repetitions=0)
    with h5py.File(out, "r") as f, h5py.File(off, "r") as g:
        psi = f["noise_covariance"][()]
        assert psi.dtype == np.complex128 and np.array_equal(psi, r.noise_covariance)
        assert f.attrs["noise_prewhitened"] == 1 and f.attrs["noise_samples"] == 256
        assert f.attrs["noise_dwell_time_scale"] == 1.0
        assert np.array_equal(f["kspace"][()], r.kspace)
        # the unwhitened data come back as cholesky(Psi) @ kspace
        back = apply_whitening(f["kspace"][()], np.linalg.cholesky(psi), axis=1)
        k_off = g["kspace"][()]
        assert np.linalg.norm(back - k_off) / np.linalg.norm(k_off) < 1e-5
        assert np.array_equal(f["mask"][()], g["mask"][()])
        assert "noise_covariance" not in g and not any(k.startswith("noise_") for k in g.attrs)
    sample = SliceDataset(out.parent, challenge="multicoil", transform=VarNetDataTransform())[0]
    assert sample.masked_kspace.shape == (4, 128, 128, 2)


def _strip_noise(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        rec = f["dataset/data"][()]
        keep = rec[(rec["head"]["flags"] & NOISE_BIT) == 0]
        del f["dataset/data"]
        f["dataset"].create_dataset("data", data=keep, maxshape=(None,))
    return dst


@needs_generator
def test_no_prewhiten_is_bit_identical_to_no_noise_readouts(tmp_path, mixed):
    """With the flag off the noise readouts change nothing: the same k-space as a file without them."""
    path, _ = mixed
    stripped = _strip_noise(path, tmp_path / "stripped.h5")
    a, b = tmp_path / "a" / "a.h5", tmp_path / "b" / "b.h5"
    assert main(["convert-ismrmrd", str(path), str(a), "--repetitions", "0", "--no-prewhiten"]) == 0
    assert main(["convert-ismrmrd", str(stripped), str(b), "--repetitions", "0"]) == 0
    with h5py.File(a, "r") as f, h5py.File(b, "r") as g:
        assert set(f) == set(g) and dict(f.attrs) == dict(g.attrs)
        for key in ("kspace", "mask", "reconstruction_rss"):
            assert np.array_equal(f[key][()], g[key][()])
    assert read_ismrmrd(stripped, repetitions=0).prewhitened is False  # nothing to whiten with


@needs_generator
def test_dwell_time_ratio_scales_covariance(tmp_path, mixed):
    path, _ = mixed
    slow = tmp_path / "slow.h5"
    shutil.copy(path, slow)
    with h5py.File(slow, "r+") as f:
        rec = f["dataset/data"][()]
        noise = (rec["head"]["flags"] & NOISE_BIT) != 0
        rec["head"]["sample_time_us"][noise] = 2 * rec["head"]["sample_time_us"][noise]
        f["dataset/data"][...] = rec
    base, scaled = read_ismrmrd(path, repetitions=0), read_ismrmrd(slow, repetitions=0)
    assert scaled.noise_dwell_scale == 2.0
    assert np.allclose(scaled.noise_covariance, 2 * base.noise_covariance)
    expected = base.kspace / np.sqrt(2)
    assert np.linalg.norm(scaled.kspace - expected) / np.linalg.norm(expected) < 1e-6


@needs_generator
@pytest.mark.parametrize("case", ["dead_coil", "coil_count"])
def test_bad_noise_exit_2_no_output(tmp_path, mixed, capsys, case):
    path, _ = mixed
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as f:
        rec = f["dataset/data"][()]
        i = int(np.flatnonzero((rec["head"]["flags"] & NOISE_BIT) != 0)[0])
        d = rec["data"][i].view(np.complex64).reshape(4, -1).copy()
        if case == "dead_coil":
            d[1] = 0
        else:
            d = d[:3]
            rec["head"]["active_channels"][i] = 3
        rec["data"][i] = d.view(np.float32).reshape(-1)
        f["dataset/data"][...] = rec
    out = tmp_path / "out" / "out.h5"
    capsys.readouterr()
    assert main(["convert-ismrmrd", str(bad), str(out), "--repetitions", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--no-prewhiten" in err
    assert not out.exists() and (not out.parent.exists() or not any(out.parent.iterdir()))
    assert main(["convert-ismrmrd", str(bad), str(out), "--repetitions", "0", "--no-prewhiten"]) == 0
