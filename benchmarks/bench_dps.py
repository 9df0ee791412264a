"""Benchmark DPS (and DDS) against BART pics: seconds per slice, peak memory, and quality vs seconds.

    python benchmarks/bench_dps.py --data runs/data --split test --num-slices 4 \
        --acceleration 8 --steps 25 50 100 200 --dds-steps 25 50 100 --out benchmarks/dps.json

Reports, per DPS step count, the wall seconds per slice (batched over --batch slices, after a
warm-up), the peak resident memory of the process (ru_maxrss) and the mean PSNR/SSIM on the given
slices with an equispaced_fraction line mask; the same for DDS (``sample.dds``, its tuned
defaults: churn 20, per-step dc 0.01, 5 CG iterations) per --dds-steps; BART pics -l1 on the same
slices as the reference point; and a quality-vs-seconds PNG next to --out.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="runs/data")
    p.add_argument("--split", default="test")
    p.add_argument("--num-slices", type=int, default=4)
    p.add_argument("--acceleration", type=float, default=8)
    p.add_argument("--mask-type", default="equispaced_fraction")
    p.add_argument("--num-low-frequencies", type=int, default=10)
    p.add_argument("--steps", type=int, nargs="+", default=[25, 50, 100, 200])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dc-weight", type=float, default=None, help="DPS final data-consistency step (P1 uses 0.03)")
    p.add_argument("--churn", type=float, default=0.0)
    p.add_argument("--dds-steps", type=int, nargs="*", default=[], help="DDS step counts (none by default)")
    p.add_argument("--prior", default="default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="benchmarks/dps.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.masks.select import make_mask
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices, sens_maps_for

    data = load_slices(a.data, a.split, num_slices=a.num_slices, sens_backend="none")
    k, target = data.kspace.numpy(), data.target.numpy()
    m = make_mask(a.mask_type, k.shape[-2:], a.acceleration, a.num_low_frequencies, seed=0)
    maps = np.stack([sens_maps_for(k[i] * m.mask, None, m.num_low_frequencies, "espirit-bart") for i in range(len(k))])
    prior = load_prior(a.prior, device="cpu")
    with torch.no_grad():  # warm-up
        prior(torch.zeros(1, 2, *k.shape[-2:]), torch.ones(1))
    rows = []

    def run(method, **kw):
        s = ReconSettings(method=method, batch=a.batch, prior=prior, device="cpu", **kw)
        t0 = time.perf_counter()
        rec = reconstruct_slices(k, m.mask, maps, m.acceleration, s)
        sec = (time.perf_counter() - t0) / len(k)
        sc = [score(target[i], rec[i]) for i in range(len(k))]
        row = {"method": method, **kw, "seconds_per_slice": round(sec, 3),
               "psnr": round(float(np.mean([x["psnr"] for x in sc])), 3),
               "ssim": round(float(np.mean([x["ssim"] for x in sc])), 4),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    run("bart-l1")
    for steps in a.steps:
        run("dps", steps=steps, dc_weight=a.dc_weight, churn=a.churn, init="noise", dc_every=0)  # from pure noise
    for steps in a.dds_steps:
        run("dds", steps=steps, init="noise", churn=20.0, eta=0.0)  # DDS from noise, as measured
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"acceleration": m.acceleration, "mask_type": a.mask_type, "slices": len(k), "threads": a.threads,
            "shape": list(k.shape[1:]), "batch": a.batch,
            "torch_threads": torch.get_num_threads()}
    out.write_text(json.dumps({"settings": meta, "rows": rows}, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, marker in (("dps", "o-"), ("dds", "^-")):
        d = [r for r in rows if r["method"] == method]
        if d:
            ax.plot([r["seconds_per_slice"] for r in d], [r["psnr"] for r in d], marker, label=method.upper())
        for r in d:
            ax.annotate(f"{r['steps']}", (r["seconds_per_slice"], r["psnr"]), fontsize=8)
    b = rows[0]
    ax.plot([b["seconds_per_slice"]], [b["psnr"]], "s", label="BART pics -l1")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per slice (2 CPU threads)")
    ax.set_ylabel("PSNR dB")
    ax.set_title(f"R = {m.acceleration:g}, {a.mask_type}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=100)
    print("\n| method | steps | s/slice | PSNR | SSIM | peak RSS MB |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r.get('steps', '-')} | {r['seconds_per_slice']} | {r['psnr']} | {r['ssim']} | {r['peak_rss_mb']} |")


if __name__ == "__main__":
    main()
