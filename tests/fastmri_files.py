"""Tiny fastMRI-layout multi-coil HDF5 files for tests.

Each file has what :class:`fastmri.data.SliceDataset` reads: ``kspace`` (slices, coils, H, W)
complex64, ``reconstruction_rss`` (slices, rh, rw) float32, an ``ismrmrd_header`` XML with
``encodedSpace``/``reconSpace`` matrix sizes and ``kspace_encoding_step_1`` limits (which give
fastMRI's ``padding_left``/``padding_right``), and attrs ``max``, ``norm``, ``acquisition``,
``patient_id``. Optionally also ``sens_maps`` (slices, coils, H, W) complex64, as this package's
generated files carry.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

NS = "http://www.ismrm.org/ISMRMRD"


def ismrmrd_header(enc_size, recon_size, center, maximum) -> bytes:
    """Minimal ISMRMRD XML header with the fields fastMRI's ``SliceDataset`` queries."""

    def matrix(size):
        return "".join(f"<{a}>{int(v)}</{a}>" for a, v in zip("xyz", size))

    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<ismrmrdHeader xmlns="{NS}"><encoding>'
        f"<encodedSpace><matrixSize>{matrix(enc_size)}</matrixSize></encodedSpace>"
        f"<reconSpace><matrixSize>{matrix(recon_size)}</matrixSize></reconSpace>"
        "<encodingLimits><kspace_encoding_step_1>"
        f"<minimum>0</minimum><maximum>{int(maximum)}</maximum><center>{int(center)}</center>"
        "</kspace_encoding_step_1></encodingLimits></encoding></ismrmrdHeader>"
    ).encode()


def _fft2c(x):
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def _coil_maps(coils, h, w):
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    maps = []
    for c in range(coils):
        a = 2 * np.pi * c / coils
        cy, cx = 1.2 * np.sin(a), 1.2 * np.cos(a)
        mag = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 1.5)
        maps.append(mag * np.exp(1j * (a + 0.5 * xx)))
    maps = np.array(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))


def write_multicoil_volume(
    path, num_slices=2, coils=4, height=64, width=48, recon=(32, 32), pad=0, seed=0, sens_maps=False
) -> Path:
    """Write one fastMRI-layout multi-coil volume; ``pad`` zero columns on each side."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
    maps = _coil_maps(coils, height, width)
    kspace, rss = [], []
    for s in range(num_slices):
        img = ((yy / 0.8) ** 2 + (xx / 0.6) ** 2 < 1).astype(float)
        for _ in range(3):
            cy, cx, r = rng.uniform(-0.4, 0.4), rng.uniform(-0.3, 0.3), rng.uniform(0.05, 0.2)
            img += 0.5 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r**2)
        img = img * np.exp(1j * 0.3 * (yy + s * xx))
        coil_imgs = maps * img
        k = _fft2c(coil_imgs) + 1e-3 * (rng.standard_normal((coils, height, width)) + 1j * rng.standard_normal((coils, height, width)))
        if pad:
            k[..., :pad] = 0
            k[..., width - pad:] = 0
        kspace.append(k.astype(np.complex64))
        full = np.sqrt((np.abs(coil_imgs) ** 2).sum(0))
        h0, w0 = (height - recon[0]) // 2, (width - recon[1]) // 2
        rss.append(full[h0:h0 + recon[0], w0:w0 + recon[1]].astype(np.float32))
    kspace, rss = np.stack(kspace), np.stack(rss)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as hf:
        hf.create_dataset("kspace", data=kspace)
        hf.create_dataset("reconstruction_rss", data=rss)
        hf.create_dataset(
            "ismrmrd_header",
            data=ismrmrd_header((height, width, 1), (recon[0], recon[1], 1), width // 2 - pad, width - 2 * pad - 1),
        )
        if sens_maps:
            hf.create_dataset("sens_maps", data=np.broadcast_to(maps, (num_slices,) + maps.shape).astype(np.complex64))
        hf.attrs["max"] = float(rss.max())
        hf.attrs["norm"] = float(np.linalg.norm(rss))
        hf.attrs["acquisition"] = "CORPD_FBK"
        hf.attrs["patient_id"] = path.stem
    return path


def make_multicoil_dataset(root, num_volumes=2, **kw) -> list[Path]:
    """``num_volumes`` volumes ``file{i}.h5`` under ``root`` (different seeds)."""
    return [
        write_multicoil_volume(Path(root) / f"file_vol{i}.h5", seed=i, **kw) for i in range(num_volumes)
    ]
