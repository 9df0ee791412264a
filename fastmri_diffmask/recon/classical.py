"""Classical reconstructions to score masks with: zero-filled and L1-wavelet compressed sensing.

Conventions (fastMRI's): k-space ``(coils, H, W)`` complex64, centred orthonormal 2D FFT
(:func:`fft2c`, equal to ``fastmri.fft2c`` and ``bart fft -u 3``), a line mask ``(W,)`` broadcast
over rows or a point mask ``(H, W)``. With sensitivity maps the image is
``x = sum_c conj(S_c) ifft2c(k_c)``.

Scale. Both CS backends solve ``min_x 1/2 ||M F S x - y/s||^2 + lamda ||W x||_1`` on data divided
by one scale ``s`` (:func:`data_scale`, BART's own rule applied to the zero-filled image) and
multiply the result by ``s``. BART gets ``s`` through ``pics -w s`` and rescales with ``-S``,
sigpy gets the divided data. So ``lamda`` means the same for both backends and for any input
scale, and every output is on the scale of the input's coil-combined image: it can be scored
directly against ``sum_c conj(S_c) ifft2c(k_full_c)`` (or its magnitude against an RSS target
when the maps are normalised, ``sum_c |S_c|^2 = 1``). The wavelets differ (BART: Daubechies-2
with random cycle spinning; sigpy: ``db4``), so equal ``lamda`` gives similar, not equal, images.

References
----------
Lustig M, Donoho D, Pauly JM. Sparse MRI: the application of compressed sensing for rapid MR
imaging. Magn Reson Med 2007;58:1182-1195.
Zbontar J, et al. fastMRI: an open dataset and benchmarks for accelerated MRI. arXiv:1811.08839.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..io.bart import image_from_bart, kspace_to_bart, mask_to_bart, run_bart
from ..simulate import fft2c_np as fft2c, ifft2c_np as ifft2c  # noqa: F401  (re-exported)
from .espirit import espirit_maps, sigpy_device


def default_lamda(acceleration: float) -> float:
    """``pics -l1`` regularisation tuned on the validation split (benchmarks/tune_bart_val.jsonl:
    best 1e-3 at R = 4, 1e-3 to 3e-3 at R = 8, on the scale of ``recon.classical.data_scale``)."""
    return 0.001 if acceleration <= 5 else 0.002


__all__ = [
    "default_lamda",
    "fft2c",
    "ifft2c",
    "apply_mask",
    "zero_filled",
    "coil_combine",
    "data_scale",
    "l1_wavelet_recon",
    "reconstruct",
    "METHODS",
]

#: Names accepted by :func:`reconstruct`.
METHODS = ("zero-filled", "bart-l1", "sigpy-l1")


def _check_kspace(kspace) -> np.ndarray:
    k = np.asarray(kspace)
    if k.ndim == 2:
        k = k[None]
    if k.ndim != 3:
        raise UserError(f"k-space must be shaped (coils, H, W), got {np.shape(kspace)}")
    return k.astype(np.complex64, copy=False)


def _mask_2d(mask, shape: tuple[int, int]) -> np.ndarray:
    """A line mask ``(W,)`` (or fastMRI's ``(1, 1, W, 1)``) or point mask ``(H, W)`` -> ``(H, W)``."""
    h, w = shape
    m = np.asarray(mask)
    if hasattr(mask, "detach"):  # a torch tensor from a fastMRI MaskFunc
        m = mask.detach().cpu().numpy()
    m = m.astype(np.float32).squeeze()
    if m.shape == (w,):
        m = np.broadcast_to(m[None, :], (h, w))
    if m.shape != (h, w):
        raise UserError(f"mask shape {np.shape(mask)} does not fit k-space (H, W) = {(h, w)}; pass (W,) or (H, W)")
    if not np.isin(m, (0.0, 1.0)).all():
        raise UserError("mask must hold only 0 and 1; threshold soft masks before reconstructing")
    return np.ascontiguousarray(m)


def _check_maps(sens_maps, kshape) -> np.ndarray:
    s = np.asarray(sens_maps)
    if s.ndim == 2:
        s = s[None]
    if s.shape != tuple(kshape):
        raise UserError(f"sens_maps shape {np.shape(sens_maps)} must equal the k-space shape {tuple(kshape)}")
    return s.astype(np.complex64, copy=False)


def apply_mask(kspace: np.ndarray, mask) -> np.ndarray:
    """Zero the k-space samples the mask leaves out; returns ``(coils, H, W)`` complex64."""
    k = _check_kspace(kspace)
    return (k * _mask_2d(mask, k.shape[-2:])).astype(np.complex64)


def coil_combine(images: np.ndarray, sens_maps: np.ndarray | None = None) -> np.ndarray:
    """Coil images ``(coils, H, W)`` -> RSS (float32) without maps, ``sum conj(S) x`` with maps."""
    if sens_maps is None:
        return np.sqrt(np.sum(np.abs(images) ** 2, axis=0)).astype(np.float32)
    s = _check_maps(sens_maps, images.shape)
    return np.sum(np.conj(s) * images, axis=0).astype(np.complex64)


def zero_filled(kspace: np.ndarray, mask, sens_maps: np.ndarray | None = None) -> np.ndarray:
    """Zero-filled reconstruction ``(H, W)``.

    Parameters
    ----------
    kspace : np.ndarray
        ``(coils, H, W)`` k-space (samples outside the mask are zeroed here).
    mask : array-like
        Line mask ``(W,)`` or point mask ``(H, W)`` of 0/1.
    sens_maps : np.ndarray, optional
        ``(coils, H, W)`` maps. Without them the root-sum-of-squares (float32, fastMRI's
        ``reconstruction_rss`` definition); with them the complex coil combination (complex64).
    """
    return coil_combine(ifft2c(apply_mask(kspace, mask)), sens_maps)


def data_scale(kspace: np.ndarray, mask, sens_maps: np.ndarray) -> float:
    """Intensity scale of the data: BART's rule on the zero-filled coil-combined image.

    With ``a`` the sorted magnitudes of ``sum_c conj(S_c) ifft2c(M k_c)``: the 90th percentile
    when ``max - p90 < 2 (p90 - median)``, else the maximum (BART ``pics``'s heuristic that
    ignores a few bright outliers). Returns 1.0 for all-zero data.
    """
    img = np.abs(zero_filled(kspace, mask, sens_maps)).ravel()
    if not np.any(img > 0):
        return 1.0
    a = np.sort(img)
    vmax, p90, med = a[-1], a[int(a.size * 0.9)], a[a.size // 2]
    scale = p90 if (vmax - p90) < 2 * (p90 - med) else vmax
    return float(scale) if scale > 0 else float(vmax)


def l1_wavelet_recon(
    kspace: np.ndarray,
    mask,
    sens_maps: np.ndarray,
    lamda: float = 0.005,
    backend: str = "bart",
    max_iter: int = 100,
    device="auto",
    threads: int | None = None,
) -> np.ndarray:
    """L1-wavelet compressed-sensing SENSE reconstruction ``(H, W)`` complex64.

    Solves ``min_x 1/2 ||M F S x - y/s||^2 + lamda ||W x||_1`` (``s`` = :func:`data_scale`) and
    returns ``s x``, on the scale of the input's coil-combined image.

    Parameters
    ----------
    kspace : np.ndarray
        ``(coils, H, W)`` k-space; samples outside ``mask`` are ignored.
    mask : array-like
        Line mask ``(W,)`` or point mask ``(H, W)``.
    sens_maps : np.ndarray
        ``(coils, H, W)`` sensitivity maps (e.g. from :func:`espirit_maps`).
    lamda : float
        Regularisation weight relative to the normalised data (0.001 - 0.01 works at R 4 - 8).
    backend : {"bart", "sigpy"}
        ``bart pics -S -l1 -r lamda -i max_iter -w s -p mask`` (FISTA) or
        :class:`sigpy.mri.app.L1WaveletRecon` (accelerated proximal gradient).
    max_iter : int
        Iterations of either solver.
    device : {"auto", "cpu", "cuda"}
        Used by the sigpy backend (CUDA needs CuPy); BART runs on the CPU.
    threads : int, optional
        OpenMP threads for BART.
    """
    k = _check_kspace(kspace)
    if sens_maps is None:
        raise UserError("l1_wavelet_recon needs sens_maps; estimate them with espirit_maps(kspace)")
    s = _check_maps(sens_maps, k.shape)
    m = _mask_2d(mask, k.shape[-2:])
    if not lamda >= 0:
        raise UserError(f"lamda must be >= 0, got {lamda}")
    if int(max_iter) < 1:
        raise UserError(f"max_iter must be >= 1, got {max_iter}")
    y = k * m
    scale = data_scale(y, m, s)
    if backend == "bart":
        cmd = ["pics", "-S", "-l1", "-r", repr(float(lamda)), "-i", str(int(max_iter)), "-w", repr(scale), "-p"]
        # pics takes the pattern file after -p, before <kspace> <sensitivities> <output>
        out = run_bart(cmd, mask_to_bart(m, m.shape), kspace_to_bart(y), kspace_to_bart(s), threads=threads)
        return image_from_bart(out)
    if backend == "sigpy":
        import sigpy as sp
        import sigpy.mri as mr

        dev = sigpy_device(device)
        x = mr.app.L1WaveletRecon(
            y / scale, s, float(lamda), weights=m, device=dev, max_iter=int(max_iter), show_pbar=False
        ).run()
        return (np.asarray(sp.to_device(x, sp.cpu_device)) * scale).astype(np.complex64)
    raise UserError(f"unknown CS backend {backend!r}; use 'bart' or 'sigpy'")


def reconstruct(
    kspace: np.ndarray,
    mask,
    method: str = "zero-filled",
    sens_maps: np.ndarray | None = None,
    lamda: float = 0.005,
    max_iter: int = 100,
    num_low_frequencies: int | None = None,
    device="auto",
) -> np.ndarray:
    """Reconstruct one slice with a named classical method.

    Parameters
    ----------
    method : {"zero-filled", "bart-l1", "sigpy-l1"}
        Zero-filled (:func:`zero_filled`) or L1-wavelet CS with either backend.
    sens_maps : np.ndarray, optional
        Maps for the CS methods; when missing they are estimated by ESPIRiT with the same
        backend from the masked k-space (calibration width ``num_low_frequencies``).
    Other parameters are those of :func:`l1_wavelet_recon`.

    Returns
    -------
    np.ndarray
        ``(H, W)``: RSS float32 for zero-filled without maps, complex64 otherwise.
    """
    if method == "zero-filled":
        return zero_filled(kspace, mask, sens_maps)
    if method not in METHODS:
        raise UserError(f"unknown reconstruction method {method!r}; use one of {', '.join(METHODS)}")
    backend = method.split("-")[0]
    if sens_maps is None:
        sens_maps = espirit_maps(apply_mask(kspace, mask), num_low_frequencies, backend=backend, device=device)
    return l1_wavelet_recon(kspace, mask, sens_maps, lamda=lamda, backend=backend, max_iter=max_iter, device=device)
