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

import torch
from _val_cases import add_case_arguments, case_tensors, load_cases, mean_scores


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(p, out="benchmarks/tune_dds.jsonl")
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50])
    p.add_argument("--dc-weights", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    p.add_argument("--cg-iters", type=int, nargs="+", default=[3, 5])
    p.add_argument("--churn", type=float, nargs="+", default=[0.0])
    a = p.parse_args()
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.sample.dds import dds_reconstruct

    data, cases = load_cases(a.data, a.split, a.num_slices, a.accelerations, a.masks)
    k, target = data.kspace.numpy(), data.target.numpy()
    prior = load_prior(a.prior, device="cpu")
    with open(a.out, "a") as log:
        for r, mt, m, maps in cases:
            mask, y, sm = case_tensors(k, m, maps)
            for steps, mu, it, churn in itertools.product(a.steps, a.dc_weights, a.cg_iters, a.churn):
                t0 = time.time()
                rec = dds_reconstruct(prior, y, mask, sm, steps=steps, dc_weight=mu, cg_iters=it, churn=churn,
                                      generator=torch.Generator().manual_seed(0), progress=False)
                sec = (time.time() - t0) / len(k)
                row = {"R": r, "mask": mt, "achieved_R": round(m.acceleration, 3), "steps": steps, "dc_weight": mu,
                       "cg_iters": it, "churn": churn, "prior": prior.sha256[:12], **mean_scores(target, rec.abs().numpy()),
                       "seconds_per_slice": round(sec, 2), "slices": len(k), "split": a.split}
                print(json.dumps(row), flush=True)
                log.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
