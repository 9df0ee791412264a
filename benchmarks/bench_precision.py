"""Seconds per denoiser call, float32 vs the bfloat16 backbone (``EDMPrecond.precision``).

    OMP_NUM_THREADS=2 python benchmarks/bench_precision.py --sizes 128 320 --threads 1 2 \
        --out benchmarks/bench_precision.json

The shipped prior (or ``--prior``), batch ``--batch``, one forward (DDS's cost per step) and one
forward + backward to the input (DPS's cost per step), median of ``--repeats`` after two warm-ups,
each precision in the same process; ``rel_err`` = ``||D_bf16 - D_fp32|| / ||D_fp32||`` on a noisy
head-like image at sigma 0.3. Prints and writes one JSON row per (size, threads); ``cpu`` records
whether the CPU has AMX / AVX-512-BF16 units (without them bfloat16 is slower, not faster).
"""

from __future__ import annotations

import argparse
import json

import torch
from _timing import median_seconds


def _input(batch: int, size: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    head = ((xx / 0.7) ** 2 + (yy / 0.85) ** 2 < 1).float()
    g = torch.Generator().manual_seed(0)
    return torch.stack([0.6 * head, 0.1 * head]).expand(batch, 2, size, size) + 0.3 * torch.randn(
        batch, 2, size, size, generator=g)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="default")
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 320])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--note", default="", help="what else ran on the machine")
    p.add_argument("--out", default="benchmarks/bench_precision.json")
    a = p.parse_args()
    from fastmri_diffmask.prior.weights import load_prior

    prior = load_prior(a.prior, device="cpu")
    cpu = {"amx": bool(torch.cpu._is_amx_tile_supported()), "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported())}
    rows = []
    for size in a.sizes:
        x, sigma = _input(a.batch, size), torch.full((a.batch,), 0.3)
        for threads in a.threads:
            torch.set_num_threads(threads)
            row = {"size": size, "batch": a.batch, "threads": threads, "prior_sha256": prior.sha256[:12], "cpu": cpu,
                   "note": a.note}
            outs = {}
            for precision in ("float32", "bfloat16"):
                prior.precision = precision
                with torch.no_grad():
                    outs[precision] = prior(x, sigma)
                    row[f"forward_s_{precision}"] = round(median_seconds(lambda: prior(x, sigma), a.repeats), 4)

                def forward_backward():
                    xg = x.clone().requires_grad_(True)
                    prior(xg, sigma).square().sum().backward()

                row[f"forward_backward_s_{precision}"] = round(median_seconds(forward_backward, a.repeats), 4)
            prior.precision = "float32"
            row["speedup_forward"] = round(row["forward_s_float32"] / row["forward_s_bfloat16"], 2)
            row["speedup_forward_backward"] = round(row["forward_backward_s_float32"] / row["forward_backward_s_bfloat16"], 2)
            row["rel_err"] = float(f"{float((outs['bfloat16'] - outs['float32']).norm() / outs['float32'].norm()):.2e}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    with open(a.out, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
