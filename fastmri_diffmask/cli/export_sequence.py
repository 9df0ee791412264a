"""``fastmri-diffmask export-sequence MASK_FILE --format {ismrmrd,csv,json,pulseq} --out PATH``.

Writes the mask as a per-readout acquisition table (order, ky, kz, calibration flag), an
ISMRMRD ``.h5`` template, or a Pulseq ``.seq`` 2D gradient-echo sequence whose phase-encode
table is the mask (line masks; needs the ``pulseq`` extra); see :mod:`fastmri_diffmask.sequence`
and :mod:`fastmri_diffmask.pulseq` for the conventions.
"""

from __future__ import annotations

import argparse

from ..sequence import FORMATS, ORDERS, export_sequence


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export-sequence", help="export a mask file as a sequence table, ISMRMRD template or Pulseq sequence",
        description="Export a mask file as a per-readout table (csv, json), an ISMRMRD .h5 "
                    "template or a Pulseq .seq gradient-echo sequence (line masks); "
                    "ky = kspace_encode_step_1 (Pulseq: LIN) in [0, W) with the centre at W // 2.",
    )
    p.add_argument("mask_file", metavar="MASK_FILE", help="mask file from learn-mask")
    p.add_argument("--format", choices=FORMATS, default="ismrmrd", help="output format (default ismrmrd)")
    p.add_argument("--out", required=True, metavar="PATH", help="output file (written atomically)")
    p.add_argument("--order", choices=ORDERS, default="center-out",
                   help="readout order: center-out (default), linear, or importance (learned probabilities)")
    p.add_argument("--acceleration", type=float, default=None, metavar="R",
                   help="nested mask at acceleration R (mask files with a nested ordering)")
    p.add_argument("--readout", type=int, default=None, metavar="N",
                   help="readout samples in the template (default: the mask file's rows if known, else 2*W)")
    p.add_argument("--readout-oversampling", type=int, default=2, metavar="F",
                   help="readout oversampling of the template: reconSpace x = N / F (default 2)")
    p.add_argument("--fov-mm", type=float, default=256.0, metavar="MM",
                   help="pulseq: square in-plane field of view in mm (default 256)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    table = export_sequence(args.mask_file, args.out, format=args.format, order=args.order,
                            acceleration=args.acceleration, readout=args.readout,
                            readout_oversampling=args.readout_oversampling, fov_mm=args.fov_mm)
    n_cal = int(table["calibration"].sum())
    print(f"wrote {args.out}: {len(table)} readouts ({n_cal} calibration), order {args.order}")
    return 0
