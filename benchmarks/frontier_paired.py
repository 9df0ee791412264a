"""Paired differences between the rows of ``benchmarks/frontier.py`` output files.

For each ``frontier_R*.json``: every row's PSNR minus a reference row's, slice by slice
(``psnr_per_slice``), with compare's percentile-bootstrap 95% CI and the worst slice's
difference (:mod:`fastmri_diffmask.compare.report`), and every row's seconds per slice as a
multiple of a timing reference's from the same run.

    python benchmarks/frontier_paired.py benchmarks/frontier_s17/frontier_R8.json \
        --reference DDS-50 --timing-reference "BART pics -l1"

Rows without ``psnr_per_slice`` or the reference (a timing-only repeat) still get the timing ratio.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fastmri_diffmask.compare.report import bootstrap_ci


def paired_rows(rows: list[dict], reference: str | None, timing_reference: str | None) -> list[dict]:
    """One dict per row: ``label``, ``dpsnr``, ``ci``, ``worst`` (vs ``reference``) and
    ``time_ratio`` (vs ``timing_reference``), each ``None`` where it does not apply."""
    by_label = {r["label"]: r for r in rows}
    for name in (reference, timing_reference):
        if name is not None and name not in by_label:
            raise SystemExit(f"frontier_paired: no row labelled {name!r}; the rows are {', '.join(by_label)}")
    ref = by_label.get(reference)
    out = []
    for r in rows:
        row = {"label": r["label"], "dpsnr": None, "ci": None, "worst": None, "time_ratio": None}
        if ref is not None and r is not ref:
            a, b = np.asarray(r["psnr_per_slice"]), np.asarray(ref["psnr_per_slice"])
            if a.shape != b.shape:
                raise SystemExit(f"frontier_paired: {r['label']!r} and {reference!r} cover different slices")
            d = a - b
            row.update(dpsnr=round(float(d.mean()), 3), ci=[round(v, 3) for v in bootstrap_ci(d)],
                       worst=round(float(d.min()), 3))
        if timing_reference is not None and r["label"] != timing_reference:
            row["time_ratio"] = round(r["seconds_per_slice"] / by_label[timing_reference]["seconds_per_slice"], 3)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", help="frontier_R*.json files written by benchmarks/frontier.py")
    ap.add_argument("--reference", help="label of the row PSNR is paired against (e.g. DDS-50)")
    ap.add_argument("--timing-reference", help="label of the row seconds are divided by (e.g. 'BART pics -l1')")
    a = ap.parse_args()
    for f in a.files:
        path = Path(f)
        if not path.is_file():
            sys.exit(f"frontier_paired: {path} does not exist; give a frontier_R*.json from benchmarks/frontier.py")
        rows = json.loads(path.read_text())["rows"]
        print(f"\n{path}\n| row | minus {a.reference or '-'} [95% CI] | worst slice | x {a.timing_reference or '-'}'s time |"
              "\n|---|---|---|---|")
        for r in paired_rows(rows, a.reference, a.timing_reference):
            diff = "" if r["dpsnr"] is None else f"{r['dpsnr']:+.2f} [{r['ci'][0]:+.2f}, {r['ci'][1]:+.2f}]"
            worst = "" if r["worst"] is None else f"{r['worst']:+.2f}"
            ratio = "" if r["time_ratio"] is None else f"{r['time_ratio']:.2f}x"
            print(f"| {r['label']} | {diff} | {worst} | {ratio} |")


if __name__ == "__main__":
    main()
