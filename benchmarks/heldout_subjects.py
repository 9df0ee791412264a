"""Held-out subjects (issue 14): DDS and DPS against BART on real brains the prior never saw.

For each set that ``scripts/make_heldout_data.sh`` writes (``DATA/<set>/test``), at each R with
fastMRI's ``equispaced_fraction`` line mask (16 centre lines at R = 4, 10 at R = 8, as the other
study configs), ESPIRiT maps (BART) from the undersampled centre, it runs ``compare`` cells for

* ``bart-l1``: BART ``pics -l1`` with its validated lambda (``recon.run.default_lamda``),
* ``dds``: DDS with its defaults, ``dps``: DPS with its defaults,
* ``dps-dc1``: DPS with ``dc_every: 1`` (data consistency on every step), an extra column,
* ``zero-filled``, for the figures,

and reports per (set, R, method) the mean PSNR / SSIM / ``bg_error`` (metrics.py), the paired
difference against BART per slice (method minus BART) with a 95% percentile bootstrap CI over
slices (``compare.report.bootstrap_ci``), the worst slice's PSNR difference, and whether the issue's
bar holds (mean PSNR and SSIM differences >= 0 and no slice more than 1 dB below BART). Figures:
``OUT/figures/<set>_R<R>.png``, reconstructions over error maps ``|recon - target|`` on one colour
scale per slice (``compare.figures.error_map_grid``), for the first slice and the slice where a
diffusion method falls furthest below BART.

    scripts/make_heldout_data.sh
    python benchmarks/heldout_subjects.py --prior default            # or --prior PATH.safetensors

The prior is a parameter: ``OUT`` defaults to ``runs/heldout_compare/<first 12 hex of the prior
file's sha256>``, so the cells of one prior are never reused for another (cells resume within one
prior). Results: ``OUT/summary.md``, ``OUT/summary.json``; each set's compare output in
``OUT/<set>/{main,dps_dc1}``. Run single-threaded (``OMP_NUM_THREADS=1``); ``--num-slices``
(default 6 per set, evenly spaced) bounds the time: about 34 s per slice and R for the five
columns on one core (DPS 11 s, DPS dc_every=1 18 s, DDS 5 s, BART 0.5 s), so 3 sets x 2 R x 6
slices take about 20 min; ``--num-slices 8`` about 27 min, ``--no-dps-dc1`` saves half.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from fastmri_diffmask.compare.config import parse_config
from fastmri_diffmask.compare.engine import run_study
from fastmri_diffmask.compare.figures import error_map_grid
from fastmri_diffmask.compare.report import bootstrap_ci, read_cells
from fastmri_diffmask.utils import atomic_path, file_sha256

SETS = ("dipy_t1_coronal", "dipy_b0_axial", "nibabel_epi_axial")
BASELINE = "bart-l1"
#: Column order of the tables and figures.
METHODS = ("zero-filled", BASELINE, "dds", "dps", "dps-dc1")
DIFFUSION = ("dds", "dps", "dps-dc1")
#: The issue's bar: no slice more than this many dB below BART.
WORST_MARGIN_DB = 1.0


def prior_file(prior: str) -> Path:
    from fastmri_diffmask.prior.weights import default_prior_path

    path = default_prior_path() if prior == "default" else Path(prior)
    if not path.is_file():
        sys.exit(f"error: prior {prior!r} is not 'default' and no such file")
    return path


def study(data: Path, prior: str, num_slices: int, accels: list[float], methods: list) -> object:
    return parse_config({
        "data": str(data), "split": "test", "num_slices": num_slices, "prior": prior, "kind": "line",
        "accelerations": accels, "num_low_frequencies": {4: 16, 8: 10}, "sens_maps": "espirit-bart",
        "masks": [{"name": "equispaced", "type": "equispaced_fraction"}], "methods": methods,
        "reference": "equispaced", "seed": 0})


def run_set(name: str, data: Path, out: Path, prior: str, num_slices: int, accels: list[float], device: str,
            dps_dc1: bool) -> list[dict]:
    """Run (or resume) the cells of one set; its rows with ``method`` dps-dc1 for the extra run."""
    runs = [("main", ["zero-filled", BASELINE, "dds", "dps"])]
    if dps_dc1:
        runs.append(("dps_dc1", [{"name": "dps", "dc_every": 1}]))
    rows = []
    for sub, methods in runs:
        cfg = study(data, prior, num_slices, accels, methods)
        run_study(cfg, out / sub, device=device, progress=True, figure_slices=num_slices)
        for r in read_cells(out / sub):
            r = dict(r, method="dps-dc1" if sub == "dps_dc1" else r["method"], set=name)
            rows.append(r)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """One entry per (set, R, method): means, worst slices and the paired differences vs BART."""
    out = []
    keyed = {}
    for r in rows:
        keyed.setdefault((r["set"], r["acceleration"], r["method"]), {})[(r["fname"], r["slice"])] = r
    for (name, accel, method), per in sorted(keyed.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                            METHODS.index(kv[0][2]))):
        base = keyed.get((name, accel, BASELINE), {})
        keys = sorted(per)
        entry = {"set": name, "acceleration": accel, "method": method, "n": len(keys),
                 **{m: float(np.mean([per[k][m] for k in keys])) for m in ("psnr", "ssim", "bg_error", "seconds")},
                 "psnr_min": float(min(per[k]["psnr"] for k in keys)),
                 "bg_error_max": float(max(per[k]["bg_error"] for k in keys))}
        common = [k for k in keys if k in base]
        if method != BASELINE and common:
            for m in ("psnr", "ssim", "bg_error"):
                d = np.array([per[k][m] - base[k][m] for k in common])
                lo, hi = bootstrap_ci(d)
                entry[f"d_{m}"], entry[f"d_{m}_ci"] = float(d.mean()), [lo, hi]
            d = np.array([per[k]["psnr"] - base[k]["psnr"] for k in common])
            worst = int(np.argmin(d))
            entry.update(worst_d_psnr=float(d[worst]), worst_slice=list(common[worst]),
                         slices_below_1db=int((d < -WORST_MARGIN_DB).sum()),
                         meets_bar=bool(entry["d_psnr"] >= 0 and entry["d_ssim"] >= 0
                                        and d.min() >= -WORST_MARGIN_DB))
        out.append(entry)
    return out


def markdown(summary: list[dict], header: str) -> str:
    lines = [header, "",
             "| set | R | method | PSNR dB | SSIM | bg_error | minus BART: dPSNR [95% CI] | dSSIM [95% CI] "
             "| worst slice dPSNR | slices < -1 dB | bar met | s/slice |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in summary:
        if "d_psnr" in e:
            diff = (f"{e['d_psnr']:+.2f} [{e['d_psnr_ci'][0]:+.2f}, {e['d_psnr_ci'][1]:+.2f}] | "
                    f"{e['d_ssim']:+.4f} [{e['d_ssim_ci'][0]:+.4f}, {e['d_ssim_ci'][1]:+.4f}] | "
                    f"{e['worst_d_psnr']:+.2f} | {e['slices_below_1db']}/{e['n']} | "
                    f"{'yes' if e['meets_bar'] else 'no'}")
        else:
            diff = "- | - | - | - | -"
        lines.append(f"| {e['set']} | {e['acceleration']:g} | {e['method']} | {e['psnr']:.2f} | {e['ssim']:.3f} | "
                     f"{e['bg_error']:.4f} | {diff} | {e['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def figures(name: str, data: Path, out: Path, rows: list[dict], num_slices: int, accels: list[float]) -> list[Path]:
    """Per R: the first slice and the slice where a diffusion method is furthest below BART."""
    from fastmri_diffmask.dataset import load_slices

    d = load_slices(data, "test", num_slices=num_slices, sens_backend="none", size="most-common", notes=False)
    targets = d.target.numpy()
    order = list(zip(d.fnames, [int(s) for s in d.slice_nums]))
    paths = []
    for accel in accels:
        psnr = {(r["method"], r["fname"], int(r["slice"])): r["psnr"] for r in rows if r["acceleration"] == accel}
        gaps = [min(psnr.get((m, f, s), np.inf) - psnr.get((BASELINE, f, s), 0.0) for m in DIFFUSION) for f, s in order]
        picks = [0] + ([int(np.argmin(gaps))] if int(np.argmin(gaps)) != 0 else [])
        blocks = []
        for i in picks:
            recons, titles = {}, {}
            for method in METHODS:
                sub, meth = ("dps_dc1", "dps") if method == "dps-dc1" else ("main", method)
                npz = out / sub / "cells" / f"R{accel:g}_equispaced_s0_{meth}.npz"
                if not npz.is_file():
                    continue
                recons[method] = np.load(npz)["recon"][i].astype(np.float32)
                p = psnr.get((method, *order[i]))
                titles[method] = method + (f"\n{p:.2f} dB" if p is not None else "")
            label = f"{order[i][0]} s{order[i][1]}" + (" (worst vs BART)" if i != 0 else "")
            blocks.append({"target": targets[i], "recons": recons, "titles": titles, "label": label})
        path = out.parent / "figures" / f"{name}_R{accel:g}.png"
        error_map_grid(blocks, list(METHODS), f"{name}, R = {accel:g}, equispaced_fraction", path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prior", default="default", help="'default' (shipped) or a prior file (.safetensors / .pt)")
    ap.add_argument("--data", default="runs/heldout", help="folder of the sets (scripts/make_heldout_data.sh)")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--num-slices", type=int, default=6, help="slices per set, evenly spaced (default 6)")
    ap.add_argument("--accelerations", type=float, nargs="+", default=[4.0, 8.0])
    ap.add_argument("--no-dps-dc1", action="store_true", help="skip the extra DPS dc_every=1 column")
    ap.add_argument("--out", help="default runs/heldout_compare/<prior sha256[:12]>")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    pfile = prior_file(args.prior)
    sha = file_sha256(pfile)
    out = Path(args.out or f"runs/heldout_compare/{sha[:12]}")
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / "prior.json"
    if stamp.is_file() and json.loads(stamp.read_text())["sha256"] != sha:
        sys.exit(f"error: {out} holds cells of another prior ({stamp}); use another --out")
    stamp.write_text(json.dumps({"prior": args.prior, "file": str(pfile), "sha256": sha}, indent=1))
    missing = [s for s in args.sets if not (Path(args.data) / s / "test").is_dir()]
    if missing:
        sys.exit(f"error: no {', '.join(missing)} in {args.data}; run scripts/make_heldout_data.sh first")
    rows, walls, figs = [], {}, []
    t_all = time.time()
    for name in args.sets:
        t0 = time.time()
        data = Path(args.data) / name
        set_rows = run_set(name, data, out / name, args.prior, args.num_slices, args.accelerations, args.device,
                           not args.no_dps_dc1)
        walls[name] = round(time.time() - t0, 1)
        figs += figures(name, data, out / name, set_rows, args.num_slices, args.accelerations)
        rows += set_rows
        print(f"{name}: {walls[name]:.0f} s wall", flush=True)
    summary = summarise(rows)
    command = "python benchmarks/heldout_subjects.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    header = (f"# Held-out subjects (issue 14)\n\nprior `{args.prior}` ({pfile.name}, sha256 {sha[:12]}); "
              f"{args.num_slices} slices per set; equispaced_fraction, 16 / 10 centre lines at R = 4 / 8; "
              f"differences are method minus BART per slice (positive = better than BART, except bg_error: "
              f"lower is better).\n\n`{command}`")
    md = markdown(summary, header)
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(md + "\nFigures: " + ", ".join(str(p) for p in figs) + "\n")
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps({"command": command, "prior": json.loads(stamp.read_text()),
                                   "wall_seconds": walls, "total_wall_seconds": round(time.time() - t_all, 1),
                                   "summary": summary}, indent=1))
    print(md)
    print(f"wrote {out / 'summary.md'}, {out / 'summary.json'}, figures in {out / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
