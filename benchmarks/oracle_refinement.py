"""Headroom of the line refinement (issue 13): the same coordinate refinement as learn-mask's
default, but its judge scores the moves on the *test* slices themselves. An oracle, never a
default: it says how much a learner of this family (the start's lines, each moved by 1-3
columns) could gain on these slices if its judge were perfect, so a target it cannot reach is
out of reach of the refinement, not a matter of tuning.

    python benchmarks/oracle_refinement.py runs/s13/ldd128/masks/start_R8.safetensors \
        --out runs/s15/oracle_R8.safetensors [--split test] [--slices 12] [--propose all]

Writes a mask file (learn-mask's format, ``meta["oracle"]`` recording split and judge) that a
compare config takes as ``{type: learned_diffusion, file: ...}``; score it there, beside the start
and the default learned mask, under the test-time reconstructions (DPS, BART).

Judge: learn-mask's resolved defaults for the file's kind and R (``LearnMaskOptions.resolved``:
warm-started DDS-15, CG-SENSE averaged in at R >= 8), all 1-3 column moves of every free line
judged (``--propose all``), ``--sweeps`` passes.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from fastmri_diffmask.dataset import load_slices
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
    ap.add_argument("--sweeps", type=int, default=2)
    ap.add_argument("--prior", default="default")
    args = ap.parse_args()

    mf = load_mask_file(args.mask)
    if mf.kind != "line":
        raise SystemExit("oracle_refinement.py: line masks only (point masks refine a density)")
    opts = LearnMaskOptions().resolved("line", mf.acceleration)
    data = load_slices(args.data, args.split)
    prior = load_prior(args.prior, device="cpu")
    w = data.kspace.shape[-1]
    bm = BernoulliMask((w,), mf.acceleration, mf.num_low_frequencies, kind="line")
    start = torch.from_numpy((np.asarray(mf.mask) > 0.5).reshape(-1, w)[0].astype(np.float32))
    t0 = time.time()
    refined, hist = refine_line_mask(prior, data, start, bm.fixed, ~bm.excluded, moves=opts.refine_moves,
                                     sweeps=args.sweeps, num_slices=args.slices, dds_steps=opts.refine_dds_steps,
                                     seed=opts.seed, init=opts.refine_init, sigma_start=opts.refine_sigma_start,
                                     eta=opts.refine_eta, churn=opts.refine_churn, classical=opts.refine_classical)
    wall = round(time.time() - t0, 1)
    meta = dict(mf.metadata)
    meta["oracle"] = {"split": args.split, "slices": hist["slices"], "from": args.mask, "wall_seconds": wall,
                      "judge": {"dds_steps": opts.refine_dds_steps, "classical": opts.refine_classical,
                                "init": opts.refine_init, "propose": "all", "sweeps": args.sweeps}}
    meta["refine"] = hist
    out = dataclasses.replace(mf, mask=refined.numpy().reshape(mf.mask.shape), metadata=meta)
    save_mask_file(args.out, out)
    lines = np.flatnonzero(refined.numpy() > 0.5).tolist()
    print(json.dumps({"out": args.out, "judge_start": round(hist["start"], 3), "judge_end": round(hist["end"], 3),
                      "moves": [(m["from"], m["to"]) for m in hist["moves"]], "lines": lines,
                      "reconstructions": hist["reconstructions"], "wall_seconds": wall}))


if __name__ == "__main__":
    main()
