"""ESPIRiT coil sensitivity maps from (possibly undersampled) multi-coil k-space.

Two backends estimate the same thing from the fully sampled centre of k-space:

* ``"bart"``: ``bart ecalib -m1`` (one set of maps), calibration region ``-r ch:c:1``, where
  ``ch`` counts the fully sampled rows over the ``c`` centre columns (all rows for a line
  mask), at most ``max(c, 24)``;
* ``"sigpy"``: :class:`sigpy.mri.app.EspiritCalib` with ``calib_width = c`` (a square: sigpy has
  no rectangular calibration region).

``c`` is ``num_low_frequencies`` when given, else the width of the largest fully sampled square
at the centre of k-space, capped at 24 (both tools' default). The kernel width defaults to
``min(6, c // 2)``: with the tools' default 6 a 10-line centre gives near-empty maps. Maps are returned in fastMRI's
layout ``(coils, H, W)`` complex64, normalised so that ``sum_c |S_c|^2 = 1`` where the object is
(both tools zero the maps where the eigenvalue falls below ``crop``). The two backends choose
the global phase differently (BART relative to the first principal component, sigpy relative
to the first coil), so maps agree up to a per-pixel phase: compare them phase-invariantly.

References
----------
Uecker M, Lai P, Murphy MJ, et al. ESPIRiT - an eigenvalue approach to autocalibrating parallel
MRI: where SENSE meets GRAPPA. Magn Reson Med 2014;71:990-1001.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..io.bart import kspace_from_bart, kspace_to_bart, run_bart
from ..utils import resolve_device

__all__ = ["espirit_maps", "detect_num_low_frequencies", "sigpy_device", "DEFAULT_CALIB_WIDTH"]

#: Default ESPIRiT calibration width (BART's and sigpy's default).
DEFAULT_CALIB_WIDTH = 24


def sigpy_device(device="auto"):
    """Map ``"auto" | "cpu" | "cuda"`` to a :class:`sigpy.Device`.

    CUDA maps to sigpy device 0 only when CuPy is installed; otherwise sigpy runs on the CPU
    (``sp.Device(-1)``) even when torch sees a GPU.
    """
    import sigpy as sp

    dev = resolve_device(device)
    if dev.type == "cuda" and sp.config.cupy_enabled:
        return sp.Device(dev.index or 0)
    return sp.Device(-1)


def _centre_slice(n: int, k: int) -> slice:
    """fastMRI's centre block of ``k`` out of ``n`` (``pad = (n - k + 1) // 2``)."""
    pad = (n - k + 1) // 2
    return slice(pad, pad + k)


def detect_num_low_frequencies(kspace: np.ndarray) -> int:
    """Width of the largest fully sampled square ``c x c`` at the centre of k-space.

    A sample counts as acquired when any coil holds a non-zero value there. For a 1D line mask
    with a fully sampled centre of ``n`` columns this returns ``min(n, H)``.
    """
    k = np.asarray(kspace)
    if k.ndim == 2:
        k = k[None]
    sampled = np.any(k != 0, axis=0)
    h, w = sampled.shape
    c = 0
    while c < min(h, w):
        nxt = c + 1
        if not sampled[_centre_slice(h, nxt), _centre_slice(w, nxt)].all():
            break
        c = nxt
    return c


def _check_kspace(kspace) -> np.ndarray:
    k = np.asarray(kspace)
    if k.ndim != 3 or not np.iscomplexobj(k):
        raise UserError(f"k-space must be complex and shaped (coils, H, W), got {k.dtype} {k.shape}")
    if not np.isfinite(k).all():
        raise UserError("k-space contains NaN or Inf; clean the data before estimating maps")
    return k.astype(np.complex64, copy=False)


def _calib_region(kspace: np.ndarray, num_low_frequencies, kernel_width) -> tuple[int, int, int]:
    """Calibration width ``c``, BART's calibration height, and the kernel width."""
    h, w = kspace.shape[-2:]
    sampled = np.any(kspace != 0, axis=0)
    detected = detect_num_low_frequencies(kspace)
    if num_low_frequencies is None or num_low_frequencies == 0:  # fastMRI: 0 means "infer"
        c = min(detected, DEFAULT_CALIB_WIDTH)
    else:
        c = int(num_low_frequencies)
        if c != num_low_frequencies or c < 1 or c > min(h, w):
            raise UserError(f"num_low_frequencies={num_low_frequencies} is not an integer in 1..{min(h, w)}")
        if c > detected:
            raise UserError(
                f"num_low_frequencies={c} but only a {detected}x{detected} centre of k-space is "
                "fully sampled; pass num_low_frequencies <= that or None"
            )
    kw = min(6, c // 2) if kernel_width is None else int(kernel_width)
    if c < 6 or kw < 2 or c <= kw:
        raise UserError(
            f"fully sampled centre is {c} wide with ESPIRiT kernel {kw}; sample at least 6 centre "
            "lines (10-24 recommended) or lower kernel_width"
        )
    # rows fully sampled over the c centre columns (all of them for a line mask), at most max(c, 24)
    cols = sampled[:, _centre_slice(w, c)].all(axis=1)
    ch = c
    while ch < min(h, max(c, DEFAULT_CALIB_WIDTH)) and cols[_centre_slice(h, ch + 1)].all():
        ch += 1
    return c, ch, kw


def espirit_maps(
    kspace: np.ndarray,
    num_low_frequencies: int | None = None,
    backend: str = "bart",
    device="auto",
    kernel_width: int | None = None,
    threshold: float | None = None,
    crop: float | None = None,
    threads: int | None = None,
    max_iter: int = 100,
) -> np.ndarray:
    """Estimate one set of ESPIRiT sensitivity maps.

    Parameters
    ----------
    kspace : np.ndarray
        ``(coils, H, W)`` complex k-space, fully sampled or undersampled with zeros where not
        acquired; it needs a fully sampled centre.
    num_low_frequencies : int, optional
        Width ``c`` of the square calibration region ``c x c`` at the centre (fastMRI's name for
        the fully sampled centre lines). Default (None or 0, as in fastMRI): the detected fully
        sampled centre, at most 24.
    backend : {"bart", "sigpy"}
        Which implementation to run.
    device : {"auto", "cpu", "cuda"}
        Used by the sigpy backend (CUDA needs CuPy); BART runs on the CPU.
    kernel_width : int, optional
        ESPIRiT kernel size (``-k`` / ``kernel_width``); default ``min(6, c // 2)`` (both tools
        default to 6, which fails for centres narrower than ~12 lines).
    threshold : float, optional
        Null-space threshold (``-t`` / ``thresh``); default: the backend's (0.001 BART, 0.02 sigpy).
    crop : float, optional
        Eigenvalue crop threshold (``-c`` / ``crop``); default: the backend's (0.8 BART, 0.95 sigpy).
    threads : int, optional
        OpenMP threads for BART.
    max_iter : int
        Power iterations of the sigpy backend.

    Returns
    -------
    np.ndarray
        ``(coils, H, W)`` complex64 maps.
    """
    k = _check_kspace(kspace)
    c, ch, kw = _calib_region(k, num_low_frequencies, kernel_width)
    if backend == "bart":
        cmd = ["ecalib", "-m1", "-r", f"{ch}:{c}:1", "-k", str(kw)]
        if threshold is not None:
            cmd += ["-t", repr(float(threshold))]
        if crop is not None:
            cmd += ["-c", repr(float(crop))]
        maps = run_bart(cmd, kspace_to_bart(k), threads=threads)
        return kspace_from_bart(maps)
    if backend == "sigpy":
        import sigpy as sp
        import sigpy.mri as mr

        opts = {}
        if threshold is not None:
            opts["thresh"] = float(threshold)
        if crop is not None:
            opts["crop"] = float(crop)
        dev = sigpy_device(device)
        maps = mr.app.EspiritCalib(
            k, calib_width=c, kernel_width=kw, max_iter=int(max_iter),
            device=dev, show_pbar=False, **opts,
        ).run()
        return np.asarray(sp.to_device(maps, sp.cpu_device), dtype=np.complex64)
    raise UserError(f"unknown ESPIRiT backend {backend!r}; use 'bart' or 'sigpy'")
