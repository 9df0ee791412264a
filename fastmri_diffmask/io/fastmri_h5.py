"""Write HDF5 files in the fastMRI layout, and check the arrays read from one.

The layout read by ``fastmri.data.SliceDataset`` [1]_:

``kspace``
    ``(slices, coils, rows, cols)`` complex64 (multi-coil) or ``(slices, rows, cols)``
    (single-coil); rows = readout, cols = phase encode.
``reconstruction_rss``
    ``(slices, recon_x, recon_y)`` float32, the multi-coil target (root-sum-of-squares).
``ismrmrd_header``
    the ISMRMRD XML header; ``SliceDataset`` reads ``encodedSpace``/``reconSpace`` matrix sizes
    and the ``kspace_encoding_step_1`` limits (padding) from it.
``mask``
    ``(cols,)`` bool, only in files whose k-space was undersampled (fastMRI's test files).
attrs
    ``max`` (of the target), ``acquisition`` (protocol name, e.g. ``"CORPD_FBK"``), ``patient_id``.

References
----------
.. [1] Zbontar et al., "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI",
       arXiv:1811.08839, 2018. https://github.com/facebookresearch/fastMRI
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import UserError
from ..utils import atomic_path

NS = "http://www.ismrm.org/ISMRMRD"


def rss_reconstruction(kspace: np.ndarray, crop: tuple[int, int] | None = None) -> np.ndarray:
    """Root-sum-of-squares image of multi-coil k-space, centre-cropped to ``crop``.

    Parameters
    ----------
    kspace : ndarray
        ``(..., coils, rows, cols)`` complex k-space (zero where not sampled).
    crop : (int, int), optional
        Output ``(rows, cols)``, e.g. the header's ``reconSpace`` (x, y); fastMRI's centre crop
        (start ``(n - m) // 2``). Sizes larger than the image are left uncropped.

    Returns
    -------
    ndarray
        ``(..., rows', cols')`` float32. FFT: centred orthonormal (``fastmri.ifft2c``).
    """
    k = np.fft.ifftshift(kspace, axes=(-2, -1))
    img = np.fft.fftshift(np.fft.ifft2(k, axes=(-2, -1), norm="ortho"), axes=(-2, -1))
    rss = np.sqrt(np.sum(np.abs(img) ** 2, axis=-3))
    if crop is not None:
        h, w = rss.shape[-2:]
        ch, cw = min(int(crop[0]), h), min(int(crop[1]), w)
        top, left = (h - ch) // 2, (w - cw) // 2
        rss = rss[..., top:top + ch, left:left + cw]
    return rss.astype(np.float32)


def header_for_fastmri(header_xml: str | bytes, rows: int) -> str:
    """The header with ``encodedSpace`` x set to ``rows`` (after oversampling removal).

    fastMRI's ``SliceDataset`` reads ``encodedSpace``/``reconSpace`` matrix sizes and the
    ``kspace_encoding_step_1`` limits; after removing readout oversampling the encoded x must
    equal the k-space rows. The field of view x is scaled alike; everything else is kept.
    """
    ET.register_namespace("", NS)
    root = ET.fromstring(header_xml)
    space = "{%s}encoding/{%s}encodedSpace/{%s}" % (NS, NS, NS)
    x = root.find(space + f"matrixSize/{{{NS}}}x")
    old = int(float(x.text))
    x.text = str(int(rows))
    fov = root.find(space + f"fieldOfView_mm/{{{NS}}}x")
    if fov is not None and fov.text and old:
        fov.text = f"{float(fov.text) * rows / old:.6f}"
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode")


def _first_bad_slice(a: np.ndarray) -> int | None:
    """Index of the first slice (axis 0) holding NaN or Inf, or None; one slice at a time, so
    the check needs no second array the size of the volume."""
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]).all():
            return i
    return None


def check_volume(path, kspace: np.ndarray, target: np.ndarray | None = None,
                 sens_maps: np.ndarray | None = None) -> None:
    """Refuse a volume whose arrays cannot be reconstructed or scored, with one line each.

    Checked, in this order: ``kspace`` is complex ``(slices, coils, rows, cols)`` with no empty
    dimension and holds no NaN/Inf; ``reconstruction_rss`` (``target``) is real
    ``(slices, h, w)`` with the k-space's slice count, no empty dimension, no NaN/Inf;
    ``sens_maps`` has the k-space's shape and no NaN/Inf. Real fastMRI files pass as they come
    (their targets are smaller than the k-space matrix; that is not checked here).

    Parameters
    ----------
    path : str or Path
        The file, named in the message.
    kspace : ndarray
        ``(slices, coils, rows, cols)`` (single-coil files expanded to one coil).
    target, sens_maps : ndarray, optional
        The file's ``reconstruction_rss`` and ``sens_maps`` when it has them.

    Raises
    ------
    UserError
        What is wrong with which dataset, and what to do.
    """
    fix = "re-create or re-download the file, or move it out of the folder"
    drop_target = "re-create or re-download the file, or delete that dataset to score against the RSS of the k-space"
    drop_maps = "re-create or re-download the file, or delete that dataset and use --sens-maps espirit-bart"
    shape = tuple(kspace.shape)
    if kspace.ndim != 4 or not np.iscomplexobj(kspace):
        raise UserError(f"{path}: kspace must be a complex array (slices, coils, rows, cols) or (slices, rows, cols), "
                        f"got {kspace.dtype} {shape}; {fix}")
    if 0 in shape:
        raise UserError(f"{path}: kspace has an empty dimension {shape}; {fix}")
    bad = _first_bad_slice(kspace)
    if bad is not None:
        raise UserError(f"{path}: kspace holds NaN or Inf values (first in slice {bad}); the file is corrupt: {fix}")
    if target is not None:
        tshape = tuple(target.shape)
        if target.ndim != 3 or tshape[0] != shape[0] or 0 in tshape or np.iscomplexobj(target):
            raise UserError(f"{path}: reconstruction_rss is {target.dtype} {tshape} but kspace {shape} needs real "
                            f"(slices={shape[0]}, h, w); {drop_target}")
        bad = _first_bad_slice(target)
        if bad is not None:
            raise UserError(f"{path}: reconstruction_rss holds NaN or Inf values (first in slice {bad}); {drop_target}")
    if sens_maps is not None:
        if tuple(sens_maps.shape) != shape:
            raise UserError(f"{path}: sens_maps is {tuple(sens_maps.shape)} but kspace is {shape}; they must match: "
                            f"{drop_maps}")
        bad = _first_bad_slice(sens_maps)
        if bad is not None:
            raise UserError(f"{path}: sens_maps holds NaN or Inf values (first in slice {bad}); {drop_maps}")


def write_fastmri_h5(path: str | Path, kspace: np.ndarray, header_xml: str,
                     reconstruction_rss: np.ndarray | None = None,
                     attrs: Mapping[str, Any] | None = None,
                     extra: Mapping[str, np.ndarray] | None = None) -> Path:
    """Write one volume in the fastMRI layout, atomically (temp file, then rename).

    Parameters
    ----------
    path : str or Path
        Output ``.h5`` file (its folder is created).
    kspace : ndarray
        ``(slices, coils, rows, cols)`` or ``(slices, rows, cols)``; stored as complex64.
    header_xml : str
        ISMRMRD XML header; stored as the ``ismrmrd_header`` string dataset.
    reconstruction_rss : ndarray, optional
        ``(slices, h, w)`` target; stored as float32 ``reconstruction_rss``.
    attrs : mapping, optional
        File attributes. ``max`` defaults to the target's maximum when a target is given.
    extra : mapping, optional
        Further datasets by name, e.g. ``{"mask": mask}``.

    Returns
    -------
    Path
        ``path``.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim not in (3, 4) or not np.iscomplexobj(kspace):
        raise UserError(f"kspace must be complex (slices, [coils,] rows, cols), got {kspace.dtype} {kspace.shape}")
    out_attrs = dict(attrs or {})
    if reconstruction_rss is not None:
        reconstruction_rss = np.asarray(reconstruction_rss, np.float32)
        if reconstruction_rss.ndim != 3 or reconstruction_rss.shape[0] != kspace.shape[0]:
            raise UserError(f"reconstruction_rss must be (slices={kspace.shape[0]}, h, w), "
                            f"got {reconstruction_rss.shape}")
        out_attrs.setdefault("max", float(reconstruction_rss.max()))
    import h5py

    path = Path(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=kspace.astype(np.complex64, copy=False))
            f.create_dataset("ismrmrd_header", data=header_xml)
            if reconstruction_rss is not None:
                f.create_dataset("reconstruction_rss", data=reconstruction_rss)
            for name, value in (extra or {}).items():
                f.create_dataset(name, data=np.asarray(value))
            for key, value in out_attrs.items():
                f.attrs[key] = value
    return path
