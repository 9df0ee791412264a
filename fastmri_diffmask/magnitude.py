"""Magnitude slices for simulation from a user's image or volume (``make-data --from``).

Reads a 2D image or a 3D volume from ``.npy`` or NIfTI (``.nii``/``.nii.gz``, needs nibabel) and
prepares its slices exactly as ``scripts/make_embedded_data.py`` prepared the embedded Colin27
slices: the volume is scaled by its maximum, slices with almost no tissue are dropped, each kept
slice is zero-padded to a centred square and anti-alias resized (cubic) to ``size x size``.

Orientation: a ``.npy`` array is taken as stored (rows top to bottom, columns left to right), so
a 2D image comes out as it displays. A NIfTI volume is first reoriented to the closest canonical
RAS axes (0 = left-right, 1 = posterior-anterior, 2 = inferior-superior: axis 2 gives axial, 1
coronal, 0 sagittal slices) and each slice is rotated by 90 degrees like the embedded data
(anterior, or superior, at the top).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import UserError
from .utils import file_sha256

SUFFIXES = (".npy", ".nii", ".nii.gz")
#: A slice is "empty" when fewer than ``EMPTY_FRACTION`` of its pixels exceed ``EMPTY_LEVEL`` of
#: the volume maximum (the embedded data's rule).
EMPTY_LEVEL, EMPTY_FRACTION = 0.1, 0.03


def source_stem(path: str | Path) -> str:
    """The file name without its image suffix (``t1.nii.gz`` -> ``t1``)."""
    name = Path(path).name
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "image"
    return Path(name).stem or "image"


def read_image(path: str | Path) -> tuple[np.ndarray, bool]:
    """The array stored in ``path`` (``.npy`` or NIfTI) and whether it came from NIfTI.

    Singleton axes are dropped; complex values become their magnitude; the result must be finite
    and 2D or 3D. Anything else is a one-line :class:`UserError`.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--from {path} does not exist; give a .npy or NIfTI (.nii, .nii.gz) magnitude image")
    name = path.name.lower()
    if name.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UserError(f"--from {path} is not a readable .npy array ({str(e).splitlines()[0][:80]})") from None
        nifti = False
    elif name.endswith((".nii", ".nii.gz")):
        try:
            import nibabel as nib
        except ImportError:
            raise UserError("reading NIfTI needs nibabel; `pip install nibabel` (or save the volume as .npy)") from None
        try:
            img = nib.as_closest_canonical(nib.load(str(path)))
            arr = np.asarray(img.dataobj, dtype=np.float32)
        except Exception as e:  # nibabel raises many types for a damaged file
            raise UserError(f"--from {path} is not a readable NIfTI file ({str(e).splitlines()[0][:80]})") from None
        nifti = True
    else:
        raise UserError(f"--from {path}: unknown file type; use .npy, .nii or .nii.gz")
    if arr.dtype.kind not in "biufc":
        raise UserError(f"--from {path} holds {arr.dtype} values; it must be a numeric image")
    arr = np.abs(arr) if np.iscomplexobj(arr) else arr
    arr = np.squeeze(np.asarray(arr, dtype=np.float32))
    if arr.ndim not in (2, 3):
        raise UserError(f"--from {path} has shape {arr.shape}; it must be a 2D image (H, W) or a 3D volume")
    if min(arr.shape) < 2:
        raise UserError(f"--from {path} has shape {arr.shape}; it is too small to be an image")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"--from {path} holds NaN or Inf values; clean the image first")
    return arr, nifti


def as_slices(arr: np.ndarray, axis: int = -1) -> np.ndarray:
    """``(N, H, W)`` slices of a 2D image (N = 1) or of a 3D volume along ``axis``."""
    if arr.ndim == 2:
        return arr[None]
    if not -arr.ndim <= axis < arr.ndim:
        raise UserError(f"--axis {axis} is out of range for a volume of shape {arr.shape}; use 0, 1 or 2 (or -1)")
    return np.moveaxis(arr, axis, 0)


def has_tissue(sl: np.ndarray) -> bool:
    """Whether a slice (scaled by its volume's maximum) holds more than a sliver of tissue."""
    return bool((sl > EMPTY_LEVEL).mean() >= EMPTY_FRACTION)


def pad_square(sl: np.ndarray, n: int | None = None) -> np.ndarray:
    """Zero-pad a 2D slice to a centred ``n x n`` square (default: its longer side)."""
    n = max(sl.shape) if n is None else n
    sq = np.zeros((n, n), np.float32)
    ox, oy = (n - sl.shape[0]) // 2, (n - sl.shape[1]) // 2
    sq[ox:ox + sl.shape[0], oy:oy + sl.shape[1]] = sl
    return sq


def resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Anti-alias cubic resize of a square slice to ``size x size``, negatives clipped to 0."""
    from skimage.transform import resize

    return np.clip(resize(img, (size, size), anti_aliasing=True, order=3, mode="constant"), 0, None)


def prepare_slices(stack: np.ndarray, size: int, rotate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scale, drop empty slices, pad and resize: ``(slices (M, size, size) float32, kept indices)``.

    Negative values are clipped to 0 (a magnitude image has none). ``rotate`` turns each padded
    slice by 90 degrees (NIfTI voxel order to display order, as the embedded data).
    """
    stack = np.clip(stack, 0, None)
    top = float(stack.max()) if stack.size else 0.0
    if not top > 0:
        raise UserError("the image is all zeros (or negative); give a magnitude image with tissue in it")
    stack = stack / top
    n = max(stack.shape[1:])
    out, kept = [], []
    for i, sl in enumerate(stack):
        if not has_tissue(sl):
            continue
        sq = pad_square(sl, n)
        out.append(resize_square(np.rot90(sq) if rotate else sq, size))
        kept.append(i)
    if not out:
        raise UserError(f"no slice has tissue (more than {EMPTY_FRACTION:.0%} of pixels above {EMPTY_LEVEL:.0%} "
                        "of the maximum); check the image or --axis")
    return np.stack(out).astype(np.float32), np.asarray(kept)


def load_magnitude_slices(path: str | Path, size: int, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Read ``path`` and return its prepared ``(M, size, size)`` slices and their indices along ``axis``."""
    arr, nifti = read_image(path)
    return prepare_slices(as_slices(arr, axis), size, rotate=nifti)


def write_dataset_from_file(src: str | Path, out: str | Path, split_name: str = "test", repeats: int = 1,
                            axis: int = -1, size: int = 128, coils: int = 8, snr: float = 50.0, seed: int = 0,
                            slices_per_file: int = 12, progress: bool = True) -> tuple[list[Path], int]:
    """Every slice with tissue of ``src``, ``repeats`` times, into ``OUT/<split_name>`` (``make-data --from``).

    Repeat ``r`` is its own set of files (``<stem>_r<r>_NN.h5``) with its own coil rotation,
    phase and noise, so the repeats are separate simulated acquisitions of the same anatomy.
    All input checks run before the first file is written. Returns the paths and the number of
    slices kept.
    """
    from tqdm import tqdm

    from .simulate import check_simulation, chunks, simulate_volume, write_volume

    check_simulation(size, coils, slices_per_file)
    name = str(split_name).strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise UserError(f"--split-name {split_name!r} must be a plain folder name, e.g. test")
    if repeats < 1:
        raise UserError("--repeats must be >= 1")
    src = Path(src)
    mags, index = load_magnitude_slices(src, size, axis)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in source_stem(src))
    folder = Path(out) / name
    groups = list(enumerate(chunks(np.arange(len(mags)), slices_per_file)))
    jobs = [(r, j, idx, folder / f"{stem}_r{r}_{j:02d}.h5") for r in range(repeats) for j, idx in groups]
    stale = sorted(set(folder.glob("*.h5")) - {path for *_, path in jobs}) if folder.is_dir() else []
    if stale:
        raise UserError(f"{folder} already holds {len(stale)} other h5 file(s) (e.g. {stale[0].name}) that would mix "
                        "into this set; use an empty --out or --split-name")
    common = {"data_id": f"file:{src.name}", "source_file": src.name, "source_sha256": file_sha256(src),
              "patient_id": stem, "seed": seed, "size": size}
    paths = []
    for r, j, idx, path in tqdm(jobs, desc="make-data", unit="file", disable=not progress):
        rng = np.random.default_rng([seed, r, j])
        vol = simulate_volume(mags[idx], coils, snr, rng)
        paths.append(write_volume(path, vol, extra_attrs={**common, "slice_index": index[idx], "repeat": r}))
    return paths, len(mags)
