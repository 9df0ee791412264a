"""Time ESPIRiT and L1-wavelet CS with both backends (BART, sigpy) on simulated multi-coil slices.

Data: Shepp-Logan with a smooth phase, ``--coils`` birdcage coils, complex noise (std 0.002),
1D variable-density mask at R = 4 with fastMRI's default centre. For each size the median wall
time of ``--repeats`` runs after one warm-up is reported, with the PSNR (dB, fastMRI definition)
of each reconstruction against the fully sampled coil combination.

Usage::

    python benchmarks/bench_classical.py --sizes 128 320 --coils 8 --repeats 3 --out bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import sigpy as sp
import sigpy.mri as mr

from fastmri_diffmask.io.bart import bart_version
from fastmri_diffmask.masks.baselines import baseline_mask
from fastmri_diffmask.metrics import score
from fastmri_diffmask.recon.classical import apply_mask, coil_combine, fft2c, ifft2c, l1_wavelet_recon, zero_filled
from fastmri_diffmask.recon.espirit import espirit_maps
from fastmri_diffmask.utils import atomic_path


def simulate(n: int, coils: int, seed: int = 0):
    img = sp.shepp_logan((n, n)).astype(np.complex64)
    yy, xx = np.mgrid[:n, :n] / n
    img = img * np.exp(1j * (1.0 * xx + 0.5 * yy)).astype(np.complex64)
    mps = mr.birdcage_maps((coils, n, n)).astype(np.complex64)
    rng = np.random.default_rng(seed)
    noise = 0.002 * (rng.standard_normal((coils, n, n)) + 1j * rng.standard_normal((coils, n, n)))
    return (fft2c(mps * img) + noise).astype(np.complex64)


def timed(fn, repeats: int):
    out = fn()  # warm-up (numba/JIT caches, file system)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 320])
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--acceleration", type=float, default=4.0)
    ap.add_argument("--lamda", type=float, default=0.001)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--threads", type=int, default=None, help="OpenMP threads for BART (default: inherited)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args(argv)

    rows = []
    for n in args.sizes:
        k = simulate(n, args.coils)
        bm = baseline_mask("vd_random", k.shape, args.acceleration, seed=0)
        ku = apply_mask(k, bm.mask)
        maps = {}
        for backend in ("bart", "sigpy"):
            t, maps[backend] = timed(
                lambda: espirit_maps(ku, backend=backend, device="cpu", threads=args.threads), args.repeats
            )
            rows.append(dict(size=n, task="ESPIRiT", backend=backend, seconds=t, psnr=None))
        ref = coil_combine(ifft2c(k), maps["bart"])
        zf_psnr = score(ref, zero_filled(k, bm.mask, maps["bart"]))["psnr"]
        for backend in ("bart", "sigpy"):
            t, x = timed(
                lambda: l1_wavelet_recon(
                    k, bm.mask, maps["bart"], lamda=args.lamda, backend=backend,
                    max_iter=args.max_iter, device="cpu", threads=args.threads,
                ),
                args.repeats,
            )
            rows.append(dict(size=n, task=f"CS-L1 ({args.max_iter} it)", backend=backend, seconds=t,
                             psnr=score(ref, x)["psnr"], zero_filled_psnr=zf_psnr))

    header = "| size | coils | task | backend | median s | PSNR dB (zero-filled) |\n|---|---|---|---|---|---|"
    lines = [header]
    for r in rows:
        q = "-" if r["psnr"] is None else f"{r['psnr']:.2f} ({r['zero_filled_psnr']:.2f})"
        lines.append(f"| {r['size']}^2 | {args.coils} | {r['task']} | {r['backend']} | {r['seconds']:.3f} | {q} |")
    table = "\n".join(lines)
    print(table)
    meta = dict(
        args=vars(args), bart=bart_version(), sigpy=sp.__version__, numpy=np.__version__,
        cpu_count=os.cpu_count(), machine=platform.platform(), acceleration=args.acceleration,
        mask="vd_random (1D), fastMRI default centre", lamda=args.lamda,
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(dict(meta=meta, rows=rows, table=table), indent=2))


if __name__ == "__main__":
    main()
