"""ESPIRiT (BART vs sigpy) and classical reconstructions on a simulated 8-coil slice."""

import shutil

import numpy as np
import pytest
import sigpy as sp
import sigpy.mri as mr
from skimage.metrics import peak_signal_noise_ratio

from fastmri_diffmask.errors import UserError
from fastmri_diffmask.masks.baselines import baseline_mask
from fastmri_diffmask.recon.classical import (
    apply_mask,
    coil_combine,
    data_scale,
    fft2c,
    ifft2c,
    l1_wavelet_recon,
    reconstruct,
    zero_filled,
)
from fastmri_diffmask.recon.espirit import detect_num_low_frequencies, espirit_maps

needs_bart = pytest.mark.skipif(shutil.which("bart") is None, reason="bart binary not installed")

N, COILS, R = 128, 8, 4


@pytest.fixture(scope="module")
def slice_data():
    """Shepp-Logan with a smooth phase, 8 birdcage coils, small complex noise, 1D vd mask at R=4."""
    img = sp.shepp_logan((N, N)).astype(np.complex64)
    yy, xx = np.mgrid[:N, :N] / N
    img = img * np.exp(1j * (1.0 * xx + 0.5 * yy)).astype(np.complex64)
    mps = mr.birdcage_maps((COILS, N, N)).astype(np.complex64)
    rng = np.random.default_rng(0)
    noise = 0.002 * (rng.standard_normal((COILS, N, N)) + 1j * rng.standard_normal((COILS, N, N)))
    kspace = (fft2c(mps * img) + noise).astype(np.complex64)
    bm = baseline_mask("vd_random", kspace.shape, R, seed=0)
    return dict(img=img, mps=mps, kspace=kspace, mask=bm.mask, num_low=bm.num_low_frequencies)


@pytest.fixture(scope="module")
def bart_maps(slice_data):
    if shutil.which("bart") is None:
        pytest.skip("bart binary not installed")
    return espirit_maps(apply_mask(slice_data["kspace"], slice_data["mask"]), backend="bart")


def _psnr(ref, x):
    ref, x = np.abs(ref), np.abs(x)
    return peak_signal_noise_ratio(ref, x, data_range=ref.max())


def test_fft2c_matches_fastmri():
    import fastmri
    import torch

    x = (np.random.default_rng(1).standard_normal((2, 6, 9)) * (1 + 1j)).astype(np.complex64)
    ref = fastmri.fft2c(torch.view_as_real(torch.from_numpy(x)))
    np.testing.assert_allclose(fft2c(x), torch.view_as_complex(ref).numpy(), atol=1e-5)
    np.testing.assert_allclose(ifft2c(fft2c(x)), x, atol=1e-5)


def test_zero_filled_definitions(slice_data):
    k, mps, img = slice_data["kspace"], slice_data["mps"], slice_data["img"]
    full = np.ones(N, dtype=np.float32)
    rss = zero_filled(k, full)
    assert rss.dtype == np.float32 and rss.shape == (N, N)
    np.testing.assert_allclose(rss, np.sqrt((np.abs(ifft2c(k)) ** 2).sum(0)), rtol=1e-5, atol=1e-6)
    comb = zero_filled(k, full, mps)
    expected = (np.abs(mps) ** 2).sum(0) * img
    assert comb.dtype == np.complex64
    assert np.linalg.norm(comb - expected) / np.linalg.norm(expected) < 0.02  # only noise differs
    # the mask really removes lines, and a (W,) mask equals its (H, W) broadcast
    m = slice_data["mask"]
    under = zero_filled(k, m)
    assert np.abs(under - rss).max() > 0.05
    np.testing.assert_array_equal(under, zero_filled(k, np.broadcast_to(m, (N, N))))


def test_detect_num_low_frequencies(slice_data):
    k = apply_mask(slice_data["kspace"], slice_data["mask"])
    assert detect_num_low_frequencies(k) == slice_data["num_low"]
    assert detect_num_low_frequencies(slice_data["kspace"]) == N
    # fastMRI passes 0 for "infer": same maps as None
    np.testing.assert_array_equal(espirit_maps(k, 0, backend="sigpy", device="cpu", max_iter=10),
                                  espirit_maps(k, None, backend="sigpy", device="cpu", max_iter=10))


@needs_bart
def test_espirit_bart_and_sigpy_agree(slice_data, bart_maps):
    k = apply_mask(slice_data["kspace"], slice_data["mask"])
    s_sigpy = espirit_maps(k, backend="sigpy", device="cpu")
    assert bart_maps.shape == s_sigpy.shape == (COILS, N, N)
    assert bart_maps.dtype == s_sigpy.dtype == np.complex64
    support = np.abs(slice_data["img"]) > 0.05
    # phase-invariant agreement of the two unit-norm coil vectors, pixel by pixel
    inner = np.abs(np.sum(np.conj(bart_maps) * s_sigpy, axis=0))
    assert inner[support].mean() > 0.99 and np.percentile(inner[support], 1) > 0.95
    # both match the true (normalised) birdcage maps up to phase
    truth = slice_data["mps"] / np.sqrt((np.abs(slice_data["mps"]) ** 2).sum(0))
    for maps in (bart_maps, s_sigpy):
        fit = np.abs(np.sum(np.conj(truth) * maps, axis=0))
        assert fit[support].mean() > 0.99
    # coil-combined magnitudes agree
    full = np.ones(N)
    a = np.abs(zero_filled(slice_data["kspace"], full, bart_maps))
    b = np.abs(zero_filled(slice_data["kspace"], full, s_sigpy))
    assert np.abs(a - b)[support].max() < 0.02 * a.max()


def test_espirit_bad_input(slice_data):
    k = apply_mask(slice_data["kspace"], slice_data["mask"])
    with pytest.raises(UserError, match="fully sampled"):
        espirit_maps(k, num_low_frequencies=slice_data["num_low"] + 4, backend="sigpy")
    with pytest.raises(UserError, match="kernel"):
        espirit_maps(k, num_low_frequencies=5, backend="sigpy")
    with pytest.raises(UserError, match="backend"):
        espirit_maps(k, backend="matlab")
    with pytest.raises(UserError, match="complex"):
        espirit_maps(np.abs(k), backend="sigpy")


@needs_bart
@pytest.mark.parametrize("backend", ["bart", "sigpy"])
def test_cs_l1_beats_zero_filled_on_the_same_scale(slice_data, bart_maps, backend):
    k, m = slice_data["kspace"], slice_data["mask"]
    ref = coil_combine(ifft2c(k), bart_maps)  # fully sampled coil combination: the target
    zf = zero_filled(k, m, bart_maps)
    x = l1_wavelet_recon(k, m, bart_maps, lamda=0.001, backend=backend, max_iter=100, device="cpu")
    assert x.shape == (N, N) and x.dtype == np.complex64
    assert _psnr(ref, x) >= _psnr(ref, zf) + 2.0
    # same scale (and phase) as the target: the least-squares gain is ~1
    gain = np.vdot(x, ref) / np.vdot(x, x)
    assert abs(gain - 1) < 0.05
    # lamda means the same whatever the data scale
    x_big = l1_wavelet_recon(1000 * k, m, bart_maps, lamda=0.001, backend=backend, max_iter=100, device="cpu")
    assert np.linalg.norm(x_big / 1000 - x) / np.linalg.norm(x) < 1e-3


def test_data_scale_is_scale_equivariant(slice_data):
    k, m, mps = slice_data["kspace"], slice_data["mask"], slice_data["mps"]
    s = data_scale(k, m, mps)
    assert s > 0
    assert data_scale(10 * k, m, mps) == pytest.approx(10 * s, rel=1e-5)
    assert data_scale(np.zeros_like(k), m, mps) == 1.0


def test_reconstruct_dispatch(slice_data):
    k, m = slice_data["kspace"], slice_data["mask"]
    np.testing.assert_array_equal(reconstruct(k, m, "zero-filled"), zero_filled(k, m))
    with pytest.raises(UserError, match="unknown reconstruction method") as err:
        reconstruct(k, m, method="grappa")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="mask shape"):
        zero_filled(k, np.ones(N + 1))
    with pytest.raises(UserError, match="sens_maps"):
        l1_wavelet_recon(k, m, None)
    with pytest.raises(UserError, match="sens_maps shape"):
        l1_wavelet_recon(k, m, np.ones((COILS, N, N - 1), np.complex64))
    with pytest.raises(UserError, match="backend"):
        l1_wavelet_recon(k, m, slice_data["mps"], backend="matlab")


def test_reconstruct_estimates_maps_when_missing(slice_data):
    k, m = slice_data["kspace"], slice_data["mask"]
    x = reconstruct(k, m, "sigpy-l1", lamda=0.001, max_iter=30, device="cpu")
    maps = espirit_maps(apply_mask(k, m), backend="sigpy", device="cpu")
    ref = coil_combine(ifft2c(k), maps)
    assert _psnr(ref, x) > _psnr(ref, zero_filled(k, m, maps)) + 2.0
