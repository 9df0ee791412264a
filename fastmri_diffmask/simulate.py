"""Turn magnitude images into multi-coil k-space in fastMRI's h5 layout.

Phase, coils and noise are simulated; the magnitude is real anatomy. Each output file is one
"volume" that ``fastmri.data.SliceDataset`` reads unchanged: ``kspace`` (slices, coils, H, W)
complex64 from the centred orthonormal FFT, ``reconstruction_rss`` (slices, H, W), an
``ismrmrd_header`` whose encoding limits put the k-space centre at ``W // 2``, attrs ``max`` and
``acquisition``. Two extra datasets fastMRI ignores keep the ground truth: ``sens_maps`` (the true
maps, normalised to sum_c |S_c|^2 = 1 inside the field of view) and ``image`` (the noise-free
complex image, so ``image = sum_c conj(S_c) ifft2c(kspace_c)`` without noise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import h5py
import numpy as np

from .errors import UserError
from .utils import atomic_path

HEADER_TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <acquisitionSystemInformation><receiverChannels>{coils}</receiverChannels></acquisitionSystemInformation>
  <encoding>
    <encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov}</x><y>{fov}</y><z>{thick}</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov}</x><y>{fov}</y><z>{thick}</z></fieldOfView_mm></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{wmax}</maximum><center>{wc}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
      <slice><minimum>0</minimum><maximum>{smax}</maximum><center>0</center></slice>
    </encodingLimits>
    <trajectory>cartesian</trajectory>
  </encoding>
</ismrmrdHeader>
"""


def fastmri_header(height: int, width: int, coils: int, num_slices: int,
                   fov_mm: float = 217.0, thickness_mm: float = 1.0) -> str:
    """A minimal ISMRMRD header XML for a fully sampled Cartesian slice stack."""
    return HEADER_TEMPLATE.format(h=height, w=width, coils=coils, fov=fov_mm, thick=thickness_mm,
                                  wmax=width - 1, wc=width // 2, smax=num_slices - 1)


def smooth_phase(shape: tuple[int, int], rng: np.random.Generator, order: int = 3,
                 max_rad: float = np.pi) -> np.ndarray:
    """A smooth random phase map: a random low-order 2D Fourier series scaled to +-max_rad."""
    h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    phase = np.zeros(shape)
    for i in range(order + 1):
        for j in range(order + 1 - i):
            a, b = rng.normal(size=2) / (1 + i + j)
            phase += a * np.cos(np.pi * (i * y + j * x) / 2) + b * np.sin(np.pi * (i * y + j * x) / 2)
    phase -= phase.mean()
    return (phase / (np.abs(phase).max() + 1e-12) * max_rad * rng.uniform(0.3, 1.0)).astype(np.float32)


def coil_maps(coils: int, shape: tuple[int, int], rng: np.random.Generator | None = None) -> np.ndarray:
    """Birdcage coil maps (sigpy), normalised so sum_c |S_c|^2 = 1 at every pixel.

    A random in-plane rotation of the coil array (when ``rng`` is given) varies the maps between
    volumes.
    """
    import sigpy.mri

    maps = sigpy.mri.birdcage_maps((coils, *shape), r=1.5).astype(np.complex64)
    if rng is not None:
        maps = maps * np.exp(1j * rng.uniform(0, 2 * np.pi, size=(coils, 1, 1))).astype(np.complex64)
    norm = np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))
    return (maps / np.maximum(norm, 1e-12)).astype(np.complex64)


def fft2c_np(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D FFT over the last two axes (numpy twin of fastmri.fft2c)."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def ifft2c_np(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2D inverse FFT over the last two axes."""
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))


def simulate_volume(magnitude: np.ndarray, coils: int, snr_db: float, rng: np.random.Generator) -> dict:
    """Simulate one volume from magnitude slices ``(S, H, W)``.

    The magnitude is scaled so its 99th percentile is 1; complex Gaussian noise of standard
    deviation ``10**(-snr_db/20)`` per k-space sample (per real and imaginary part / sqrt 2) is
    added, so ``snr_db`` is the 99th-percentile signal over the noise std in dB.
    """
    mag = magnitude / max(np.percentile(magnitude, 99), 1e-12)
    s, h, w = mag.shape
    maps = coil_maps(coils, (h, w), rng)
    image = np.stack([m * np.exp(1j * smooth_phase((h, w), rng)) for m in mag]).astype(np.complex64)
    kspace = fft2c_np(maps[None] * image[:, None])
    std = 10 ** (-snr_db / 20)
    noise = (rng.normal(size=kspace.shape) + 1j * rng.normal(size=kspace.shape)) * std / np.sqrt(2)
    kspace = (kspace + noise).astype(np.complex64)
    target = np.sqrt((np.abs(ifft2c_np(kspace)) ** 2).sum(1)).astype(np.float32)
    return {"kspace": kspace, "reconstruction_rss": target, "sens_maps": np.broadcast_to(maps, (s, *maps.shape)).copy(),
            "image": image, "noise_std": std}


def write_volume(path: str | Path, vol: dict, acquisition: str = "AXT1", extra_attrs: dict | None = None) -> Path:
    """Write a simulated volume as a fastMRI multi-coil h5 file (atomically)."""
    s, c, h, w = vol["kspace"].shape
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("kspace", data=vol["kspace"])
            f.create_dataset("reconstruction_rss", data=vol["reconstruction_rss"])
            f.create_dataset("ismrmrd_header", data=fastmri_header(h, w, c, s))
            f.create_dataset("sens_maps", data=vol["sens_maps"], compression="gzip", compression_opts=1)
            f.create_dataset("image", data=vol["image"])
            f.attrs["max"] = float(vol["reconstruction_rss"].max())
            f.attrs["norm"] = float(np.linalg.norm(vol["reconstruction_rss"]))
            f.attrs["acquisition"] = acquisition
            f.attrs["patient_id"] = "colin27"
            f.attrs["noise_std"] = float(vol["noise_std"])
            for k, v in (extra_attrs or {}).items():
                f.attrs[k] = v
    return Path(path)


def chunks(indices: np.ndarray, size: int) -> Iterable[np.ndarray]:
    """Split contiguous slice indices into volumes of at most ``size`` slices."""
    for start in range(0, len(indices), size):
        yield indices[start:start + size]


def check_simulation(size: int, coils: int, slices_per_file: int) -> None:
    """One-line :class:`UserError` for simulation settings out of range."""
    if not 16 <= size <= 1024:
        raise UserError(f"--size {size} is out of range; use 16..1024")
    if not 1 <= coils <= 64:
        raise UserError(f"--coils {coils} is out of range; use 1..64")
    if slices_per_file < 1:
        raise UserError("--slices-per-file must be >= 1")


def write_embedded_dataset(out: str | Path, splits: str | None = None, size: int = 128, coils: int = 8,
                           snr: float = 50.0, seed: int = 0, slices_per_file: int = 12,
                           progress: bool = True) -> list[Path]:
    """Write the embedded Colin27 slices as ``OUT/<split>/colin27_<split>_NN.h5`` (``make-data``).

    ``splits`` is a comma-separated subset of train,val,test (default all). Each file's phase,
    coils and noise are seeded by ``(seed, split, file)``. Returns the written paths.
    """
    from tqdm import tqdm

    from .embedded import DATA_ID, SPLITS, embedded_magnitude, split_indices

    split_arg = splits if splits is not None else ",".join(SPLITS)
    names = [x.strip() for x in split_arg.split(",") if x.strip()]
    bad = [x for x in names if x not in SPLITS]
    if bad or not names:
        raise UserError(f"unknown split {bad or split_arg!r}; use a comma-separated subset of {','.join(SPLITS)}")
    check_simulation(size, coils, slices_per_file)
    mags = embedded_magnitude()
    if size != mags.shape[-1]:
        from skimage.transform import resize

        mags = np.stack([resize(m, (size, size), order=3, anti_aliasing=True) for m in mags])
        mags = np.clip(mags, 0, None).astype(np.float32)
    jobs = [(split, j, idx) for split in names
            for j, idx in enumerate(chunks(split_indices(split, len(mags)), slices_per_file))]
    paths = []
    for split, j, idx in tqdm(jobs, desc="make-data", unit="file", disable=not progress):
        rng = np.random.default_rng([seed, SPLITS.index(split), j])
        vol = simulate_volume(mags[idx], coils, snr, rng)
        paths.append(write_volume(Path(out) / split / f"colin27_{split}_{j:02d}.h5", vol,
                                  extra_attrs={"data_id": DATA_ID, "slice_index": np.asarray(idx), "seed": seed}))
    return paths
