"""Seconds per ``A^H A`` and per data-consistency CG solve, centred FFT vs the shift-free layout.

    python benchmarks/bench_cg.py --batch 12 --coils 8 --size 128 --threads 2 --out benchmarks/bench_cg.json

``A^H A`` with fastMRI's centred FFT (four full-array shifts) against the same operator on
``ifftshift``-ed arrays (:meth:`~fastmri_diffmask.physics.MultiCoilOperator.uncentred`), and one
:func:`~fastmri_diffmask.sample.schedule.data_consistency` solve (``--iters`` CG iterations), on a
random line mask keeping 30% of the columns. Median of ``--repeats`` after two warm-ups, same
process; ``max_rel_diff`` is the largest ``|centred - shifted| / max|centred|`` of ``A^H A``.
``normal_two_pass_s`` is the shift-free ``A^H A`` written as before session 13 (the mask applied
twice, the coils combined through the lazy ``conj()`` view) against ``normal_shifted_s``, today's
``normal`` (mask squared once, conjugate maps materialised once).
"""

from __future__ import annotations

import argparse
import json

import torch
from _timing import median_seconds

from fastmri_diffmask.physics import MultiCoilOperator, combine_coils, fft2, ifft2, reshift, unshift
from fastmri_diffmask.sample.schedule import data_consistency


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--coils", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None, help="JSON file for the row (default: print only)")
    a = ap.parse_args()
    for name in ("batch", "coils", "size", "iters", "threads", "repeats"):
        if getattr(a, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    shape = (a.batch, a.coils, a.size, a.size)
    maps = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    mask = (torch.rand(a.batch, 1, 1, a.size, generator=g) < 0.3).float()
    op = MultiCoilOperator(maps, mask)
    shifted = op.uncentred()
    x = torch.complex(torch.randn(shape[:1] + shape[2:], generator=g), torch.randn(shape[:1] + shape[2:], generator=g))
    y = op.forward(x)
    xs = unshift(x)
    centred_out, shifted_out = op.normal(x), reshift(shifted.normal(xs))
    s_maps, s_mask = shifted.sens_maps, shifted.mask
    two_pass = lambda: combine_coils(ifft2(fft2(s_maps * xs.unsqueeze(-3)) * s_mask * s_mask), s_maps)  # noqa: E731
    row = {
        "batch": a.batch, "coils": a.coils, "size": a.size, "threads": a.threads, "cg_iters": a.iters,
        "normal_centred_s": median_seconds(lambda: op.normal(x), a.repeats),
        "normal_shifted_s": median_seconds(lambda: shifted.normal(xs), a.repeats),
        "normal_two_pass_s": median_seconds(two_pass, a.repeats),
        "data_consistency_s": median_seconds(lambda: data_consistency(op, y, x, 0.05, a.iters), a.repeats),
        "max_rel_diff": float((centred_out - shifted_out).abs().max() / centred_out.abs().max()),
        "max_rel_diff_two_pass": float((two_pass() - shifted.normal(xs)).abs().max() / centred_out.abs().max()),
    }
    print(json.dumps(row))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(row, f, indent=1)


if __name__ == "__main__":
    main()
