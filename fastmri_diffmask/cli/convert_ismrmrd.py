"""``fastmri-diffmask convert-ismrmrd IN.h5 OUT.h5``: ISMRMRD raw data to the fastMRI layout.

The output holds ``kspace`` (slices, coils, rows, cols) without readout oversampling, the
ISMRMRD header with ``encodedSpace`` x set to the rows (so fastMRI's ``SliceDataset`` padding and
crop logic work), ``reconstruction_rss`` (root-sum-of-squares of the zero-filled, or fully
sampled, k-space, cropped to ``reconSpace``), attrs ``max`` and ``acquisition`` and, when the
data were undersampled, a ``mask`` dataset with attrs ``acceleration`` and ``num_low_frequency``
as in fastMRI's test files. 3D data become slices along the partition direction (centred
inverse FFT along kz); this needs kz fully sampled on every acquired ky line.

Noise prewhitening: when the file has noise readouts (``ACQ_IS_NOISE_MEASUREMENT``) the k-space
is prewhitened by default (``--no-prewhiten`` turns it off): ``kspace = W y`` along coils with
``W = inv(cholesky(Psi))`` lower-triangular, ``Psi = (1/N) sum n n^H`` the noise scan's coil
covariance times the noise/imaging dwell-time ratio (:mod:`fastmri_diffmask.io.prewhiten`). The
output then also holds

* dataset ``noise_covariance``: ``Psi`` (coils x coils, complex128), the noise covariance of the
  k-space *before* whitening, so ``W`` (and the unwhitened data, ``cholesky(Psi) @ kspace``) can
  be recomputed;
* attrs ``noise_prewhitened = 1``, ``noise_samples`` (N per coil) and ``noise_dwell_time_scale``
  (``t_noise / t_acq``, 1 when unknown).

``kspace`` and ``reconstruction_rss`` are then in whitened units (noise standard deviation 1
per coil and complex sample). The covariance is estimated and validated (positive definite, the
imaging coil count) before anything is written; the file is written to a temporary name and
renamed. With ``--no-prewhiten``, or without noise readouts, the output is what it was before
prewhitening existed (no ``noise_*`` entries, k-space bit-identical).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io.fastmri_h5 import header_for_fastmri, rss_reconstruction, write_fastmri_h5
from ..io.ismrmrd_raw import IsmrmrdRaw, ifftc, read_ismrmrd


def _repetitions(value: str) -> str | int:
    if value in ("separate", "average"):
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not 'separate', 'average' or a repetition index") from None


def _flatten_3d(raw: IsmrmrdRaw, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(entries*kz, coils, rows, ky) partitions and the (ky,) line mask of 3D data."""
    mask = raw.mask
    lines = mask.max(axis=-1)
    if not np.array_equal(mask, np.broadcast_to(lines[:, None], mask.shape)):
        raise UserError(f"{where}: 3D data undersampled along kz cannot be stored per slice in the "
                        "fastMRI layout; convert fully sampled (in kz) data only")
    k = ifftc(raw.kspace, axis=-1)  # (entries, coils, rows, ky, kz) -> partitions
    k = np.moveaxis(k, -1, 1)
    return k.reshape(-1, *k.shape[2:]).astype(np.complex64), lines


def convert_ismrmrd(in_path: str | Path, out_path: str | Path, *, dataset: str = "dataset",
                    repetitions: str | int = "separate", acquisition: str | None = None,
                    prewhiten: bool = True) -> IsmrmrdRaw:
    """Convert an ISMRMRD ``.h5`` file to the fastMRI layout (see the module docstring).

    Returns the :class:`~fastmri_diffmask.io.ismrmrd_raw.IsmrmrdRaw` that was written.
    """
    where = str(in_path)
    raw = read_ismrmrd(in_path, dataset=dataset, repetitions=repetitions, prewhiten=prewhiten)
    enc = raw.encoding
    is_3d = enc.encoded_matrix[2] > 1
    if raw.mask.ndim != (2 if is_3d else 1):
        raise UserError(f"{where}: repetitions sample different lines; pass --repetitions average or "
                        "a repetition index")
    if is_3d:
        kspace, mask = _flatten_3d(raw, where)
    else:
        kspace, mask = raw.kspace, raw.mask
    ey = enc.encoded_matrix[1]
    pad_left = ey // 2 - enc.step_1[2]
    pad_right = pad_left + enc.step_1[1] + 1
    undersampled = not np.all(mask[max(pad_left, 0):pad_right] > 0)
    rx, ry, _ = enc.recon_matrix
    rss = rss_reconstruction(kspace, crop=(rx, ry))
    attrs = {"acquisition": acquisition or enc.protocol_name or "ISMRMRD"}
    extra = {}
    if undersampled:
        extra["mask"] = mask > 0
        attrs["acceleration"] = float(raw.acceleration or raw.achieved_acceleration)
        attrs["num_low_frequency"] = int(raw.num_low_frequencies)
    if raw.prewhitened:
        extra["noise_covariance"] = np.asarray(raw.noise_covariance, np.complex128)
        attrs.update(noise_prewhitened=1, noise_samples=int(raw.noise_samples),
                     noise_dwell_time_scale=float(raw.noise_dwell_scale))
    header = header_for_fastmri(raw.header_xml, rows=kspace.shape[-2])
    write_fastmri_h5(out_path, kspace, header, reconstruction_rss=rss, attrs=attrs, extra=extra)
    return raw


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-ismrmrd", help="convert Cartesian ISMRMRD raw data (.h5) to the fastMRI layout",
        description=__doc__.splitlines()[0].split(": ", 1)[-1],
    )
    p.add_argument("input", metavar="IN.h5", help="ISMRMRD raw data file")
    p.add_argument("output", metavar="OUT.h5", help="fastMRI-layout file to write (atomically)")
    p.add_argument("--dataset", default="dataset", help="group inside IN.h5 (default: dataset)")
    p.add_argument("--repetitions", type=_repetitions, default="separate",
                   help="'separate' (each repetition is its own slice; default), 'average', or an index")
    p.add_argument("--acquisition", default=None,
                   help="attrs['acquisition'] (default: the header's protocolName, else 'ISMRMRD')")
    p.add_argument("--no-prewhiten", dest="prewhiten", action="store_false",
                   help="do not whiten the coils with the file's noise readouts (default: whiten "
                        "when noise readouts are present; the covariance is stored as noise_covariance)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    raw = convert_ismrmrd(args.input, args.output, dataset=args.dataset,
                          repetitions=args.repetitions, acquisition=args.acquisition,
                          prewhiten=args.prewhiten)
    noise = "" if raw.noise_std is None else f", noise std {float(raw.noise_std.mean()):.3g}"
    if raw.prewhitened:
        noise += f", prewhitened ({raw.noise_samples} noise samples per coil)"
    print(f"wrote {args.output}: kspace {tuple(raw.kspace.shape)}, achieved R {raw.achieved_acceleration:.2f}, "
          f"{raw.num_low_frequencies} low frequencies{noise}")
    return 0
