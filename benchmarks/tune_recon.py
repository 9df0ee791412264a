"""Tune the reconstructors' one knob on the VALIDATION split: BART/sigpy lamda and DPS zeta.

    python benchmarks/tune_recon.py --data runs/data --split val --num-slices 4 \
        --accelerations 4 8 --lamdas 3e-4 1e-3 3e-3 --zetas 2 3 5 8 --dps-steps 100

Masks: the study's fixed line masks (equispaced_fraction and vd_random, seed 0) with centres of
16 (R = 4) and 10 (R = 8) lines; ESPIRiT (BART) maps. Prints mean PSNR/SSIM per setting and
writes JSON lines to --out.
"""

import argparse
import json

from _val_cases import add_case_arguments, load_cases, mean_scores


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(p, out="benchmarks/tune_recon.jsonl")
    p.add_argument("--lamdas", type=float, nargs="*", default=[3e-4, 1e-3, 3e-3])
    p.add_argument("--methods", nargs="*", default=["bart-l1"])
    p.add_argument("--zetas", type=float, nargs="*", default=[2, 3, 5, 8])
    p.add_argument("--dps-steps", type=int, default=100)
    a = p.parse_args()
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices

    data, cases = load_cases(a.data, a.split, a.num_slices, a.accelerations, a.masks)
    k, target = data.kspace.numpy(), data.target.numpy()
    prior = load_prior(a.prior, device="cpu") if a.zetas else None
    with open(a.out, "a") as log:
        for r, mt, m, maps in cases:
            settings = [(meth, {"lamda": lam}) for meth in a.methods for lam in a.lamdas]
            settings += [("dps", {"zeta": z, "steps": a.dps_steps, "init": "noise", "churn": 0.0, "dc_every": 0}) for z in a.zetas]
            for meth, kw in settings:
                s = ReconSettings(method=meth, prior=prior, device="cpu", seed=0, **kw)
                rec = reconstruct_slices(k, m.mask, maps, m.acceleration, s)
                row = {"R": r, "mask": mt, "method": meth, **kw, **mean_scores(target, rec), "slices": len(k),
                       "split": a.split}
                print(json.dumps(row), flush=True)
                log.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
