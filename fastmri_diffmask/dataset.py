"""Load slices from fastMRI-layout multi-coil h5 files (ours or real fastMRI) as torch tensors.

One code path for the embedded data and for real fastMRI files: k-space, sensitivity maps (the
file's ``sens_maps`` dataset when present, else ESPIRiT), the fastMRI target and the complex
coil-combined image ``sum_c conj(S_c) ifft2c(k_c)`` that priors are trained on.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np
import torch

from .errors import UserError
from .physics import combine_coils, ifft2c
from .simulate import ifft2c_np


class SliceData(NamedTuple):
    """A stack of fully sampled slices. Tensors on CPU; ``kspace``/``sens_maps`` complex64.

    ``acquired`` holds each slice's acquired phase-encode column range ``(start, end)``
    (half-open; fastMRI's ``padding_left``/``padding_right``, see
    :func:`~fastmri_diffmask.masks.acquired.padding_from_header`); ``None`` means the full width.
    """

    kspace: torch.Tensor        # (N, C, H, W)
    sens_maps: torch.Tensor     # (N, C, H, W)
    target: torch.Tensor        # (N, H, W) fastMRI's reconstruction_rss (or RSS of kspace)
    fnames: list[str]
    slice_nums: list[int]
    max_values: torch.Tensor    # (N,) the volume's attrs['max']
    acquired: list[tuple[int, int]] | None = None  # per slice (start, end) columns; None: all W

    @property
    def acquired_range(self) -> tuple[int, int]:
        """The column range acquired in *every* slice (the intersection of the per-slice ranges;
        :func:`load_slices` says so in one line when they differ): ``(0, W)`` when unpadded."""
        from .masks.acquired import common_range

        if not self.acquired:
            return 0, int(self.kspace.shape[-1])
        return common_range(self.acquired)[0]

    @property
    def images(self) -> torch.Tensor:
        """Complex coil-combined images ``(N, H, W)``."""
        return combine_coils(ifft2c(self.kspace), self.sens_maps)

    def subset(self, idx) -> "SliceData":
        idx = list(idx)
        return SliceData(self.kspace[idx], self.sens_maps[idx], self.target[idx],
                         [self.fnames[i] for i in idx], [self.slice_nums[i] for i in idx], self.max_values[idx],
                         None if self.acquired is None else [self.acquired[i] for i in idx])


def list_h5(root: str | Path, split: str | None = None) -> list[Path]:
    """The ``*.h5`` files of ``root/split`` (or ``root`` itself when it holds h5 files)."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"data directory {root} does not exist; create one with `fastmri-diffmask make-data --out {root}`")
    if root.is_file():
        return [root]
    folder = root / split if split and (root / split).is_dir() else root
    if split and folder == root and not list(root.glob("*.h5")):
        raise UserError(f"{root} has no '{split}' folder and no h5 files; point --data at a make-data output or a fastMRI folder")
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise UserError(f"no .h5 files in {folder}; point --data at fastMRI multi-coil files")
    return files


def _num_slices_in(path: Path) -> int:
    """Slices in one fastMRI file, from the k-space dataset's shape (no data read)."""
    try:
        with h5py.File(path, "r") as f:
            return int(f["kspace"].shape[0])
    except (OSError, KeyError):
        raise UserError(f"{path} is not a readable fastMRI file (no 'kspace' dataset); re-create or re-download it") from None


def acquired_range_of(path: str | Path) -> tuple[int, int]:
    """One file's acquired phase-encode columns ``(padding_left, padding_right)``, from its
    ``ismrmrd_header`` exactly as :class:`fastmri.data.SliceDataset` computes them (``(0, W)``
    without header limits); reads no k-space data."""
    from .masks.acquired import padding_from_header

    try:
        with h5py.File(path, "r") as f:
            width = int(f["kspace"].shape[-1])
            header = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
    except (OSError, KeyError):
        raise UserError(f"{path} is not a readable fastMRI file (no 'kspace' dataset); re-create or re-download it") from None
    return padding_from_header(header, width, where=str(path))


def read_volume(path: Path, readout_crop: str = "auto") -> dict:
    """Read one fastMRI file's k-space, target, optional maps, attrs and acquired column range
    (``"acquired"``, see :func:`acquired_range_of`), validating them.

    Parameters
    ----------
    path : Path
        The file.
    readout_crop : {"auto", "off"}
        ``"auto"``: where the header says the readout is oversampled (``encodedSpace x >
        reconSpace x``), crop k-space (in image space) and the file's maps to the central
        ``reconSpace x`` rows (:mod:`fastmri_diffmask.io.readout`); the target is unchanged.
        ``"off"``: the arrays as stored.

    Returns
    -------
    dict
        ``kspace``, ``target``, ``sens_maps``, ``attrs``, ``acquired`` and ``readout``: the
        ``(stored rows, rows now)`` of the k-space.
    """
    from .io.readout import check_readout_crop

    check_readout_crop(readout_crop)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise UserError(f"{path} is not a readable HDF5 file ({str(e).splitlines()[0][:80]}); re-create or re-download it") from None
    with f:
        if "kspace" not in f:
            raise UserError(f"{path} has no 'kspace' dataset; it is not a fastMRI file")
        try:
            kspace = f["kspace"][()]
            target = f["reconstruction_rss"][()] if "reconstruction_rss" in f else None
            maps = f["sens_maps"][()] if "sens_maps" in f else None
        except (OSError, KeyError) as e:
            raise UserError(f"{path} is truncated or corrupt ({type(e).__name__}); re-create it") from None
        attrs = dict(f.attrs)
        header = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
    if kspace.ndim == 3:  # single-coil (slices, H, W): one coil with unit map
        kspace = kspace[:, None]
        maps = np.ones_like(kspace)
    from .io.fastmri_h5 import check_volume

    check_volume(path, kspace, target, maps)  # shapes and NaN/Inf, before anything is computed or written
    from .masks.acquired import padding_from_header

    acquired = padding_from_header(header, kspace.shape[-1], where=str(path))
    from .io.readout import crop_readout, crop_rows, readout_rows

    stored = int(kspace.shape[-2])
    rows = readout_rows(header, stored, readout_crop, where=str(path))
    if rows < stored:  # image-space crop of the readout to the reconSpace FOV; columns untouched
        kspace = crop_readout(kspace, rows)
        maps = None if maps is None else crop_rows(maps, rows)
    return {"kspace": kspace.astype(np.complex64), "target": target, "sens_maps": maps, "attrs": attrs,
            "acquired": acquired, "readout": (stored, rows)}


def file_layout(path: str | Path, readout_crop: str = "auto") -> tuple[int, int, int, int]:
    """One file's ``(slices, coils, rows, cols)`` as :func:`read_volume` gives it (rows after the
    readout crop, :mod:`fastmri_diffmask.io.readout`; 1 coil for single-coil files), from the
    dataset's shape and the header in one open: no k-space data read."""
    from .io.readout import readout_rows

    try:
        with h5py.File(path, "r") as f:
            shape = tuple(int(n) for n in f["kspace"].shape)
            header = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
    except (OSError, KeyError):
        raise UserError(f"{path} is not a readable fastMRI file (no 'kspace' dataset); re-create or re-download it") from None
    if len(shape) < 3:
        raise UserError(f"{path}: kspace must be (slices, coils, rows, cols) or (slices, rows, cols), got {shape}; "
                        "re-create or re-download the file, or move it out of the folder")
    coils = shape[-3] if len(shape) == 4 else 1
    return shape[0], coils, readout_rows(header, shape[-2], readout_crop, where=str(path)), shape[-1]


def file_shape(path: str | Path, readout_crop: str = "auto") -> tuple[int, int]:
    """One file's k-space ``(rows, cols)`` as :func:`read_volume` gives it (:func:`file_layout`)."""
    return file_layout(path, readout_crop)[2:]


def _shape_text(key, with_coils: bool) -> str:
    coils, h, w = key
    return f"{h}x{w} ({coils} coil{'s' if coils != 1 else ''})" if with_coils else f"{h}x{w}"


def sizes_text(counts: dict) -> str:
    """``"24x37: 3 slices, 20x29: 2 slices"`` for counts keyed by ``(coils, rows, cols)``; the coil
    counts are named only when they differ."""
    with_coils = len({k[0] for k in counts}) > 1
    return ", ".join(f"{_shape_text(k, with_coils)}: {n} slices"
                     for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _files_of_size(files: list[Path], size, readout_crop: str, where: str) -> tuple[list[Path], str | None]:
    """The files whose k-space has matrix ``size`` (``"most-common"``: the size most slices
    have, ties to the larger matrix) and, among those, the most common coil count (one mask and
    one batch need one k-space shape), and the one-line note to print when others are skipped."""
    layouts = {p: file_layout(p, readout_crop) for p in files}
    keys = {p: layouts[p][1:] for p in files}
    counts: dict = {}
    for p in files:
        counts[keys[p]] = counts.get(keys[p], 0) + layouts[p][0]
    if size == "most-common":
        key = max(counts, key=lambda k: (counts[k], k[1] * k[2], k[0]))
    else:
        shape = tuple(int(n) for n in size)
        of_size = [k for k in counts if k[1:] == shape]
        if not of_size:
            raise UserError(f"{where} has no slices of {shape[0]}x{shape[1]} (it holds {sizes_text(counts)}); "
                            f"add files of that size or use a folder of one matrix size")
        key = max(of_size, key=lambda k: (counts[k], k[0]))
    note = None
    if len(counts) > 1:
        skipped = sum(counts.values()) - counts[key]
        with_coils = len({k[0] for k in counts}) > 1
        what = "k-space shapes" if with_coils else "matrix sizes"
        note = (f"note: {where} holds {len(counts)} {what} ({sizes_text(counts)}); using the {counts[key]} "
                f"slices of {_shape_text(key, with_coils)}, skipping {skipped} of other {'shapes' if with_coils else 'sizes'} (a mask has one size: learn "
                "one per size from a folder holding that size)")
    return [p for p in files if keys[p] == key], note


def _read_slices(files: list[Path], num_slices, spread: bool, sens_backend: str, device, readout_crop: str) -> list:
    """The slices of ``files`` (all, the first ``num_slices`` or, with ``spread``, that many
    evenly spaced), each a tuple ``(kspace, maps, target, fname, slice, max, acquired, readout)``."""
    wanted = None
    if spread and num_slices is not None:
        counts = [_num_slices_in(path) for path in files]
        total = sum(counts)
        if num_slices < total:
            wanted = {int((j + 0.5) * total / num_slices) for j in range(max(num_slices, 0))}  # centred strata
            starts = np.cumsum([0] + counts[:-1])
            keep = [any(s <= j < s + c for j in wanted) for s, c in zip(starts, counts)]
            files = [f for f, k in zip(files, keep) if k]
            starts = [int(s) for s, k in zip(starts, keep) if k]
    out = []
    for f_idx, path in enumerate(files):
        vol = read_volume(path, readout_crop)  # every file is read (and validated), as before
        for i in range(vol["kspace"].shape[0]):
            if wanted is not None and starts[f_idx] + i not in wanted:
                continue
            if num_slices is not None and len(out) >= num_slices:
                break
            k = vol["kspace"][i]
            if sens_backend == "none":
                s = np.zeros_like(k)
            elif vol["sens_maps"] is not None and sens_backend in ("auto", "file"):
                s = vol["sens_maps"][i]
            elif sens_backend == "file":
                raise UserError(f"{path} has no 'sens_maps' dataset; use --sens-backend sigpy or bart")
            else:
                from .recon.espirit import espirit_maps

                s = espirit_maps(k, backend="sigpy" if sens_backend == "auto" else sens_backend, device=device)
            t = vol["target"][i] if vol["target"] is not None else np.sqrt((np.abs(ifft2c_np(k)) ** 2).sum(0))
            mx = float(vol["attrs"].get("max", np.max(vol["target"]) if vol["target"] is not None else t.max()))
            out.append((k, s.astype(np.complex64), np.asarray(t, np.float32), path.name, i, mx, vol["acquired"],
                        vol["readout"]))
    return out


def _readout_note(items: list, root) -> None:
    crops = sorted({r for *_, r in items if r[1] < r[0]})
    if crops:
        sizes = ", ".join(f"{a} -> {b}" for a, b in crops)
        print(f"note: {root}: readout oversampled; k-space cropped in image space to the reconSpace rows ({sizes}); "
              "--readout-crop off keeps the full readout", file=sys.stderr)


def _stack(items: list) -> SliceData:
    ks, maps, targets, fnames, nums, maxes, acq, _ = zip(*items)
    return SliceData(torch.from_numpy(np.stack(ks)), torch.from_numpy(np.stack(maps)),
                     torch.from_numpy(np.stack(targets)), list(fnames), list(nums), torch.tensor(maxes), list(acq))


def load_slices(root: str | Path, split: str | None = None, num_slices: int | None = None,
                sens_backend: str = "auto", device="cpu", spread: bool = False, readout_crop: str = "auto",
                size="one", notes: bool = True) -> SliceData:
    """Load fully sampled slices from the h5 files of ``root/split``.

    Parameters
    ----------
    sens_backend : "auto" | "file" | "bart" | "sigpy" | "none"
        "auto" uses the file's ``sens_maps`` dataset when present, else sigpy ESPIRiT; "none"
        skips maps (``sens_maps`` is then all zeros: compute them per mask later).
    num_slices : int, optional
        Stop after this many slices (files in name order, slices in order).
    spread : bool
        With ``num_slices``: take that many slices evenly spaced over all slices of all files
        instead of the first ones (a training subset that covers the anatomy, not one end of the
        first volume).
    readout_crop : {"auto", "off"}
        ``"auto"`` crops an oversampled readout to the reconSpace rows (:func:`read_volume`,
        :mod:`fastmri_diffmask.io.readout`; one ``note:`` line on stderr says so); ``"off"``
        keeps the stored grid.
    size : "one", "most-common" or (int, int)
        Matrix sizes: ``"one"`` refuses a folder whose slices differ in k-space shape;
        ``"most-common"`` keeps only the files of the shape most slices have and ``(H, W)`` only
        those of that shape (after the readout crop), choosing files before ``num_slices`` /
        ``spread`` apply; one ``note:`` line on stderr names what was skipped.
    notes : bool
        Print the ``note:`` lines (sizes skipped, readout cropped, mixed acquired ranges) on
        stderr; ``False`` for a second load of slices already reported.

    Returns
    -------
    SliceData
        With each slice's acquired column range in ``acquired`` (from the file's ISMRMRD header,
        as fastMRI's ``padding_left``/``padding_right``). Mixed ranges are allowed: masks use their
        intersection (:attr:`SliceData.acquired_range`) and one ``note:`` line on stderr says so.
    """
    from .io.readout import check_readout_crop

    check_readout_crop(readout_crop)
    files = list_h5(root, split)
    note = None
    if not (isinstance(size, str) and size == "one"):
        if isinstance(size, str) and size != "most-common":
            raise UserError(f"size must be 'one', 'most-common' or (rows, cols), got {size!r}")
        where = str(Path(root) / split) if split and (Path(root) / split).is_dir() else str(root)
        files, note = _files_of_size(files, size, readout_crop, where)
    items = _read_slices(files, num_slices, spread, sens_backend, device, readout_crop)
    if not items:
        raise UserError(f"no slices to load from {root}" + (f"/{split}" if split else "") + "; check --num-slices and the files")
    shapes = {it[0].shape for it in items}
    if len({s[-2:] for s in shapes}) == 1 and len(shapes) > 1:
        raise UserError(f"slices in {root} have different coil counts ({', '.join(str(s[0]) for s in sorted(shapes))}); "
                        "use one coil count per folder (or coil-compress the files to one count)")
    if len(shapes) > 1:
        raise UserError(f"slices in {root} have different shapes {sorted(shapes)}; use one matrix size per folder")
    if not notes:
        return _stack(items)
    if note:
        print(note, file=sys.stderr)
    _readout_note(items, root)
    acq = [it[6] for it in items]
    if len(set(acq)) > 1:  # masks use the columns acquired in every slice
        from .masks.acquired import common_range

        (a, b), _ = common_range(acq)
        print(f"note: slices in {root} have different acquired column ranges {sorted(set(acq))}; "
              f"masks use their intersection [{a}, {b})", file=sys.stderr)
    return _stack(items)


def load_slice_groups(root: str | Path, split: str | None = None, num_slices: int | None = None,
                      sens_backend: str = "auto", device="cpu", spread: bool = False,
                      readout_crop: str = "auto") -> list[SliceData]:
    """Load slices as :func:`load_slices` does, allowing several matrix sizes: one
    :class:`SliceData` per k-space shape, the largest group first (ties: the larger matrix).

    ``num_slices`` / ``spread`` apply over all slices of all files before grouping, so the
    groups keep the sizes' shares of the folder. For training a size-agnostic prior
    (``train-prior`` draws each batch from one group).
    """
    from .io.readout import check_readout_crop

    check_readout_crop(readout_crop)
    items = _read_slices(list_h5(root, split), num_slices, spread, sens_backend, device, readout_crop)
    if not items:
        raise UserError(f"no slices to load from {root}" + (f"/{split}" if split else "") + "; check --num-slices and the files")
    _readout_note(items, root)
    groups: dict = {}
    for it in items:
        groups.setdefault(it[0].shape, []).append(it)
    order = sorted(groups, key=lambda s: (-len(groups[s]), -s[-2] * s[-1]))
    return [_stack(groups[s]) for s in order]
