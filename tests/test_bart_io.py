"""BART .cfl/.hdr I/O and the bart binding, checked against the real ``bart`` binary."""

import os
import shutil

import numpy as np
import pytest

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.io.bart import (
    BART_ENV,
    BartError,
    bart_path,
    kspace_from_bart,
    kspace_to_bart,
    mask_to_bart,
    require_bart,
    run_bart,
)
from fastmri_diffmask.io.cfl import read_cfl, write_cfl
from fastmri_diffmask.recon.classical import fft2c

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="bart binary not installed")


def _crandn(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 1, 3), (5, 3, 1, 4), (3, 2, 1, 1, 2)])
def test_cfl_round_trip_odd_shapes(tmp_path, shape):
    a = _crandn(shape)
    write_cfl(tmp_path / "a", a)
    b = read_cfl(tmp_path / "a")
    # trailing singletons are dropped, inner ones kept
    want = list(shape)
    while len(want) > 1 and want[-1] == 1:
        want.pop()
    assert b.shape == tuple(want)
    assert b.dtype == np.complex64
    np.testing.assert_array_equal(b.reshape(shape), a)
    assert read_cfl(tmp_path / "a.cfl", squeeze_trailing=False).shape == tuple(shape) + (1,) * (16 - len(shape))


def test_cfl_layout_is_column_major_complex64(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3) + 1j * 10
    write_cfl(tmp_path / "m", a)
    lines = (tmp_path / "m.hdr").read_text().splitlines()
    assert lines[0] == "# Dimensions"
    assert [int(v) for v in lines[1].split()] == [2, 3] + [1] * 14
    raw = np.fromfile(tmp_path / "m.cfl", dtype=np.float32)
    # dim 0 fastest, real/imag interleaved
    np.testing.assert_array_equal(raw[0::2], [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(raw[1::2], [10] * 6)
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_read_cfl_bad_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_cfl(tmp_path / "missing")
    write_cfl(tmp_path / "t", _crandn((4, 4)))
    with open(tmp_path / "t.cfl", "r+b") as f:
        f.truncate(8 * 10)
    with pytest.raises(UserError, match="truncated") as err:
        read_cfl(tmp_path / "t")
    assert "\n" not in str(err.value)


@needs_bart
def test_bart_reads_our_files_and_we_read_bart_files(tmp_path):
    a = _crandn((3, 5, 2), seed=1)
    out = run_bart("scale 2", a)
    np.testing.assert_allclose(out, 2 * a, rtol=1e-6)
    ph = run_bart("phantom -k -s 3 -x 24")  # written by BART itself
    assert ph.shape == (24, 24, 1, 3)
    assert ph.dtype == np.complex64 and np.abs(ph).max() > 0


@needs_bart
def test_bart_fft_equals_numpy_fft2c_through_layout_helpers():
    img = _crandn((4, 20, 13), seed=2)  # (coils, H, W), odd W
    k_bart = kspace_from_bart(run_bart(["fft", "-u", "3"], kspace_to_bart(img)))
    k_np = fft2c(img)
    np.testing.assert_allclose(k_bart, k_np, atol=1e-4 * np.abs(k_np).max())
    back = kspace_from_bart(run_bart("fft -i -u 3", kspace_to_bart(k_np)))
    np.testing.assert_allclose(back, img, atol=1e-4)


def test_layout_helpers_round_trip():
    k = _crandn((6, 9, 11))
    b = kspace_to_bart(k)
    assert b.shape == (9, 11, 1, 6)
    np.testing.assert_array_equal(b[:, :, 0, 2], k[2])
    np.testing.assert_array_equal(kspace_from_bart(b), k)
    pat = mask_to_bart(np.arange(11) % 2, (9, 11))
    assert pat.shape == (9, 11) and pat[:, 1].real.all() and not pat[:, 0].real.any()
    with pytest.raises(UserError):
        mask_to_bart(np.ones(10), (9, 11))


@needs_bart
def test_bart_error_carries_stderr():
    with pytest.raises(BartError) as err:
        run_bart("fft -u 3")  # no input file: BART prints its usage to stderr
    assert err.value.returncode != 0
    assert "fft" in err.value.stderr.lower() or "usage" in err.value.stderr.lower()
    assert err.value.stderr.splitlines()[0].strip() in str(err.value)  # BART's own message is carried
    assert "\x1b" not in str(err.value)
    assert isinstance(err.value, RuntimeError)


def test_require_bart_missing(monkeypatch, tmp_path):
    monkeypatch.delenv(BART_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert bart_path() is None
    with pytest.raises(UserError) as err:
        require_bart()
    assert str(err.value) == "bart not found on PATH; install it with: apt-get install bart"
    with pytest.raises(UserError):
        run_bart("version", num_outputs=0)
    monkeypatch.setenv(BART_ENV, str(tmp_path / "nope"))
    with pytest.raises(UserError, match=BART_ENV) as err:
        require_bart()
    assert "\n" not in str(err.value)


@needs_bart
def test_env_var_points_to_bart(monkeypatch, tmp_path):
    real = shutil.which("bart")
    link = tmp_path / "mybart"
    os.symlink(real, link)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv(BART_ENV, str(link))
    assert bart_path() == str(link)
    np.testing.assert_allclose(run_bart("scale 3", np.ones((2, 2))), 3 * np.ones((2, 2)))
