"""Noise-measurement readouts of an ISMRMRD file: their samples, the prewhitener they give.

The reader (:mod:`fastmri_diffmask.io.ismrmrd_raw`) hands the readouts flagged
``ACQ_IS_NOISE_MEASUREMENT`` here; the covariance and whitening arithmetic is
:mod:`fastmri_diffmask.io.prewhiten` (Roemer 1990; Pruessmann 2001).
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError
from .prewhiten import dwell_time_scale, noise_covariance, whitening_matrix


def noise_samples(records: np.ndarray, where: str = "noise") -> np.ndarray:
    """All samples of noise readouts as ``(coils, N)`` complex64, ``discard_pre/post`` dropped."""
    channels = np.unique(records["head"]["active_channels"])
    if channels.size != 1:
        raise UserError(f"{where}: noise readouts have different coil counts {channels.tolist()}; "
                        "pass --no-prewhiten")
    nc = int(channels[0])
    parts = []
    for rec in records:
        h = rec["head"]
        ns = int(h["number_of_samples"])
        d = np.asarray(rec["data"], np.float32).view(np.complex64).reshape(nc, ns)
        parts.append(d[:, int(h["discard_pre"]):ns - int(h["discard_post"])])
    return np.concatenate(parts, axis=1)


def single_dwell(head: np.ndarray, what: str, where: str) -> float:
    dwell = np.unique(head["sample_time_us"])
    if dwell.size != 1:
        raise UserError(f"{where}: the {what} readouts have different dwell times {dwell.tolist()} us; "
                        "one noise covariance cannot whiten them all, pass --no-prewhiten")
    return float(dwell[0])


def prewhitener(samples: np.ndarray, noise_head: np.ndarray, imaging_head: np.ndarray,
                 where: str) -> tuple[np.ndarray, np.ndarray, int, float]:
    """``(W, Psi, N, scale)`` for the imaging readouts from the noise readouts' ``samples``
    (:func:`noise_samples`) and headers: ``Psi`` the noise scan's covariance times
    ``scale = t_noise / t_acq``, ``W = inv(cholesky(Psi))``; validated before any k-space work."""
    coils = int(imaging_head["active_channels"][0])
    if samples.shape[0] != coils:
        raise UserError(f"{where}: the noise readouts have {samples.shape[0]} coils, the imaging readouts "
                        f"{coils}; pass --no-prewhiten")
    scale = dwell_time_scale(single_dwell(noise_head, "noise", where),
                             single_dwell(imaging_head, "imaging", where))
    psi = noise_covariance(samples, where) * scale
    return whitening_matrix(psi, where), psi, int(samples.shape[1]), scale


def noise_std_per_coil(samples: np.ndarray | None) -> np.ndarray | None:
    """Per-coil complex standard deviation of noise ``samples`` ``(coils, N)`` (:func:`noise_samples`;
    None without samples or with fewer than 2)."""
    if samples is None or samples.shape[1] < 2:
        return None
    return np.sqrt(np.mean(np.abs(samples - samples.mean(1, keepdims=True)) ** 2, axis=1)).astype(np.float32)
