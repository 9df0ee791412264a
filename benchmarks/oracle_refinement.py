"""Headroom of the line refinement (issue 13): the same coordinate refinement as learn-mask's
default, but its judge scores the moves on the *test* slices themselves. An oracle, never a
default: it says how much a learner of this family (the start's lines, each moved by 1-3
columns) could gain on these slices if its judge were perfect, so a target it cannot reach is
out of reach of the refinement, not a matter of tuning.

    python benchmarks/oracle_refinement.py runs/s13/ldd128/masks/start_R8.safetensors \
        --out runs/s15/oracle_R8.safetensors [--split test] [--slices 12 | --indices 0 1 2 3 4 5] [--sweeps 2]

Writes a mask file (learn-mask's format, ``meta["oracle"]`` recording split and judge) that a
compare config takes as ``{type: learned_diffusion, file: ...}``; score it there, beside the start
and the default learned mask, under the test-time reconstructions (DPS, BART).

Judge: learn-mask's resolved defaults for the file's kind and R (``LearnMaskOptions.resolved``:
warm-started DDS-15, CG-SENSE averaged in at R >= 8), all 1-3 column moves of every free line
judged (no gradient proposals), ``--sweeps`` passes; columns outside the data's acquired range
are never sampled, as in learn-mask. Bad input (mask file, split, sizes) is one line, exit 2.
"""

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch


def run() -> None:
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.errors import UserError
    from fastmri_diffmask.learn.options import LearnMaskOptions
    from fastmri_diffmask.learn.refine import refine_line_mask
    from fastmri_diffmask.masks.bernoulli import BernoulliMask
    from fastmri_diffmask.masks.file import load_mask_file, save_mask_file
    from fastmri_diffmask.prior.weights import load_prior

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mask", help="line mask file to refine (e.g. the --steps 0 --refine-sweeps 0 start)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--data", default="runs/data")
    ap.add_argument("--split", default="test", help="the slices the oracle judge scores (default test)")
    ap.add_argument("--slices", type=int, default=12, help="how many of them, spread over the split")
    ap.add_argument("--indices", type=int, nargs="+", default=None,
                    help="score these slices of the split instead (e.g. 0 1 2 3 4 5: a cross-fitted oracle "
                         "whose other slices stay unseen); overrides --slices")
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--prior", default="default")
    args = ap.parse_args()

    mf = load_mask_file(args.mask)
    if mf.kind != "line":
        raise UserError(f"{args.mask} is a {mf.kind} mask; the oracle refines line masks (learn-mask --kind line)")
    if args.slices < 1 or args.sweeps < 1:
        raise UserError(f"--slices and --sweeps must be >= 1, got {args.slices} and {args.sweeps}")
    data = load_slices(args.data, args.split)
    w = data.kspace.shape[-1]
    if mf.shape != (w,):
        raise UserError(f"{args.mask} has {mf.shape[-1]} phase-encode columns but the {args.split} slices have {w}; "
                        "use a mask learned at this size")
    n = data.kspace.shape[0]
    if args.indices is not None:
        bad = [i for i in args.indices if not 0 <= i < n]
        if bad or len(set(args.indices)) != len(args.indices):
            raise UserError(f"--indices {' '.join(map(str, args.indices))}: give distinct slice indices in "
                            f"0..{n - 1} (the {args.split} split has {n} slices)")
        data = data.subset(sorted(args.indices))
        args.slices = len(args.indices)
    if args.slices > data.kspace.shape[0]:
        raise UserError(f"--slices {args.slices}: the {args.split} split has only {data.kspace.shape[0]} slices")
    opts = LearnMaskOptions().resolved("line", mf.acceleration)
    prior = load_prior(args.prior, device="cpu")
    bm = BernoulliMask((w,), mf.acceleration, mf.num_low_frequencies, kind="line", acquired=data.acquired_range)
    start = torch.from_numpy((np.asarray(mf.mask) > 0.5).astype(np.float32))
    t0 = time.time()
    refined, hist = refine_line_mask(prior, data, start, bm.fixed, ~bm.excluded, moves=opts.refine_moves,
                                     sweeps=args.sweeps, num_slices=args.slices, dds_steps=opts.refine_dds_steps,
                                     seed=opts.seed, init=opts.refine_init, sigma_start=opts.refine_sigma_start,
                                     eta=opts.refine_eta, churn=opts.refine_churn, classical=opts.refine_classical)
    wall = round(time.time() - t0, 1)
    meta = dict(mf.metadata)
    meta["oracle"] = {"split": args.split, "slices": hist["slices"], "indices": args.indices, "from": args.mask, "wall_seconds": wall,
                      "judge": {"dds_steps": opts.refine_dds_steps, "classical": opts.refine_classical,
                                "init": opts.refine_init, "propose": "all", "sweeps": args.sweeps}}
    meta["refine"] = hist
    out = dataclasses.replace(mf, mask=refined.numpy().reshape(mf.mask.shape), metadata=meta)
    save_mask_file(args.out, out)
    lines = np.flatnonzero(refined.numpy() > 0.5).tolist()
    print(json.dumps({"out": args.out, "judge_start": round(hist["start"], 3), "judge_end": round(hist["end"], 3),
                      "moves": [(m["from"], m["to"]) for m in hist["moves"]], "lines": lines,
                      "reconstructions": hist["reconstructions"], "wall_seconds": wall}))


def main() -> None:
    from fastmri_diffmask.errors import UserError

    try:
        run()
    except UserError as err:  # one line, exit 2, nothing written (the mask file is written last, atomically)
        print(f"oracle_refinement.py: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
