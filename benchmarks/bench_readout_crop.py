"""What the readout crop saves: seconds and peak memory of DDS (``--steps`` steps) on one slice of
a 2x readout-oversampled grid (default 640 x 368, 15 coils, fastMRI knee) against the same slice
cropped to the reconSpace rows (320 x 368), each in a fresh subprocess (peak RSS its own); the
shipped architecture with random weights (cost does not depend on the weights).

    OMP_NUM_THREADS=2 python benchmarks/bench_readout_crop.py --out benchmarks/bench_readout_crop.json
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def one(h: int, w: int, coils: int, steps: int) -> dict:
    import torch

    from fastmri_diffmask.prior.edm import EDMPrecond
    from fastmri_diffmask.prior.unet import PRESETS, UNet
    from fastmri_diffmask.sample.dds import dds_reconstruct

    torch.manual_seed(0)
    prior = EDMPrecond(UNet(in_channels=2, **PRESETS["small"])).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    k = torch.randn(1, coils, h, w, dtype=torch.complex64, generator=g)
    maps = torch.randn(1, coils, h, w, dtype=torch.complex64, generator=g) / coils ** 0.5
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::4] = 1
    mask[..., w // 2 - 12:w // 2 + 12] = 1
    dds_reconstruct(prior, k * mask, mask, maps, steps=2, progress=False)  # warm-up
    t0 = time.perf_counter()
    dds_reconstruct(prior, k * mask, mask, maps, steps=steps, progress=False)
    sec = time.perf_counter() - t0
    return {"grid": f"{h}x{w}", "coils": coils, "dds_steps": steps, "seconds": round(sec, 2),
            "seconds_per_step": round(sec / steps, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=640)
    ap.add_argument("--cols", type=int, default=368)
    ap.add_argument("--coils", type=int, default=15)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.cols, args.coils, args.steps)))
        return 0
    rows = []
    for h in (args.rows, args.rows // 2):
        cmd = [sys.executable, __file__, "--one", str(h), "--cols", str(args.cols), "--coils", str(args.coils),
               "--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
