"""``fastmri-diffmask make-data``: brain slices as fastMRI multi-coil h5 files.

By default the embedded Colin27 slices (train/val/test); with ``--from FILE`` the slices of any
magnitude image or volume (``.npy`` or NIfTI, see :mod:`fastmri_diffmask.magnitude`) into one
split folder, e.g. a test set of another subject for checking how learned masks transfer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("make-data", help="write brain slices (embedded, or --from FILE) as fastMRI-layout multi-coil h5 files",
                       description="Write OUT/{train,val,test}/colin27_<split>_NN.h5 in fastMRI's multi-coil layout "
                                   "(real Colin27 anatomy; simulated phase, coils and noise), or with --from FILE "
                                   "OUT/<split-name>/<stem>_r<repeat>_NN.h5 from your own magnitude image or volume.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--size", type=int, default=128, help="image size (square; default 128)")
    p.add_argument("--coils", type=int, default=8, help="number of coils (default 8)")
    p.add_argument("--snr", type=float, default=50.0,
                   help="99th-percentile signal over noise std per k-space sample, in dB (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default=None,
                   help="comma-separated embedded splits to write (default train,val,test; not with --from)")
    p.add_argument("--slices-per-file", type=int, default=12, help="slices per h5 volume (default 12)")
    g = p.add_argument_group("your own image (--from)")
    g.add_argument("--from", dest="from_file", metavar="FILE", default=None,
                   help="magnitude image (H, W) or volume as .npy, .nii or .nii.gz (NIfTI needs nibabel) "
                        "instead of the embedded slices; each slice is padded to a square and resized to --size, "
                        "slices without tissue are skipped")
    g.add_argument("--axis", type=int, default=-1,
                   help="slice axis of a 3D volume (default -1, the last; for NIfTI, after reorienting to RAS: "
                        "0 sagittal, 1 coronal, 2 axial)")
    g.add_argument("--split-name", default="test", help="sub-folder of --out to write (default test)")
    g.add_argument("--repeats", type=int, default=1,
                   help="independent realisations of the simulated coils, phase and noise per slice, one file set "
                        "each (default 1; more for few slices)")
    p.set_defaults(func=run)


def _check_common(args) -> None:
    if not 16 <= args.size <= 1024:
        raise UserError(f"--size {args.size} is out of range; use 16..1024")
    if not 1 <= args.coils <= 64:
        raise UserError(f"--coils {args.coils} is out of range; use 1..64")
    if args.slices_per_file < 1:
        raise UserError("--slices-per-file must be >= 1")


def run(args) -> int:
    if getattr(args, "from_file", None) is not None:
        return run_from_file(args)
    from tqdm import tqdm

    from ..embedded import DATA_ID, SPLITS, embedded_magnitude, split_indices
    from ..simulate import chunks, simulate_volume, write_volume

    split_arg = args.split if args.split is not None else ",".join(SPLITS)
    splits = [s.strip() for s in split_arg.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise UserError(f"unknown split {bad or split_arg!r}; use a comma-separated subset of {','.join(SPLITS)}")
    _check_common(args)
    mags = embedded_magnitude()
    if args.size != mags.shape[-1]:
        from skimage.transform import resize

        mags = np.stack([resize(m, (args.size, args.size), order=3, anti_aliasing=True) for m in mags])
        mags = np.clip(mags, 0, None).astype(np.float32)
    out = Path(args.out)
    jobs = []
    for split in splits:
        for j, idx in enumerate(chunks(split_indices(split, len(mags)), args.slices_per_file)):
            jobs.append((split, j, idx))
    for split, j, idx in tqdm(jobs, desc="make-data", unit="file"):
        rng = np.random.default_rng([args.seed, SPLITS.index(split), j])
        vol = simulate_volume(mags[idx], args.coils, args.snr, rng)
        write_volume(out / split / f"colin27_{split}_{j:02d}.h5", vol,
                     extra_attrs={"data_id": DATA_ID, "slice_index": np.asarray(idx), "seed": args.seed})
    print(f"wrote {len(jobs)} files to {out} ({', '.join(splits)})")
    return 0


def run_from_file(args) -> int:
    """``--from FILE``: every slice with tissue, ``--repeats`` times, into ``OUT/<split-name>``.

    Repeat ``r`` is its own set of files (``<stem>_r<r>_NN.h5``) with its own coil rotation,
    phase and noise, so the repeats are separate simulated acquisitions of the same anatomy.
    All input checks run before the first file is written.
    """
    from tqdm import tqdm

    from ..magnitude import file_sha256, load_magnitude_slices, source_stem
    from ..simulate import chunks, simulate_volume, write_volume

    if args.split is not None:
        raise UserError("--split picks embedded splits; with --from name the output folder with --split-name")
    _check_common(args)
    name = str(args.split_name).strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise UserError(f"--split-name {args.split_name!r} must be a plain folder name, e.g. test")
    if args.repeats < 1:
        raise UserError("--repeats must be >= 1")
    src = Path(args.from_file)
    mags, index = load_magnitude_slices(src, args.size, args.axis)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in source_stem(src))
    folder = Path(args.out) / name
    groups = list(enumerate(chunks(np.arange(len(mags)), args.slices_per_file)))
    jobs = [(r, j, idx, folder / f"{stem}_r{r}_{j:02d}.h5") for r in range(args.repeats) for j, idx in groups]
    stale = sorted(set(folder.glob("*.h5")) - {path for *_, path in jobs}) if folder.is_dir() else []
    if stale:
        raise UserError(f"{folder} already holds {len(stale)} other h5 file(s) (e.g. {stale[0].name}) that would mix "
                        "into this set; use an empty --out or --split-name")
    common = {"data_id": f"file:{src.name}", "source_file": src.name, "source_sha256": file_sha256(src),
              "patient_id": stem, "seed": args.seed, "size": args.size}
    for r, j, idx, path in tqdm(jobs, desc="make-data", unit="file"):
        rng = np.random.default_rng([args.seed, r, j])
        vol = simulate_volume(mags[idx], args.coils, args.snr, rng)
        write_volume(path, vol, extra_attrs={**common, "slice_index": index[idx], "repeat": r})
    print(f"wrote {len(jobs)} files ({len(mags)} slice(s) x {args.repeats} repeat(s)) from {src.name} to {folder}")
    return 0
