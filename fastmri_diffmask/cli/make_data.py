"""``fastmri-diffmask make-data``: brain slices as fastMRI multi-coil h5 files.

By default the embedded Colin27 slices (train/val/test); with ``--from FILE`` the slices of any
magnitude image or volume (``.npy`` or NIfTI, see :mod:`fastmri_diffmask.magnitude`) into one
split folder, e.g. a test set of another subject for checking how learned masks transfer.
"""

from __future__ import annotations

from pathlib import Path

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


def run(args) -> int:
    if getattr(args, "from_file", None) is not None:
        from ..magnitude import write_dataset_from_file

        if args.split is not None:
            raise UserError("--split picks embedded splits; with --from name the output folder with --split-name")
        paths, n = write_dataset_from_file(args.from_file, args.out, args.split_name, args.repeats, args.axis,
                                           args.size, args.coils, args.snr, args.seed, args.slices_per_file)
        print(f"wrote {len(paths)} files ({n} slice(s) x {args.repeats} repeat(s)) from {Path(args.from_file).name} "
              f"to {Path(args.out) / str(args.split_name).strip()}")
        return 0
    from ..simulate import write_embedded_dataset

    paths = write_embedded_dataset(args.out, args.split, args.size, args.coils, args.snr, args.seed,
                                   args.slices_per_file)
    splits = sorted({p.parent.name for p in paths}, key=["train", "val", "test"].index)
    print(f"wrote {len(paths)} files to {args.out} ({', '.join(splits)})")
    return 0
