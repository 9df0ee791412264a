"""Read Cartesian ISMRMRD raw data (HDF5) into fastMRI's k-space layout.

The ISMRMRD HDF5 format [1]_ stores a header (XML, ``/<dataset>/xml``) and one record per readout
(``/<dataset>/data``): an acquisition header with the encoding counters ``idx`` and flags, and the
samples ``[channels, samples]``. :func:`read_ismrmrd` turns the imaging readouts of the first
encoding space into fastMRI's multi-coil array [2]_ ``(slices, coils, rows, cols)``:

* noise-measurement readouts (``ACQ_IS_NOISE_MEASUREMENT``) are not placed in k-space; by
  default (``prewhiten=True``) they give the coil noise covariance ``Psi = (1/N) sum n n^H``,
  scaled by the noise/imaging dwell-time ratio, and every imaging readout is prewhitened with
  ``W = L^{-1}``, ``Psi = L L^H`` (:mod:`fastmri_diffmask.io.prewhiten`, Roemer 1990 [3]_,
  Pruessmann 2001 [4]_), so its noise is white with unit variance per coil; their per-coil
  standard deviation is reported either way. Without noise readouts nothing is whitened;
  navigator, phase-correction, dummy-scan and feedback readouts are skipped too;
* parallel-calibration readouts (``ACQ_IS_PARALLEL_CALIBRATION`` and
  ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``) are included; calibration-only readouts fill the
  k-space locations that no imaging readout sampled (where both exist the imaging data are kept:
  a separate reference scan may have another contrast);
* each readout is placed at ``kspace_encode_step_1`` (and ``_2`` for 3D) relative to the
  encoding limits' centre, so that the centre line lands at column ``cols // 2`` with
  ``cols = encodedSpace.matrixSize.y`` (fastMRI's ``padding_left = cols // 2 - center``);
* within a readout, ``center_sample`` (0 read as "unset", i.e. the middle) is placed at row
  ``encodedSpace.x // 2``; ``discard_pre/post`` samples are dropped, ``ACQ_IS_REVERSE`` flips;
* readout oversampling is removed when ``encodedSpace.x > reconSpace.x``: centred orthonormal
  inverse FFT along the readout, centre crop to ``reconSpace.x``, FFT back. Image values are
  unchanged by this (``ifft2c(kspace)`` equals the centre of the oversampled image);
* **averages** (``idx.average``) and repeated acquisitions of one line are averaged (count-weighted
  mean per k-space location); **slices**, **contrasts**, **phases**, **sets** and, by default,
  **repetitions** each give their own entry along the first axis, sorted by
  ``(slice, contrast, phase, set, repetition)``. ``repetitions="average"`` averages repetitions
  (the mask becomes their union); an integer keeps that repetition only.

The FFT convention is fastMRI's centred orthonormal one (``fastmri.fft2c``).

References
----------
.. [1] Inati et al., "ISMRM Raw data format: A proposed standard for MRI raw datasets", Magn.
       Reson. Med. 77(1):411-421, 2017. https://ismrmrd.github.io
.. [2] Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI",
       arXiv:1811.08839, 2018.
.. [3] Roemer et al., "The NMR phased array", Magn. Reson. Med. 16(2):192-225, 1990.
.. [4] Pruessmann et al., "Advances in sensitivity encoding with arbitrary k-space
       trajectories", Magn. Reson. Med. 46(4):638-651, 2001.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from ..masks.file import centre_slices
from .ismrmrd_header import (ACQ_IS_NOISE_MEASUREMENT, ACQ_IS_PARALLEL_CALIBRATION,
                             ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING, ACQ_IS_REVERSE, SKIP_FLAGS,
                             EncodingInfo, flag_bit, has_flag, parse_header)
from .ismrmrd_noise import noise_samples, noise_std_per_coil, prewhitener
from .prewhiten import apply_whitening


class IsmrmrdRaw(NamedTuple):
    """Cartesian k-space assembled by :func:`read_ismrmrd`.

    Attributes
    ----------
    kspace : ndarray, complex64
        ``(entries, coils, rows, cols)``; 3D acquisitions have a trailing ``kz`` axis.
    mask : ndarray, float32
        Sampled phase encodes: ``(cols,)``, or ``(ky, kz)`` for 3D. When the entries sample
        different lines (e.g. interleaved repetitions) it has a leading ``entries`` axis.
    num_low_frequencies : int
        Calibration width: the number of distinct calibration lines when the file flags them
        (and they are contiguous), else the widest fully sampled centre (``centre_slices``).
    header_xml : str
        The file's ISMRMRD header, unchanged (see :func:`~fastmri_diffmask.io.fastmri_h5.header_for_fastmri`).
    acceleration : float or None
        ``parallelImaging.accelerationFactor`` (step 1 x step 2) from the header, if any.
    achieved_acceleration : float
        Matrix size over sampled phase encodes (mean over entries when they differ).
    noise_std : ndarray or None
        Per-coil complex standard deviation of the noise-measurement readouts.
    entries : list of tuple
        ``(slice, contrast, phase, set, repetition)`` of each entry (repetition -1 if averaged).
    encoding : EncodingInfo
    noise_covariance : ndarray or None
        ``(coils, coils)`` complex128 noise covariance of the imaging readouts *before*
        whitening (the noise scan's, times the dwell-time ratio); set only when ``prewhitened``.
    prewhitened : bool
        Whether ``kspace`` was multiplied along coils by ``inv(cholesky(noise_covariance))``.
    noise_samples : int
        Noise samples per coil behind ``noise_covariance`` (0 when not prewhitened).
    noise_dwell_scale : float
        ``t_noise / t_acq`` applied to the noise scan's covariance (1 when unknown).
    """

    kspace: np.ndarray
    mask: np.ndarray
    num_low_frequencies: int
    header_xml: str
    acceleration: float | None
    achieved_acceleration: float
    noise_std: np.ndarray | None
    entries: list
    encoding: EncodingInfo
    noise_covariance: np.ndarray | None = None
    prewhitened: bool = False
    noise_samples: int = 0
    noise_dwell_scale: float = 1.0


# ----------------------------------------------------------------------------- file access


def read_raw_records(path: str | Path, dataset: str = "dataset") -> tuple[str, np.ndarray]:
    """``(header_xml, records)`` of an ISMRMRD HDF5 file; records is the structured
    ``/<dataset>/data`` array (fields ``head``, ``traj``, ``data``), read in one go."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give an ISMRMRD .h5 raw data file")
    try:
        f = h5py.File(path, "r")
    except OSError:
        raise UserError(f"{path} is not an HDF5 file; give an ISMRMRD .h5 raw data file") from None
    with f:
        if "kspace" in f and "ismrmrd_header" in f:
            raise UserError(f"{path} is already in the fastMRI layout, not ISMRMRD raw data")
        grp = f.get(dataset)
        if not isinstance(grp, h5py.Group) or "xml" not in grp:
            raise UserError(f"{path} is not an ISMRMRD file (no /{dataset}/xml header); "
                            "convert vendor raw data with siemens_to_ismrmrd or similar first")
        xml = grp["xml"][0]
        xml = xml.decode("utf-8") if isinstance(xml, bytes) else str(xml)
        if "data" not in grp or grp["data"].shape[0] == 0:
            raise UserError(f"{path} holds no acquisitions (/{dataset}/data is missing or empty)")
        records = grp["data"][()]
    if records.dtype.names is None or "head" not in records.dtype.names:
        raise UserError(f"{path}: /{dataset}/data is not ISMRMRD acquisition records; the file is corrupt")
    return xml, records


# ----------------------------------------------------------------------------- assembly


def ifftc(x: np.ndarray, axis: int) -> np.ndarray:
    """Centred orthonormal inverse FFT along one axis (fastMRI's convention)."""
    x = np.fft.ifftshift(x, axes=axis)
    return np.fft.fftshift(np.fft.ifft(x, axis=axis, norm="ortho"), axes=axis)


def fftc(x: np.ndarray, axis: int) -> np.ndarray:
    """Centred orthonormal FFT along one axis (fastMRI's convention)."""
    x = np.fft.ifftshift(x, axes=axis)
    return np.fft.fftshift(np.fft.fft(x, axis=axis, norm="ortho"), axes=axis)


def remove_readout_oversampling(kspace: np.ndarray, rows: int, axis: int = -2) -> np.ndarray:
    """Crop the readout (``axis``) to ``rows`` samples in image space.

    Centred orthonormal inverse FFT along ``axis``, keep the ``rows`` centre pixels (the centre
    pixel ``n // 2`` goes to ``rows // 2``), FFT back. Image values are preserved.
    """
    n = kspace.shape[axis]
    if rows >= n:
        return kspace
    img = ifftc(kspace, axis)
    start = n // 2 - rows // 2
    img = np.take(img, np.arange(start, start + rows), axis=axis)
    return fftc(img, axis).astype(kspace.dtype, copy=False)


def _readouts(records: np.ndarray, enc_x: int, where: str) -> np.ndarray:
    """Samples of each record placed on an ``enc_x`` grid: ``(n, channels, enc_x)`` complex64."""
    head = records["head"]
    channels = np.unique(head["active_channels"])
    if channels.size != 1:
        raise UserError(f"{where}: readouts have different coil counts {channels.tolist()}; "
                        "select one coil set before converting")
    nc = int(channels[0])
    out = np.zeros((len(records), nc, enc_x), np.complex64)
    for i, rec in enumerate(records):
        h = rec["head"]
        ns = int(h["number_of_samples"])
        d = np.asarray(rec["data"], np.float32).view(np.complex64).reshape(nc, ns)
        pre, post = int(h["discard_pre"]), int(h["discard_post"])
        d = d[:, pre:ns - post]
        n = d.shape[1]
        c = int(h["center_sample"]) - pre if int(h["center_sample"]) else n // 2
        if int(h["flags"]) & flag_bit(ACQ_IS_REVERSE):
            d, c = d[:, ::-1], n - 1 - c
        start = enc_x // 2 - c
        if start < 0 or start + n > enc_x:
            raise UserError(f"{where}: a readout of {n} samples centred at {c} does not fit "
                            f"encodedSpace x={enc_x}; fix the header's matrixSize")
        out[i, :, start:start + n] = d
    return out


def calibration_width(mask: np.ndarray, calib_ky: np.ndarray, calib_kz: np.ndarray) -> int:
    """Calibration width: distinct flagged calibration lines if contiguous, else the widest
    fully sampled centre of ``mask`` (fastMRI's centre convention, ``centre_slices``)."""
    if calib_ky.size:
        ky = np.unique(calib_ky)
        width = ky.size if mask.ndim == 1 else min(ky.size, np.unique(calib_kz).size)
        if ky[-1] - ky[0] + 1 == ky.size:
            return int(width)
    n = 0
    while n < min(mask.shape) and np.all(mask[centre_slices(mask.shape, n + 1)] > 0):
        n += 1
    return n


def read_ismrmrd(path: str | Path, dataset: str = "dataset",
                 repetitions: str | int = "separate", prewhiten: bool = True) -> IsmrmrdRaw:
    """Assemble the Cartesian multi-coil k-space of an ISMRMRD HDF5 raw data file.

    Parameters
    ----------
    path : str or Path
        ISMRMRD ``.h5`` file.
    dataset : str
        Group name inside the file (ISMRMRD's default ``"dataset"``).
    repetitions : {"separate", "average"} or int
        Keep each repetition as its own entry (default), average them (count-weighted, the mask
        is their union), or keep only repetition ``k``.
    prewhiten : bool
        When the file has noise readouts, whiten every imaging readout with their coil noise
        covariance (see the module docstring and :mod:`~fastmri_diffmask.io.prewhiten`).
        ``False`` gives exactly the unwhitened k-space.

    Returns
    -------
    IsmrmrdRaw
        See its attributes; the module docstring gives every convention.

    Raises
    ------
    UserError
        Not an HDF5/ISMRMRD file, no acquisitions, a non-Cartesian trajectory, missing encoding
        limits, or readouts that do not fit the encoded matrix; with ``prewhiten``, noise
        readouts that cannot give a positive definite covariance for the imaging coils.
    """
    where = str(path)
    xml, records = read_raw_records(path, dataset)
    enc = parse_header(xml, where)
    if enc.trajectory.lower() != "cartesian":
        raise UserError(f"{where}: trajectory {enc.trajectory or 'unspecified'!r} is not Cartesian; "
                        "only Cartesian raw data can be converted (regrid it first)")
    noise = has_flag(records["head"]["flags"], ACQ_IS_NOISE_MEASUREMENT)
    noise_records = records[noise]
    one_coil_count = len(noise_records) and np.unique(noise_records["head"]["active_channels"]).size == 1
    samples = noise_samples(noise_records, where) if one_coil_count else None  # decoded once, used twice
    noise_std = noise_std_per_coil(samples)
    records = records[_imaging_selection(records, noise, repetitions, where)]
    head = records["head"]
    whiten = None
    if prewhiten and len(noise_records):  # mixed coil counts: noise_samples says so in one line
        whiten = prewhitener(noise_samples(noise_records, where) if samples is None else samples,
                             noise_records["head"], head, where)
    idx, flags = head["idx"], head["flags"]

    (ex, ey, ez), (rx, _, _) = enc.encoded_matrix, enc.recon_matrix
    is_3d = ez > 1  # 2D multi-slice files keep encodedSpace z = 1; kspace_encode_step_2 is ignored
    ky = idx["kspace_encode_step_1"].astype(np.int64) - enc.step_1[2] + ey // 2
    kz = (idx["kspace_encode_step_2"].astype(np.int64) - enc.step_2[2] + ez // 2
          if is_3d else np.zeros_like(ky))
    for name, k, n in (("kspace_encode_step_1", ky, ey), ("kspace_encode_step_2", kz, ez if is_3d else 1)):
        if k.min() < 0 or k.max() >= n:
            raise UserError(f"{where}: {name} indices fall outside the encoded matrix ({n}) around the "
                            "encoding limits' centre; fix the header's encodingLimits")
    rep_key = np.full(len(head), -1) if repetitions == "average" else idx["repetition"].astype(np.int64)
    keys = np.stack([idx["slice"], idx["contrast"], idx["phase"], idx["set"], rep_key], 1).astype(np.int64)
    entries, entry = np.unique(keys, axis=0, return_inverse=True)

    calib_only = has_flag(flags, ACQ_IS_PARALLEL_CALIBRATION) & ~has_flag(
        flags, ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    lines = _readouts(records, ex, where)
    if whiten is not None:
        lines = apply_whitening(lines, whiten[0], axis=1)  # complex64 out, computed in complex128
    kspace, counts = _accumulate(lines, (entry.reshape(-1), ky, kz), calib_only,
                                 (len(entries), ey, ez if is_3d else 1))
    kspace = kspace.transpose(0, 3, 4, 1, 2)  # (entries, coils, x, ky, kz)
    if ex > rx:
        kspace = remove_readout_oversampling(kspace, rx, axis=2)
    masks = (counts > 0).astype(np.float32)
    if not is_3d:
        kspace, masks = kspace[..., 0], masks[..., 0]
    same = all(np.array_equal(masks[0], m) for m in masks[1:])
    calib = has_flag(flags, ACQ_IS_PARALLEL_CALIBRATION, ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
    return IsmrmrdRaw(
        kspace=np.ascontiguousarray(kspace), mask=masks[0] if same else masks,
        num_low_frequencies=calibration_width(masks.min(axis=0), ky[calib], kz[calib]),
        header_xml=xml,
        acceleration=float(np.prod(enc.acceleration_factor)) if enc.acceleration_factor else None,
        achieved_acceleration=float(np.mean([m.size / max(m.sum(), 1) for m in masks])),
        noise_std=noise_std, entries=[tuple(int(v) for v in e) for e in entries], encoding=enc,
        **({} if whiten is None else dict(noise_covariance=whiten[1], prewhitened=True,
                                          noise_samples=whiten[2], noise_dwell_scale=whiten[3])),
    )


def _imaging_selection(records: np.ndarray, noise: np.ndarray, repetitions, where: str) -> np.ndarray:
    """Boolean selection of the imaging readouts of encoding 0 (and repetition, if an int)."""
    head = records["head"]
    keep = ~noise & (head["encoding_space_ref"] == 0) & ~has_flag(head["flags"], *SKIP_FLAGS)
    rep = head["idx"]["repetition"].astype(np.int64)
    if isinstance(repetitions, str):
        if repetitions not in ("separate", "average"):
            raise UserError(f"repetitions must be 'separate', 'average' or an integer, not {repetitions!r}")
    else:
        if not np.any(keep & (rep == int(repetitions))):
            raise UserError(f"{where}: repetition {repetitions} is not in the file "
                            f"(it has {sorted(set(rep[keep].tolist()))}); pick one of those")
        keep &= rep == int(repetitions)
    if not np.any(keep):
        raise UserError(f"{where}: the file holds no imaging acquisitions (only noise or navigator readouts)")
    return keep


def _accumulate(lines: np.ndarray, where_to: tuple, calib_only: np.ndarray,
                grid: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the readouts at each ``(entry, ky, kz)``: ``(E, ky, kz, coils, x)`` and counts.

    Imaging readouts win over calibration-only readouts at the same location."""
    kspace = counts = None
    for sel in (calib_only, ~calib_only):
        at = tuple(w[sel] for w in where_to)
        sums = np.zeros(grid + lines.shape[1:], np.complex128)
        cnt = np.zeros(grid, np.int64)
        np.add.at(sums, at, lines[sel])
        np.add.at(cnt, at, 1)
        mean = (sums / np.maximum(cnt, 1)[..., None, None]).astype(np.complex64)
        if kspace is None:
            kspace, counts = mean, cnt
        else:
            kspace, counts = np.where((cnt > 0)[..., None, None], mean, kspace), counts + cnt
    return kspace, counts
