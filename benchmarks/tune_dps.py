"""Tune DPS on the VALIDATION split: zeta, churn, and the weight of the optional final data-consistency step.

    python benchmarks/tune_dps.py --data runs/data --split val --num-slices 10 \
        --accelerations 4 8 --zetas 3 5 --dc-weights 0 0.01 0.1 --steps 100

``--inits sense --sigma-starts 0.5 1 --steps 25 50`` adds warm starts (``sample/warm_start.py``):
DPS from ``x_init + sigma_start n`` instead of pure noise.

One DPS run per (R, mask, zeta); every data-consistency weight ``mu`` is applied to that same
sample afterwards (``sample.dps.data_consistency``; the proximal problem is scale-invariant, so
this equals ``dps_reconstruct(..., dc_weight=mu)``). ``mu = 0`` means no DC step. Masks: the
study's fixed line masks (seed 0) with centres of 16 (R = 4) and 10 (R = 8) lines; ESPIRiT (BART)
maps. Prints and appends JSON lines to --out.
"""

import argparse
import json
import time

import torch
from _val_cases import add_case_arguments, case_tensors, load_cases, mean_scores

from fastmri_diffmask.prior import PRECISIONS


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(p, out="benchmarks/tune_dps.jsonl", num_slices=10)
    p.add_argument("--zetas", type=float, nargs="+", default=[3, 5])
    p.add_argument("--dc-weights", type=float, nargs="+", default=[0, 0.01, 0.1])
    p.add_argument("--churns", type=float, nargs="+", default=[0.0], help="EDM S_churn values")
    p.add_argument("--dc-iters", type=int, default=10)
    p.add_argument("--dc-every", type=int, nargs="+", default=[0],
                   help="data consistency every K steps during sampling (0 = plain DPS, the final-step --dc-weights "
                        "then apply); with K > 0 each --dc-weights value is the per-step mu")
    p.add_argument("--steps", type=int, nargs="+", default=[100])
    p.add_argument("--inits", nargs="+", default=["noise"], help="warm-start estimates (sample/warm_start.py)")
    p.add_argument("--sigma-starts", type=float, nargs="+", default=[0.0],
                   help="first noise levels of the warm start (0 = sigma_max, a start from noise)")
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--precision", default="float32", choices=PRECISIONS, help="the prior network's arithmetic")
    a = p.parse_args()
    from fastmri_diffmask.sample.warm_start import INITS

    bad = sorted(set(a.inits) - set(INITS))
    if bad or any(s0 < 0 for s0 in a.sigma_starts):
        p.error(f"--inits takes {', '.join(INITS)} and --sigma-starts numbers >= 0; got {a.inits} / {a.sigma_starts}")
    if not any((ini == "noise") == (s0 == 0) for ini in a.inits for s0 in a.sigma_starts):
        p.error("no run to do: --inits noise pairs with --sigma-starts 0 (sigma_max), every warm init with a "
                "--sigma-starts value > 0")
    from fastmri_diffmask.physics import MultiCoilOperator
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.sample.dps import data_consistency, dps_reconstruct

    data, cases = load_cases(a.data, a.split, a.num_slices, a.accelerations, a.masks)
    k, target = data.kspace.numpy(), data.target.numpy()
    prior = load_prior(a.prior, device="cpu", precision=a.precision)
    with open(a.out, "a") as log:
        for r, mt, m, maps in cases:
            mask, y, sm = case_tensors(k, m, maps)
            grid = [(z, c, e, n, ini, s0) for z in a.zetas for c in a.churns for e in a.dc_every for n in a.steps
                    for ini in a.inits for s0 in a.sigma_starts if (ini == "noise") == (s0 == 0)]
            for zeta, churn, every, steps, init, s0 in grid:
                warm = {"init": init, "sigma_start": s0 or None}
                if every:
                    for mu in a.dc_weights:
                        if mu > 0:
                            run_dc_every(a, prior, k, target, r, mt, m, mask, y, sm, zeta, churn, every, mu, log,
                                         steps, warm)
                    continue
                t0, outs = time.time(), []
                g = torch.Generator().manual_seed(0)
                for i in range(0, len(k), a.batch):
                    outs.append(dps_reconstruct(prior, y[i:i + a.batch], mask, sm[i:i + a.batch], steps=steps,
                                                zeta=zeta, churn=churn, generator=g, progress=False, **warm))
                x = torch.cat(outs)
                sec = (time.time() - t0) / len(k)
                op = MultiCoilOperator(sm, mask)
                for mu in a.dc_weights:
                    rec = x if mu == 0 else data_consistency(op, y, x, mu, a.dc_iters)
                    row = {"R": r, "mask": mt, "achieved_R": round(m.acceleration, 3), "zeta": zeta,
                           "churn": churn, "dc_weight": mu, "dc_every": 0, "steps": steps, **warm, "prior": prior.sha256[:12],
                           **mean_scores(target, rec.abs().numpy()), "dps_seconds_per_slice": round(sec, 2), "slices": len(k), "split": a.split,
                           **({"precision": a.precision} if a.precision != "float32" else {})}
                    print(json.dumps(row), flush=True)
                    log.write(json.dumps(row) + "\n")


def run_dc_every(a, prior, k, target, r, mt, m, mask, y, sm, zeta, churn, every, mu, log, steps, warm):
    """One DPS run with data consistency every ``every`` steps (weight ``mu``), scored and logged."""
    from fastmri_diffmask.sample.dps import dps_reconstruct

    t0, outs = time.time(), []
    g = torch.Generator().manual_seed(0)
    for i in range(0, len(k), a.batch):
        outs.append(dps_reconstruct(prior, y[i:i + a.batch], mask, sm[i:i + a.batch], steps=steps, zeta=zeta,
                                    churn=churn, generator=g, progress=False, dc_weight=mu, dc_iters=a.dc_iters,
                                    dc_every=every, **warm))
    rec = torch.cat(outs)
    row = {"R": r, "mask": mt, "achieved_R": round(m.acceleration, 3), "zeta": zeta, "churn": churn,
           "dc_weight": mu, "dc_every": every, "steps": steps, **warm, "prior": prior.sha256[:12],
           **mean_scores(target, rec.abs().numpy()), "dps_seconds_per_slice": round((time.time() - t0) / len(k), 2),
           "slices": len(k), "split": a.split, **({"precision": a.precision} if a.precision != "float32" else {})}
    print(json.dumps(row), flush=True)
    log.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
