"""``fastmri-diffmask make-data``: the embedded brain slices as fastMRI multi-coil h5 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("make-data", help="write the embedded brain slices as fastMRI-layout multi-coil h5 files",
                       description="Write OUT/{train,val,test}/colin27_<split>_NN.h5 in fastMRI's multi-coil layout "
                                   "(real Colin27 anatomy; simulated phase, coils and noise).")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--size", type=int, default=128, help="image size (square; default 128)")
    p.add_argument("--coils", type=int, default=8, help="number of coils (default 8)")
    p.add_argument("--snr", type=float, default=50.0,
                   help="99th-percentile signal over noise std per k-space sample, in dB (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train,val,test", help="comma-separated splits to write (default all)")
    p.add_argument("--slices-per-file", type=int, default=12, help="slices per h5 volume (default 12)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..embedded import DATA_ID, SPLITS, embedded_magnitude, split_indices
    from ..simulate import chunks, simulate_volume, write_volume

    splits = [s.strip() for s in args.split.split(",") if s.strip()]
    bad = [s for s in splits if s not in SPLITS]
    if bad or not splits:
        raise UserError(f"unknown split {bad or args.split!r}; use a comma-separated subset of {','.join(SPLITS)}")
    if not 16 <= args.size <= 1024:
        raise UserError(f"--size {args.size} is out of range; use 16..1024")
    if not 1 <= args.coils <= 64:
        raise UserError(f"--coils {args.coils} is out of range; use 1..64")
    if args.slices_per_file < 1:
        raise UserError("--slices-per-file must be >= 1")
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
