"""Choose a fast warm-started DDS on the VALIDATION split: start estimate x sigma_start x steps (x eta, CG iterations).

    python benchmarks/tune_fast_dds.py --accelerations 8 4 --inits zero-filled sense \
        --sigma-starts 0.5 1 2 5 --steps 4 6 8 10 15 --etas 1 --churn 0 --cg-iters 5 15 --reference --bart

Same cases as ``tune_dds.py`` (the study's fixed line masks, seed 0, centres of 16 / 10 lines,
ESPIRiT (BART) maps, the first ``--num-slices`` validation slices), so the rows compare with
DDS-50's there. ``--reference`` adds DDS at its defaults (50 steps from noise at sigma_max) and
``--bart`` BART ``pics -l1`` (validated lamda) per case, timed in the same process and conditions.
``--etas none`` is today's deterministic step rule; ``--sigma-mins`` and ``--rhos`` vary the end and
the spacing of EDM's schedule (defaults 0.002 and 7). Seconds are wall time per slice (batch of all
slices, ``--threads`` torch threads, after a warm-up) and include the start estimate; ``nfe`` is
the number of denoiser evaluations, the timing-free cost. Prints and appends JSON lines to --out.
"""

import argparse
import itertools
import json
import time

import torch
from _val_cases import add_case_arguments, case_tensors, load_cases, mean_scores

from fastmri_diffmask.prior import PRECISIONS


def _eta(text: str):
    return None if text.lower() == "none" else float(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_case_arguments(p, out="benchmarks/tune_fast_dds.jsonl")
    p.set_defaults(masks=["equispaced_fraction"])
    p.add_argument("--inits", nargs="+", default=["zero-filled", "sense"])
    p.add_argument("--sigma-starts", type=float, nargs="+", default=[0.5, 1, 2, 5])
    p.add_argument("--steps", type=int, nargs="+", default=[4, 6, 8, 10, 15])
    p.add_argument("--etas", type=_eta, nargs="+", default=[1.0], help="fresh-noise fraction per step; 'none' = today's rule")
    p.add_argument("--cg-iters", type=int, nargs="+", default=[5])
    p.add_argument("--churn", type=float, nargs="+", default=[0.0])
    p.add_argument("--dc-weight", type=float, default=0.01)
    p.add_argument("--sigma-mins", type=float, nargs="+", default=[0.002], help="last noise level of the schedule")
    p.add_argument("--rhos", type=float, nargs="+", default=[7.0], help="EDM's schedule exponent rho")
    p.add_argument("--reference", action="store_true", help="add DDS at its defaults (50 steps from noise)")
    p.add_argument("--bart", action="store_true", help="add BART pics -l1 (validated lamda)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="float32", choices=PRECISIONS,
                   help="the denoiser backbone's precision")
    p.add_argument("--note", default="", help="what else ran on the machine (stored in every row)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from fastmri_diffmask.prior.weights import load_prior, set_precision
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices
    from fastmri_diffmask.sample.dds import DDS_DEFAULTS, dds_reconstruct

    data, cases = load_cases(a.data, a.split, a.num_slices, a.accelerations, a.masks)
    k, target = data.kspace.numpy(), data.target.numpy()
    prior = load_prior(a.prior, device="cpu")
    set_precision(prior, a.precision)
    with torch.no_grad():  # warm-up
        prior(torch.zeros(len(k), 2, *k.shape[-2:]), torch.ones(len(k)))
    settings = [dict(init=i, sigma_start=s, steps=n, eta=e, cg_iters=c, churn=ch, dc_weight=a.dc_weight, sigma_min=lo, rho=rho)
                for i, s, n, e, c, ch, lo, rho in itertools.product(a.inits, a.sigma_starts, a.steps, a.etas, a.cg_iters,
                                                                    a.churn, a.sigma_mins, a.rhos)]
    if a.reference:
        settings.insert(0, dict(init="noise", sigma_start=None, eta=None, **DDS_DEFAULTS))
    with open(a.out, "a") as log:
        for r, mt, m, maps in cases:
            mask, y, sm = case_tensors(k, m, maps)
            base = {"R": r, "mask": mt, "achieved_R": round(m.acceleration, 3)}
            rows = []
            if a.bart:
                t0 = time.perf_counter()
                rec = reconstruct_slices(k, m.mask, maps, m.acceleration, ReconSettings(method="bart-l1"))
                rows.append({**base, "method": "bart-l1", "nfe": 0, **mean_scores(target, rec),
                             "seconds_per_slice": (time.perf_counter() - t0) / len(k)})
                print(json.dumps(rows[-1]), flush=True)
            for kw in settings:
                t0 = time.perf_counter()
                rec = dds_reconstruct(prior, y, mask, sm, generator=torch.Generator().manual_seed(0), progress=False, **kw)
                sec = (time.perf_counter() - t0) / len(k)
                rows.append({**base, "method": "dds", **kw, "nfe": kw["steps"], **mean_scores(target, rec.abs().numpy()),
                             "seconds_per_slice": sec})
                print(json.dumps(rows[-1]), flush=True)
            for row in rows:
                row.update(seconds_per_slice=round(row["seconds_per_slice"], 3), prior=prior.sha256[:12], slices=len(k),
                           split=a.split, threads=a.threads, note=a.note,
                           precision=a.precision)
                log.write(json.dumps(row) + "\n")
            log.flush()


if __name__ == "__main__":
    main()
