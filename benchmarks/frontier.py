"""Quality vs seconds on the TEST slices: DPS (from noise and warm-started), DDS, warm-started fast DDS, BART pics -l1 and zero-filled.

    python benchmarks/frontier.py --prior default --accelerations 4 8

Report only (settings were chosen on validation: ``tune_dps.py``, ``tune_dds.py``,
``tune_fast_dds.py``, ``tune_bart_val.jsonl``). The study's fixed equispaced_fraction line mask
(seed 0, centres of 16 lines at R <= 4 and 10 above), ESPIRiT (BART) maps from the undersampled
centre, ``--threads`` torch threads (BART gets ``OMP_NUM_THREADS``), DDS/DPS in batches of
``--batch``; before the first timed row of each method, warm start and network precision, an
untimed 2-step run of one slice (its set-up would otherwise be timed: session 17). Seconds are wall time per slice of the whole reconstruction
(the warm start's estimate included; maps excluded, they are the same for every method).

DPS is slow, so it runs on the first ``--dps-slices`` slices only; every row also carries its
mean PSNR on that subset (``psnr_dps_subset``) so DPS compares pairwise. Fast DDS settings are
``init:sigma_start:steps:eta:cg_iters[:precision[:sigma_min]]`` (``eta`` ``none`` = the deterministic step;
churn 0 unless ``eta`` is ``none``, then DDS's churn 20; ``precision`` float32 (default) or bfloat16, the
network's arithmetic, ``recon --precision``; ``sigma_min`` the schedule's end, ``auto`` (default since
session 16, by the acceleration) or a number, 0.002 = the sampler before). DDS-N from noise ends at
EDM's 0.002, as it always did. Writes ``frontier_R{R}.json`` per acceleration and
``frontier.png`` (PSNR vs s/slice, log x) into ``--out-dir``. About 10 min on 1 idle core with the
defaults; subset with ``--methods``, ``--dps-steps``, ``--dds-steps``, ``--fast``, ``--num-slices``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

#: Warm-started DDS settings shown by default: the validation choice (first), the validation runner-up
#: with 15 CG iterations, and variants (BENCHMARKS.md, issue 14).
FAST_DEFAULT = ["sense:0.5:8:1:5", "sense:0.5:8:1:15", "sense:1:8:1:15", "zero-filled:1:8:1:5", "sense:1:8:none:5",
                "sense:0.5:15:1:5"]
#: DPS from pure noise at its validated setting (BENCHMARKS.md, issue 3 and session 4): churn 40, final DC 0.03.
DPS_SETTING = {"churn": 40.0, "dc_weight": 0.03, "dc_every": 0, "init": "noise"}
WARM_DPS = {"churn": 40.0, "dc_weight": 0.03, "init": "sense", "sigma_start": 0.5}  # session 8's default; + --warm-dps-dc-every


def parse_fast(spec: str) -> dict:
    """``init:sigma_start:steps:eta:cg_iters[:precision[:sigma_min]]`` -> ReconSettings keywords for DDS (+ precision)."""
    parts = spec.split(":")
    if len(parts) not in (5, 6, 7) or (len(parts) >= 6 and parts[5] not in ("float32", "bfloat16")):
        raise SystemExit(f"--fast {spec!r}: want init:sigma_start:steps:eta:cg_iters[:float32|bfloat16[:sigma_min]], "
                         "e.g. zero-filled:1:8:1:5 or sense:0.5:10:1:5:bfloat16:0.002")
    init, sigma, steps, eta, cg = parts[:5]
    eta_v = 0.0 if eta.lower() == "none" else float(eta)  # 0: the deterministic step
    end = parts[6] if len(parts) == 7 else "auto"
    return {"init": init, "sigma_start": float(sigma), "steps": int(steps), "eta": eta_v, "cg_iters": int(cg),
            "churn": 20.0 if eta_v == 0 else 0.0, "precision": parts[5] if len(parts) >= 6 else "float32",
            "sigma_min": end if end == "auto" else float(end)}


def plan(a) -> list[tuple[str, str, dict, int]]:
    """``(label, method, settings, slices)`` for every row, in run order."""
    n, rows = a.num_slices, []
    want = set(a.methods)
    if "zero-filled" in want:
        rows.append(("zero-filled", "zero-filled", {}, n))
    if "bart-l1" in want:
        rows.append(("BART pics -l1", "bart-l1", {}, n))
    if "fast" in want:
        rows += [(f"fast DDS {s}", "dds", parse_fast(s), n) for s in a.fast]
    if "dds" in want:
        rows += [(f"DDS-{s}", "dds", {"steps": s, "init": "noise", "churn": 20.0, "eta": 0.0, "sigma_min": 0.002}, n)
                 for s in a.dds_steps]
    if "dps" in want:
        rows += [(f"DPS-{s}", "dps", {"steps": s, **DPS_SETTING}, min(n, a.dps_slices)) for s in a.dps_steps]
    if "warm-dps" in want:  # DPS with its defaults (SENSE start at sigma 0.5, churn 40, DC 0.03)
        every = a.warm_dps_dc_every
        rows += [(f"warm DPS-{s}" + (f" DC/{every}" if every else ""), "dps", {"steps": s, **WARM_DPS, "dc_every": every},
                  min(n, a.dps_slices)) for s in a.warm_dps_steps]
    return rows


def run_case(a, r: float, prior, data) -> dict:
    from fastmri_diffmask.masks.select import make_mask
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices, sens_maps_for

    k, target = data.kspace.numpy(), data.target.numpy()
    nlf = 16 if r <= 4 else 10
    m = make_mask(a.mask_type, k.shape[-2:], r, nlf, seed=0)
    maps = np.stack([sens_maps_for(k[i] * m.mask, None, nlf, "espirit-bart") for i in range(len(k))])
    sub = min(len(k), a.dps_slices)
    warmed = set()
    rows = []
    for label, method, kw, n in plan(a):
        key = (method, kw.get("init"), kw.get("precision", "float32"))
        if key not in warmed:  # warm-up: the first timed row of a kind otherwise pays its set-up
            warmed.add(key)    # (session 17: a 10-step bfloat16 sampler 0.41 s/slice first, 0.26 second)
            prior.precision = kw.get("precision", "float32")
            short = {k_: v for k_, v in kw.items() if k_ != "precision"}
            if "steps" in short:
                short["steps"] = 2
            reconstruct_slices(k[:1], m.mask, maps[:1], m.acceleration,
                               ReconSettings(method=method, batch=1, prior=prior, device="cpu", seed=0, **short))
        prior.precision = kw.get("precision", "float32")
        s = ReconSettings(method=method, batch=a.batch, prior=prior, device="cpu", seed=0,
                          **{k_: v for k_, v in kw.items() if k_ != "precision"})
        t0 = time.perf_counter()
        rec = reconstruct_slices(k[:n], m.mask, maps[:n], m.acceleration, s)
        sec = (time.perf_counter() - t0) / n
        sc = [score(target[i], rec[i]) for i in range(n)]
        psnr = [x["psnr"] for x in sc]
        row = {"label": label, "method": method, **kw, "slices": n, "seconds_per_slice": round(sec, 3),
               "psnr": round(float(np.mean(psnr)), 3), "ssim": round(float(np.mean([x["ssim"] for x in sc])), 4),
               "psnr_dps_subset": round(float(np.mean(psnr[:sub])), 3), "psnr_per_slice": [round(p, 3) for p in psnr]}
        rows.append(row)
        print(json.dumps({k_: v for k_, v in row.items() if k_ != "psnr_per_slice"}), flush=True)
    return {"settings": {"acceleration": m.acceleration, "mask_type": a.mask_type, "num_low_frequencies": nlf,
                         "split": a.split, "slices": len(k), "dps_slices": sub, "threads": a.threads,
                         "batch": a.batch, "prior": a.prior, "prior_sha256": prior.sha256[:12], "note": a.note,
                         "dps": DPS_SETTING},
            "rows": rows}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
    styles = {"dps": ("o-", "DPS from noise (churn 40, DC 0.03)"), "warm": ("D-", "warm DPS (SENSE, sigma 0.5)"), "dds": ("^-", "DDS from noise"), "fast": ("*", "fast warm-started DDS"),
              "fast16": ("P", "fast DDS, bfloat16 network"),
              "bart-l1": ("s", "BART pics -l1"), "zero-filled": ("x", "zero-filled")}
    for ax, (r, res) in zip(axes[0], sorted(results.items())):
        rows = res["rows"]
        groups = {"dps": [x for x in rows if x["method"] == "dps" and x.get("init") == "noise"],
                  "warm": [x for x in rows if x["method"] == "dps" and x.get("init") == "sense"],
                  "dds": [x for x in rows if x["method"] == "dds" and x.get("init", "noise") == "noise"],
                  "fast": [x for x in rows if x["method"] == "dds" and x.get("init", "noise") != "noise"
                           and x.get("precision", "float32") == "float32"],
                  "fast16": [x for x in rows if x["method"] == "dds" and x.get("precision") == "bfloat16"],
                  "bart-l1": [x for x in rows if x["method"] == "bart-l1"],
                  "zero-filled": [x for x in rows if x["method"] == "zero-filled"]}
        for key, d in groups.items():
            if not d:
                continue
            marker, name = styles[key]
            ax.plot([x["seconds_per_slice"] for x in d], [x["psnr"] for x in d], marker, label=name, ms=8 if key.startswith("fast") else 6)
            for x in d:
                if "steps" in x:
                    end = x.get("sigma_min")  # fast rows with an explicit schedule end say so
                    text = str(x["steps"]) + (f", end {end:g}" if key.startswith("fast") and end not in (None, "auto") else "")
                    ax.annotate(text, (x["seconds_per_slice"], x["psnr"]), fontsize=7,
                                xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(f"seconds per slice ({res['settings']['threads']} thread)")
        ax.set_ylabel("PSNR dB")
        has_dps = any(x["method"] in ("dps", "warm-dps") for x in rows)
        ax.set_title(f"R = {r:g}, test slices" + (f" (DPS: first {res['settings']['dps_slices']})" if has_dps else ""),
                     fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="runs/data")
    p.add_argument("--split", default="test")
    p.add_argument("--num-slices", type=int, default=12)
    p.add_argument("--dps-slices", type=int, default=4, help="DPS runs on the first this many slices only")
    p.add_argument("--accelerations", type=float, nargs="+", default=[4, 8])
    p.add_argument("--mask-type", default="equispaced_fraction")
    p.add_argument("--prior", default="default", help="prior weights (default: the shipped prior)")
    p.add_argument("--methods", nargs="+", default=["zero-filled", "bart-l1", "fast", "dds", "dps", "warm-dps"],
                   choices=["zero-filled", "bart-l1", "fast", "dds", "dps", "warm-dps"])
    p.add_argument("--warm-dps-steps", type=int, nargs="*", default=[25, 50, 100])
    p.add_argument("--warm-dps-dc-every", type=int, default=0,
                   help="warm DPS: data consistency every this many steps (0: final step only, session 8; 5: the default since session 9)")
    p.add_argument("--dps-steps", type=int, nargs="*", default=[25, 50, 100])
    p.add_argument("--dds-steps", type=int, nargs="*", default=[10, 25, 50])
    p.add_argument("--fast", nargs="*", default=FAST_DEFAULT, help="init:sigma_start:steps:eta:cg_iters[:precision]")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--note", default="", help="what else ran on the machine (stored in the JSON)")
    p.add_argument("--out-dir", default="benchmarks")
    a = p.parse_args()
    if a.warm_dps_dc_every < 0:
        p.error(f"--warm-dps-dc-every must be >= 0 (0: final step only), got {a.warm_dps_dc_every}")
    for spec in a.fast:
        parse_fast(spec)  # a bad spec fails before any work
    torch.set_num_threads(a.threads)
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.prior.weights import load_prior

    data = load_slices(a.data, a.split, num_slices=a.num_slices, sens_backend="none")
    a.num_slices = len(data.kspace)
    prior = load_prior(a.prior, device="cpu")
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for r in a.accelerations:
        results[r] = run_case(a, r, prior, data)
        (out / f"frontier_R{r:g}.json").write_text(json.dumps(results[r], indent=1))
    plot(results, out / "frontier.png")
    for r, res in sorted(results.items()):
        print(f"\nR = {r:g}\n| method | slices | s/slice | PSNR | SSIM | PSNR on DPS slices |\n|---|---|---|---|---|---|")
        for x in res["rows"]:
            print(f"| {x['label']} | {x['slices']} | {x['seconds_per_slice']} | {x['psnr']} | {x['ssim']} | {x['psnr_dps_subset']} |")


if __name__ == "__main__":
    main()
