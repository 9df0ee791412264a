"""Cost of one mask-learning iteration: the one-step Tweedie objectives against backprop
through unrolled DPS.

Per configuration, in a fresh subprocess (so peak RSS is its own): seconds per iteration (median
over ``--repeats`` after one warm-up) and peak resident memory above the set-up baseline, for

* ``tweedie``     (a) likelihood gradient w.r.t. x_t through the denoiser, double backward;
* ``tweedie-x0``  (b) analytic gradient w.r.t. x0_hat, no backward through the denoiser;
* ``dps-N``       N DPS steps on EDM's schedule (sigma 80 -> 0.002, rho 7), each with the
                  likelihood gradient through the denoiser (create_graph), backprop end to end;
* ``dds``         the differentiable short DDS reconstruction from the masked data (6 levels, 5 CG
                  steps each, denoiser detached: learn/dds_unroll.py);
* ``dds-grad``    the same, backpropagating through the denoiser as well (first order).

``--size 640x368`` gives a rectangular grid (rows x columns; the line mask is over the columns).

An iteration = draw a Gumbel-ST mask, build the estimate, loss, backward to the logits, Adam step.
Batch 1, 128^2, 8 coils, the shipped architecture (``small`` preset, random weights: cost does not
depend on the weights).

Usage::

    .venv/bin/python benchmarks/bench_objective.py --out benchmarks/bench_objective.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def one(name: str, size: str, coils: int, preset: str, repeats: int, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from fastmri_diffmask.learn.objective import ObjectiveConfig, objective_loss
    from fastmri_diffmask.learn.tweedie import Likelihood, unrolled_estimate
    from fastmri_diffmask.masks.bernoulli import BernoulliMask, as_kspace_mask
    from fastmri_diffmask.physics import MultiCoilOperator, to_complex
    from fastmri_diffmask.prior.edm import EDMPrecond
    from fastmri_diffmask.prior.unet import PRESETS, UNet
    from fastmri_diffmask.sample.dps import edm_sigmas

    torch.manual_seed(0)
    prior = EDMPrecond(UNet(in_channels=2, **PRESETS[preset])).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    h, w = (int(v) for v in size.split("x")) if "x" in size else (int(size), int(size))
    x = torch.randn(1, 2, h, w, generator=g)
    maps = torch.randn(1, coils, h, w, dtype=torch.complex64, generator=g) / coils ** 0.5
    mask = BernoulliMask(w, 8, max(1, round(w / 12.8)))  # 10 centre lines at 128
    opt = torch.optim.Adam([mask.logits], lr=0.01)

    def step():
        opt.zero_grad()
        if name.startswith("dps-"):
            n = int(name.split("-")[1])
            sig = edm_sigmas(n)[:-1].float()[None]
            m = as_kspace_mask(mask.sample(1, generator=g), "line")
            lik = Likelihood(maps, m, MultiCoilOperator(maps)(to_complex(x)))
            x_t = float(sig[0, 0]) * torch.randn(x.shape, generator=g)
            x_hat = unrolled_estimate(prior, x_t, sig, lik, eta=0.05, grad="xt")
            loss = (x_hat - x).pow(2).sum()
        else:
            cfg = ObjectiveConfig(objective="dds", denoiser_grad=True) if name == "dds-grad" else ObjectiveConfig(objective=name)
            loss = objective_loss(prior, mask, x, maps, cfg, g)
        loss.backward()
        opt.step()

    base = _rss_mb()
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"objective": name, "seconds_per_iteration": statistics.median(times), "times": times,
            "peak_mb_above_baseline": round(peak - base, 1), "peak_rss_mb": round(peak, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="128", help="N (square) or HxW, e.g. 640x368")
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--objectives", default="tweedie,tweedie-x0,dds,dds-grad,dps-10,dps-25,dps-100")
    ap.add_argument("--mem-limit-gb", type=float, default=14.0,
                    help="skip dps-N when the linear extrapolation of the measured dps memory exceeds this")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.size, args.coils, args.preset, args.repeats, args.threads)))
        return 0
    rows, per_step_mb = [], None
    for name in args.objectives.split(","):
        reps = 1 if name.startswith("dps-") and int(name.split("-")[1]) >= 50 else args.repeats
        if name.startswith("dps-") and per_step_mb is not None:
            need = per_step_mb * int(name.split("-")[1]) / 1024
            if need > args.mem_limit_gb:
                rows.append({"objective": name, "skipped": f"needs ~{need:.1f} GB (> {args.mem_limit_gb} GB)"})
                print(json.dumps(rows[-1]), flush=True)
                continue
        cmd = [sys.executable, __file__, "--one", name, "--size", args.size, "--coils", str(args.coils),
               "--preset", args.preset, "--repeats", str(reps), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append({"objective": name, "failed": out.stderr.strip().splitlines()[-1][:200]})
        else:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            if name.startswith("dps-"):
                per_step_mb = rows[-1]["peak_mb_above_baseline"] / int(name.split("-")[1])
        print(json.dumps(rows[-1]), flush=True)
    ref = next((r for r in rows if r["objective"] == "tweedie" and "seconds_per_iteration" in r), None)
    for r in rows:
        if ref and "seconds_per_iteration" in r:
            r["cost_vs_tweedie"] = round(r["seconds_per_iteration"] / ref["seconds_per_iteration"], 2)
    doc = {"size": args.size, "coils": args.coils, "preset": args.preset, "threads": args.threads, "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    print(json.dumps(doc["rows"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
