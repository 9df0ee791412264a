"""Cross-fitted oracle (issue 13): how much of an oracle refinement's gain carries to slices
its judge never scored.

Two oracles refine the same start, one judged on the first half of the test block, one on the
second (``benchmarks/oracle_refinement.py --indices``); ``compare`` scores both on all test
slices. Here each slice is credited to the oracle that did *not* see it, and the result is
paired against a reference mask (the start) over all slices: the gain a judge could get from
slices of the same anatomy block that it does not reconstruct itself. The full-block oracle
(judged on every test slice) is reported beside it for the in-sample figure.

    python benchmarks/crossfit_report.py runs/s16/oracle_xfit/results.csv \
        --first oracle_first6 --second oracle_last6 --split-at 6 --reference start [--also oracle learned]

Paired differences use compare's statistics (percentile bootstrap CI over slices, Wilcoxon p;
:mod:`fastmri_diffmask.compare.report`), the worst slice beside the mean.
"""

import argparse
import csv
import json
import sys
from collections import defaultdict

import numpy as np

from fastmri_diffmask.compare.report import bootstrap_ci, wilcoxon_p


def read(path: str) -> dict:
    """``{(R, method, mask): {slice: (psnr, ssim)}}``, mean over seeds."""
    acc = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            key = (float(r["acceleration"]), r["method"], r["mask"])
            acc[key][int(r["slice"])].append((float(r["psnr"]), float(r["ssim"])))
    return {k: {s: tuple(np.mean(v, axis=0)) for s, v in d.items()} for k, d in acc.items()}


def paired(a: dict, b: dict, slices) -> dict:
    row = {"n": len(slices)}
    for j, metric in enumerate(("psnr", "ssim")):
        d = np.array([a[s][j] - b[s][j] for s in slices])
        lo, hi = bootstrap_ci(d)
        row[metric] = {"mean_diff": round(float(d.mean()), 4), "ci": [round(lo, 4), round(hi, 4)],
                       "worst_diff": round(float(d.min()), 4), "wilcoxon_p": round(wilcoxon_p(d), 5)}
    row["mean_psnr"] = round(float(np.mean([a[s][0] for s in slices])), 3)
    row["worst_psnr"] = round(float(min(a[s][0] for s in slices)), 3)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="compare's results.csv")
    ap.add_argument("--first", required=True, help="mask judged on slices [0, split-at)")
    ap.add_argument("--second", required=True, help="mask judged on slices [split-at, n)")
    ap.add_argument("--split-at", type=int, required=True)
    ap.add_argument("--reference", default="start")
    ap.add_argument("--also", nargs="*", default=[], help="other masks to pair against the reference on all slices")
    args = ap.parse_args()

    table = read(args.results)
    out = []
    for (R, method) in sorted({(k[0], k[1]) for k in table}):
        get = {m: table.get((R, method, m)) for m in [args.first, args.second, args.reference, *args.also]}
        missing = [m for m, v in get.items() if v is None]
        if missing:
            print(f"crossfit_report.py: error: no {', '.join(missing)} rows at R = {R:g}, {method} in {args.results}",
                  file=sys.stderr)
            sys.exit(2)
        slices = sorted(get[args.reference])
        crossed = {s: (get[args.second] if s < args.split_at else get[args.first])[s] for s in slices}
        rows = {"crossfit": paired(crossed, get[args.reference], slices),
                "crossfit_first_half_unseen_by_" + args.second: paired(crossed, get[args.reference],
                                                                        [s for s in slices if s < args.split_at]),
                "crossfit_second_half_unseen_by_" + args.first: paired(crossed, get[args.reference],
                                                                        [s for s in slices if s >= args.split_at])}
        for m in args.also:
            rows[m] = paired(get[m], get[args.reference], slices)
        out.append({"acceleration": R, "method": method, "reference": args.reference, **rows})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
