"""Coil noise covariance and prewhitening of multi-coil raw data.

Receiver noise in a coil array is zero-mean complex Gaussian, white in time but correlated
between coils (mutual inductance, shared preamplifier ground) with covariance
``Psi = E[n n^H]`` (coils x coils) [1]_ [2]_. Optimal (maximum-likelihood / SNR-optimal)
reconstructions weight the data with ``Psi^{-1}`` [2]_; equivalently the data are
*prewhitened* once, ``y' = W y`` with ``W = L^{-1}`` where ``Psi = L L^H`` is the Cholesky
factorisation, after which ``E[(W n)(W n)^H] = W Psi W^H = I`` and any reconstruction that
assumes i.i.d. unit-variance noise per coil (SENSE, ``bart pics``, fastMRI's VarNet) is
correct again.

Conventions (checked against BART's ``whiten`` tool and Gadgetron's ``NoiseAdjustGadget``)

* **Covariance**: ``Psi = (1/N) sum_t n_t n_t^H`` over the ``N`` samples of all noise
  readouts, with the noise taken as zero-mean (no mean subtraction), as both tools do. BART
  divides by ``N - 1``; over the hundreds of samples of a noise scan the two differ by
  ``< 1%`` in scale and not at all in the correlation structure.
* **Whitening matrix**: ``W = L^{-1}`` with ``L`` the lower-triangular Cholesky factor (unique
  with a positive real diagonal), so ``W`` is lower-triangular too: coil 0 of the whitened data
  is coil 0 divided by its noise standard deviation, coil ``k`` is decorrelated from coils
  ``0..k-1``. This is BART's ``whiten`` (its ``optmat``) and Gadgetron's prewhitener.
* **Dwell time**: white noise power per sample scales with the receiver bandwidth, i.e. with
  ``1 / dwell time``. When the noise scan was sampled with dwell ``t_noise`` and the imaging
  readouts with ``t_acq`` (``sample_time_us`` of the acquisitions), the imaging noise
  covariance is ``Psi * t_noise / t_acq``; equivalently ``W`` is multiplied by
  ``sqrt(t_acq / t_noise)``, which is Gadgetron's ``noise_bw_scale_factor`` without its extra
  ``2 * relativeReceiverNoiseBandwidth`` (a Siemens-specific SNR-unit calibration [3]_ that
  would make the whitened variance differ from 1). A zero dwell time on either side means
  unknown: no scaling, as in Gadgetron.

References
----------
.. [1] Roemer PB, Edelstein WA, Hayes CE, Souza SP, Mueller OM. The NMR phased array. Magn.
       Reson. Med. 16(2):192-225, 1990.
.. [2] Pruessmann KP, Weiger M, Boernert P, Boesiger P. Advances in sensitivity encoding with
       arbitrary k-space trajectories. Magn. Reson. Med. 46(4):638-651, 2001.
.. [3] Kellman P, McVeigh ER. Image reconstruction in SNR units: a general method for SNR
       measurement. Magn. Reson. Med. 54(6):1439-1447, 2005.
.. [4] BART ``whiten`` (https://mrirecon.github.io/bart/); Gadgetron ``NoiseAdjustGadget``
       (https://github.com/gadgetron/gadgetron).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError

__all__ = ["noise_covariance", "dwell_time_scale", "whitening_matrix", "apply_whitening",
           "check_covariance"]


def noise_covariance(samples: np.ndarray, where: str = "noise") -> np.ndarray:
    """Coil noise covariance ``Psi = (1/N) sum_t n_t n_t^H`` of zero-mean noise samples.

    Parameters
    ----------
    samples : ndarray, complex
        ``(coils, N)`` noise samples (all noise readouts concatenated along the second axis).
    where : str
        Prefix for error messages (the file).

    Returns
    -------
    ndarray, complex128
        ``(coils, coils)`` Hermitian covariance.

    Raises
    ------
    UserError
        Fewer samples than coils (the estimate would be singular) or non-finite samples.
    """
    n = np.asarray(samples)
    if n.ndim != 2 or not np.iscomplexobj(n):
        raise UserError(f"{where}: noise samples must be complex (coils, N), got {n.dtype} {n.shape}")
    coils, count = n.shape
    if count < coils:
        raise UserError(f"{where}: {count} noise samples cannot estimate a {coils}-coil covariance "
                        f"(need at least {coils}); pass --no-prewhiten")
    if not np.isfinite(n).all():
        raise UserError(f"{where}: the noise readouts hold NaN or Inf; pass --no-prewhiten")
    n = n.astype(np.complex128, copy=False)
    psi = n @ n.conj().T / count
    return (psi + psi.conj().T) / 2  # exactly Hermitian


def dwell_time_scale(noise_dwell_us: float, acquisition_dwell_us: float) -> float:
    """Factor ``t_noise / t_acq`` that takes the noise scan's covariance to the imaging readouts'.

    1 when either dwell time is zero or not finite (unknown), as Gadgetron does.
    """
    tn, ta = float(noise_dwell_us), float(acquisition_dwell_us)
    if not (np.isfinite(tn) and np.isfinite(ta) and tn > 0 and ta > 0):
        return 1.0
    return tn / ta


def check_covariance(psi: np.ndarray, where: str = "noise") -> np.ndarray:
    """Validate a coil covariance (square, finite, Hermitian, positive definite); return it as
    complex128. One-line :class:`UserError` otherwise, naming the weakest coil when singular."""
    psi = np.asarray(psi)
    if psi.ndim != 2 or psi.shape[0] != psi.shape[1] or psi.shape[0] == 0:
        raise UserError(f"{where}: a noise covariance must be a square (coils, coils) matrix, got {psi.shape}")
    psi = psi.astype(np.complex128)
    if not np.isfinite(psi).all():
        raise UserError(f"{where}: the noise covariance holds NaN or Inf; pass --no-prewhiten")
    scale = float(np.max(np.abs(np.diag(psi)))) or 1.0
    if np.max(np.abs(psi - psi.conj().T)) > 1e-6 * scale:
        raise UserError(f"{where}: the noise covariance is not Hermitian; it is not a covariance")
    diag = np.real(np.diag(psi))
    if diag.min() <= 1e-12 * scale:
        raise UserError(f"{where}: coil {int(np.argmin(diag))} has zero noise variance in the noise scan "
                        "(a dead or disconnected channel?); drop it first or pass --no-prewhiten")
    eig = np.linalg.eigvalsh((psi + psi.conj().T) / 2)
    if eig.min() <= 1e-10 * eig.max():
        raise UserError(f"{where}: the noise covariance is singular (condition number "
                        f"{eig.max() / max(eig.min(), 1e-300):.3g}); duplicated or linearly dependent "
                        "channels? pass --no-prewhiten")
    return psi


def whitening_matrix(psi: np.ndarray, where: str = "noise") -> np.ndarray:
    """``W = L^{-1}`` with ``Psi = L L^H`` (lower Cholesky factor); lower-triangular complex128.

    ``W Psi W^H = I`` up to rounding. Raises :class:`UserError` when ``psi`` is not a valid
    positive definite covariance (see :func:`check_covariance`).
    """
    from scipy.linalg import solve_triangular

    psi = check_covariance(psi, where)
    L = np.linalg.cholesky(psi)
    return solve_triangular(L, np.eye(L.shape[0], dtype=L.dtype), lower=True)


def apply_whitening(data: np.ndarray, W: np.ndarray, axis: int = 0) -> np.ndarray:
    """``W`` applied along the coil ``axis`` of ``data`` (any shape), in ``data``'s dtype.

    Computed in double precision, so whitening a complex64 array loses nothing beyond its final
    rounding to complex64.
    """
    data = np.asarray(data)
    W = np.asarray(W)
    if data.shape[axis] != W.shape[1]:
        raise UserError(f"whitening matrix is for {W.shape[1]} coils, the data have {data.shape[axis]}")
    moved = np.moveaxis(data, axis, -1).astype(np.complex128)
    out = moved @ W.T.astype(np.complex128)
    return np.moveaxis(out, -1, axis).astype(data.dtype if np.iscomplexobj(data) else np.complex64)
