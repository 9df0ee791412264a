"""Tune the DDS sampler on the VALIDATION split: steps, per-step data-consistency weight, CG iterations.

    python benchmarks/tune_dds.py --data runs/data --split val --num-slices 4 \
        --accelerations 4 8 --steps 25 50 --dc-weights 0.01 0.03 0.1 --cg-iters 3 5

Same cases as ``tune_dps.py`` (the study's fixed line masks, seed 0, ESPIRiT (BART) maps), so its
rows compare with DPS's. Prints and appends JSON lines to --out.
"""

import argparse
import itertools
import json
import time

import numpy as np
import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="runs/data")
    p.add_argument("--split", default="val")
    p.add_argument("--num-slices", type=int, default=4)
    p.add_argument("--accelerations", type=float, nargs="+", default=[4, 8])
    p.add_argument("--masks", nargs="+", default=["equispaced_fraction", "vd_random"])
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50])
    p.add_argument("--dc-weights", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    p.add_argument("--cg-iters", type=int, nargs="+", default=[3, 5])
    p.add_argument("--churn", type=float, nargs="+", default=[0.0])
    p.add_argument("--prior", default="default")
    p.add_argument("--out", default="benchmarks/tune_dds.jsonl")
    a = p.parse_args()
    from _val_cases import load_cases
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.sample.dds import dds_reconstruct

    data, cases = load_cases(a.data, a.split, a.num_slices, a.accelerations, a.masks)
    k, target = data.kspace.numpy(), data.target.numpy()
    prior = load_prior(a.prior, device="cpu")
    with open(a.out, "a") as log:
        for r, mt, m, maps in cases:
            mask = torch.from_numpy(np.ascontiguousarray(m.mask, np.float32))[None, None]
            y = torch.from_numpy(k * m.mask)
            sm = torch.from_numpy(np.ascontiguousarray(maps))
            for steps, mu, it, churn in itertools.product(a.steps, a.dc_weights, a.cg_iters, a.churn):
                t0 = time.time()
                rec = dds_reconstruct(prior, y, mask, sm, steps=steps, dc_weight=mu, cg_iters=it, churn=churn,
                                      generator=torch.Generator().manual_seed(0), progress=False)
                sec = (time.time() - t0) / len(k)
                sc = [score(target[i], rec[i].abs().numpy()) for i in range(len(k))]
                row = {"R": r, "mask": mt, "achieved_R": round(m.acceleration, 3), "steps": steps, "dc_weight": mu,
                       "cg_iters": it, "churn": churn, "prior": prior.sha256[:12],
                       "psnr": float(np.mean([s["psnr"] for s in sc])),
                       "ssim": float(np.mean([s["ssim"] for s in sc])),
                       "seconds_per_slice": round(sec, 2), "slices": len(k), "split": a.split}
                print(json.dumps(row), flush=True)
                log.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
