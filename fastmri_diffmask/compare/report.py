"""Merge finished cells into results.csv, a markdown summary with paired statistics, and figures.

Paired differences are per slice against the reference (learned) mask, with random masks first
averaged over their seeds per slice: mean, a 95% percentile bootstrap CI over slices (Efron &
Tibshirani 1993) and the two-sided Wilcoxon signed-rank p-value (scipy).

Next to each mean the summary gives the worst slice (:func:`fastmri_diffmask.metrics.worst_slice`
over every reconstructed slice of the cell group, seeds included: min PSNR, min SSIM, max
``bg_error``) and the mean and max ``bg_error``, the error energy outside the object
(:mod:`fastmri_diffmask.metrics`), so that one bad or hallucinating slice cannot hide in a mean.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..utils import atomic_path

METRICS = ("psnr", "ssim")


def read_cells(out: Path) -> list[dict]:
    rows = []
    for path in sorted((out / "cells").glob("*.json")):
        rows.extend(json.loads(path.read_text())["rows"])
    return rows


def bootstrap_ci(diff: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    if len(diff) < 2:
        return float("nan"), float("nan")
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def wilcoxon_p(diff: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    if len(diff) < 2 or np.allclose(diff, 0):
        return float("nan")
    return float(wilcoxon(diff).pvalue)


def per_slice(rows: list[dict], metric: str) -> dict:
    """{(R, method, mask): {(fname, slice): mean over seeds}}."""
    acc = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[(r["acceleration"], r["method"], r["mask"])][(r["fname"], r["slice"])].append(r[metric])
    return {k: {s: float(np.mean(v)) for s, v in d.items()} for k, d in acc.items()}


def paired_table(rows: list[dict], reference: str) -> list[dict]:
    out = []
    for metric in METRICS:
        table = per_slice(rows, metric)
        for (r, method, mask), vals in sorted(table.items()):
            ref = table.get((r, method, reference))
            if mask == reference or ref is None:
                continue
            keys = sorted(set(vals) & set(ref))
            diff = np.array([ref[k] - vals[k] for k in keys])
            lo, hi = bootstrap_ci(diff)
            out.append({"acceleration": r, "method": method, "metric": metric, "versus": mask, "n": len(keys),
                        "mean_diff": float(diff.mean()) if len(diff) else float("nan"), "ci_low": lo, "ci_high": hi,
                        "wilcoxon_p": wilcoxon_p(diff)})
    return out


def mean_table(rows: list[dict]) -> dict:
    """{(R, mask, method): means of psnr, ssim, bg_error, seconds, achieved_acceleration and the
    worst slices psnr_min, ssim_min, bg_error_max}; ``bg_error`` is NaN for cells scored before it
    existed."""
    from ..metrics import worst_slice

    acc = defaultdict(list)
    for r in rows:
        acc[(r["acceleration"], r["mask"], r["method"])].append(r)
    out = {}
    for k, v in acc.items():
        d = {m: float(np.mean([x[m] for x in v])) for m in ("psnr", "ssim", "seconds", "achieved_acceleration")}
        has_bg = all("bg_error" in x for x in v)
        d["bg_error"] = float(np.mean([x["bg_error"] for x in v])) if has_bg else float("nan")
        w = worst_slice(v, ["psnr", "ssim"] + (["bg_error"] if has_bg else []))
        d.update(psnr_min=w["psnr"], ssim_min=w["ssim"], bg_error_max=w.get("bg_error", float("nan")))
        out[k] = d
    return out


def _num(v: float, fmt: str) -> str:
    return "-" if not np.isfinite(v) else format(v, fmt)


def summary_markdown(rows: list[dict], reference: str) -> str:
    means = mean_table(rows)
    methods = sorted({k[2] for k in means})
    lines = ["# Comparison summary\n", f"{len({(r['fname'], r['slice']) for r in rows})} slices; "
             f"PSNR dB / SSIM (fastMRI definitions, data_range = target max); paired differences are "
             f"`{reference}` minus the other mask (positive = {reference} better).\n"]
    for r in sorted({k[0] for k in means}):
        lines.append(f"\n## R = {r:g}\n")
        lines.append("| mask | achieved R | " + " | ".join(methods) + " |")
        lines.append("|---|---|" + "---|" * len(methods))
        for mask in sorted({k[1] for k in means if k[0] == r}, key=lambda m: (m != reference, m)):
            cells = []
            for meth in methods:
                v = means.get((r, mask, meth))
                cells.append(f"{v['psnr']:.2f} / {v['ssim']:.3f}" if v else "-")
            ach = next(v["achieved_acceleration"] for k, v in means.items() if k[0] == r and k[1] == mask)
            lines.append(f"| {mask} | {ach:.2f} | " + " | ".join(cells) + " |")
        lines.append("\nWorst slice and background error: min PSNR / min SSIM / mean bg_error (max bg_error); "
                     "bg_error = error energy outside the object over the target's energy.\n")
        lines.append("| mask | " + " | ".join(methods) + " |")
        lines.append("|---|" + "---|" * len(methods))
        for mask in sorted({k[1] for k in means if k[0] == r}, key=lambda m: (m != reference, m)):
            cells = []
            for meth in methods:
                v = means.get((r, mask, meth))
                cells.append(f"{v['psnr_min']:.2f} / {v['ssim_min']:.3f} / {_num(v['bg_error'], '.4f')} "
                             f"(max {_num(v['bg_error_max'], '.4f')})" if v else "-")
            lines.append(f"| {mask} | " + " | ".join(cells) + " |")
    pt = paired_table(rows, reference)
    if pt:
        lines.append(f"\n## Paired differences ({reference} minus other)\n")
        lines.append("| R | method | metric | versus | n | mean | 95% CI | Wilcoxon p |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for p in pt:
            fmt = ".2f" if p["metric"] == "psnr" else ".4f"
            lines.append(f"| {p['acceleration']:g} | {p['method']} | {p['metric']} | {p['versus']} | {p['n']} | "
                         f"{p['mean_diff']:+{fmt}} | [{p['ci_low']:+{fmt}}, {p['ci_high']:+{fmt}}] | {p['wilcoxon_p']:.3g} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, reference: str, target_images: np.ndarray | None = None) -> dict:
    """Write results.csv, summary.md, paired.json and figures from the cells in ``out``."""
    rows = read_cells(out)
    if not rows:
        return {}
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    md = summary_markdown(rows, reference)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(md)
    with atomic_path(out / "paired.json") as tmp:
        tmp.write_text(json.dumps(paired_table(rows, reference), indent=1))
    from .figures import plot_all

    plot_all(out, rows, reference, target_images)
    return {"rows": len(rows), "summary": md}
