"""Score line or point mask files on the validation slices held apart from learn-mask's judge (val 4-9 by default):
mean DDS PSNR with ESPIRiT (BART) maps from each file's own centre. For choosing learner defaults
on validation only (test slices are never touched here).

    python benchmarks/val_check.py MASK.safetensors [MASK ...] [--steps 50] [--slices 4 5 6 7 8 9] [--prior NAME] [--recon bart-l1]

``--recon dps`` scores with ``recon --method dps`` at its defaults (sample/defaults.py; warm start,
data consistency every 5 steps), ``--precision bfloat16`` runs its network in bfloat16.
"""

import argparse
import json

import numpy as np

from _val_cases import dds_psnr, line_mask_judging

from fastmri_diffmask.prior import PRECISIONS

from fastmri_diffmask.prior.weights import set_precision


def recon_psnr(kspace, target, maps, mask, idx, acceleration, method="bart-l1", prior=None) -> float:
    """Mean PSNR of ``recon --method METHOD`` at its defaults (BART ``pics -l1``: the validated
    lamda; DPS: sample/defaults.py) on slices ``idx`` with a 0/1 mask."""
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices

    mask2d = np.broadcast_to(np.asarray(mask, np.float32), kspace.shape[-2:])
    settings = ReconSettings(method=method, prior=prior, batch=len(idx), device="cpu")
    rec = reconstruct_slices(kspace[idx], mask2d, maps[idx], acceleration, settings)
    return float(np.mean([score(target[i], rec[j])["psnr"] for j, i in enumerate(idx)]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("masks", nargs="+")
    ap.add_argument("--data", default="runs/data")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--slices", type=int, nargs="+", default=[4, 5, 6, 7, 8, 9])
    ap.add_argument("--prior", default="default", help="shipped name (default, colin27-v1) or a prior file")
    ap.add_argument("--recon", choices=["dds", "bart-l1", "dps"], default="dds",
                    help="the scoring reconstruction (default DDS with --steps; dps: recon's DPS defaults)")
    ap.add_argument("--precision", choices=PRECISIONS, default="float32", help="the prior network's arithmetic")
    args = ap.parse_args()
    for path in args.masks:
        mf, k, target, maps, prior, _ = line_mask_judging(args.data, path, args.prior)
        set_precision(prior, args.precision)
        idx = [i for i in args.slices if i < len(k)]
        if args.recon == "dds":
            value = dds_psnr(prior, k, target, maps, np.asarray(mf.mask, np.float32), idx, args.steps)
            row = {"mask": path, "kind": mf.kind, "dds_steps": args.steps, "val_slices": idx, "psnr": round(value, 3)}
        else:
            value = recon_psnr(k, target, maps, mf.mask, idx, mf.acceleration, args.recon, prior)
            row = {"mask": path, "kind": mf.kind, "recon": args.recon, "val_slices": idx, "psnr": round(value, 3)}
        if args.precision != "float32":
            row["precision"] = args.precision
        sampled = np.flatnonzero(np.asarray(mf.mask) > 0.5)
        if mf.kind == "line":
            row["lines"] = [int(i) for i in sampled]
        else:  # a point mask's sampled indices are too many to list
            row["num_sampled"] = int(sampled.size)
        print(json.dumps(row))


if __name__ == "__main__":
    main()
