"""Which cheap judge ranks exact-budget line masks the way a full DPS reconstruction does?

    python benchmarks/judge_study.py --mask-file runs/p1_128/masks/learned_R4.safetensors \
        --out benchmarks/judge_study_R4.jsonl

Candidates: ``--draws`` stratified (or ``--independent``) exact-budget draws from each of four densities over the free
lines: the learned probabilities of ``--mask-file``, their 50/50 mix with a flat density, the flat
density, and the (1-r)^2 variable density. Judges, on the first ``--judge-slices`` validation
slices: DPS with 25 steps as it is (the learn-mask export selector of session 2), DPS 25 and 50
steps followed by the data-consistency step (dc 0.03), and DDS (``sample.dds``) with 25 and 50
steps (otherwise ``DDS_DEFAULTS``: churn 20, per-step dc 0.01, 5 CG iterations; tuned on validation). Truth:
DPS 100 steps + dc on the remaining validation slices (held apart from the judges). ESPIRiT (BART)
maps from the fixed centre. One JSON line per mask, appended (a rerun skips finished masks);
``--add-judges`` scores the masks of an existing --out with judges it lacks (the truth is reused).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="runs/data")
    p.add_argument("--mask-file", help="learned mask file whose density the candidates come from")
    p.add_argument("--draws", type=int, default=3)
    p.add_argument("--judge-slices", type=int, default=4)
    p.add_argument("--truth-steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--densities", nargs="+", default=["learned", "mix50", "flat", "vd2"])
    p.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    p.add_argument("--independent", action="store_true",
                   help="independent (Gumbel top-k) draws instead of stratified ones")
    p.add_argument("--add-judges", nargs="+", choices=["dds25", "dds50"],
                   help="add these judges' scores to the rows of --out instead of drawing new masks")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if a.table:
        return table(Path(a.out))
    if not a.mask_file:
        p.error("--mask-file is required (except with --table)")
    torch.set_num_threads(a.threads)
    from _val_cases import dds_psnr, line_mask_judging

    from fastmri_diffmask.masks.baselines import vd_density
    from fastmri_diffmask.masks.bernoulli import BernoulliMask, density_logits
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.physics import MultiCoilOperator, percentile_scale
    from fastmri_diffmask.sample.dps import data_consistency, dps_reconstruct

    mf, k, target, maps, prior, file_mask = line_mask_judging(a.data, a.mask_file)
    r, nlf, w = mf.acceleration, mf.num_low_frequencies, k.shape[-1]
    centre = file_mask.fixed.numpy().astype(np.float32)
    learned = np.asarray(mf.probabilities, np.float64)
    free = centre < 0.5
    flat = np.where(free, learned[free].mean(), 1.0)
    densities = {"learned": learned, "mix50": 0.5 * learned + 0.5 * flat, "flat": flat,
                 "vd2": vd_density((w,), 2.0)}
    out = Path(a.out)
    done = {json.loads(x)["label"] for x in out.read_text().splitlines()} if out.exists() else set()

    def dps(mask, idx, steps, dc):
        km = torch.from_numpy(mask).float().view(1, 1, 1, w)
        kk = torch.from_numpy(k[idx]) * km
        mm = torch.from_numpy(maps[idx])
        g = torch.Generator().manual_seed(0)
        rec = dps_reconstruct(prior, kk, km, mm, steps=steps, generator=g, progress=False)
        res = {"plain": rec}
        if dc:
            op = MultiCoilOperator(mm, km)
            scale = percentile_scale(op.adjoint(kk))
            with torch.no_grad():
                res["dc"] = data_consistency(op, kk / scale.unsqueeze(1), rec / scale, 0.03) * scale
        return {key: float(np.mean([score(target[i], v[j].abs().numpy())["psnr"] for j, i in enumerate(idx)]))
                for key, v in res.items()}

    def dds(mask, idx, steps):
        return dds_psnr(prior, k, target, maps, mask, idx, steps)

    judge = list(range(a.judge_slices))
    truth = list(range(a.judge_slices, len(k)))
    if a.add_judges:
        rows = [json.loads(x) for x in out.read_text().splitlines()]
        for row in rows:
            mask = np.zeros(w, np.float32)
            mask[row["mask"]] = 1
            for name in a.add_judges:
                if name not in row:
                    row[name] = dds(mask, judge, int(name[3:]))
            print(row["label"], {n: round(row[n], 3) for n in a.add_judges}, flush=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(out)
        return
    for name in a.densities:
        bm = BernoulliMask((w,), r, nlf, logits=density_logits(densities[name]))
        for d in range(a.draws):
            label = f"{name}{'-ind' if a.independent else ''}-{d}"
            if label in done:
                continue
            mask = bm.draw_exact(torch.Generator().manual_seed(d), stratified=not a.independent).numpy()
            j25 = dps(mask, judge, 25, True)
            j50 = dps(mask, judge, 50, True)
            t = dps(mask, truth, a.truth_steps, True)
            row = {"label": label, "density": name, "stratified": not a.independent, "acceleration": r, "lines": int(mask.sum()),
                   "j25": j25["plain"], "j25dc": j25["dc"], "j50dc": j50["dc"], "truth_dc": t["dc"],
                   "truth_plain": t["plain"], "mask": np.flatnonzero(mask).tolist()}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items() if k2 != "mask"}),
                  flush=True)


def table(path: Path) -> None:
    """Per candidate the judges and the truth; per judge its Spearman rank correlation with the
    truth and the truth of the candidate it would pick."""
    from scipy.stats import spearmanr

    rows = [json.loads(x) for x in path.read_text().splitlines()]
    names = {"j25": "DPS-25", "j25dc": "DPS-25+dc", "j50dc": "DPS-50+dc", "dds25": "DDS-25", "dds50": "DDS-50"}
    judges = [j for j in names if all(j in r for r in rows)]
    print("| candidate | draws | " + " | ".join(names[j] for j in judges) + " | truth: DPS-100+dc |")
    print("|---|---|" + "---|" * len(judges) + "---|")
    for r in rows:
        kind = "stratified" if r.get("stratified", True) else "independent"
        print(f"| {r['label']} | {kind} | " + " | ".join(f"{r[j]:.2f}" for j in judges) + f" | {r['truth_dc']:.2f} |")
    truth = [r["truth_dc"] for r in rows]
    print(f"\nbest truth: {max(truth):.2f} ({rows[int(np.argmax(truth))]['label']})")
    for j in judges:
        pick = rows[int(np.argmax([r[j] for r in rows]))]
        rho = spearmanr([r[j] for r in rows], truth).statistic
        pool = [r for r in rows if r["density"] in ("learned", "mix50") and r.get("stratified", True)]
        pool_pick = pool[int(np.argmax([r[j] for r in pool]))] if pool else None
        rho_pool = spearmanr([r[j] for r in pool], [r["truth_dc"] for r in pool]).statistic if len(pool) > 2 else float("nan")
        print(f"{j}: Spearman {rho:+.2f}; picks {pick['label']} (truth {pick['truth_dc']:.2f}); among the learn-mask "
              f"pool (learned + mix50, stratified) Spearman {rho_pool:+.2f}, picks "
              f"{pool_pick['label'] if pool_pick else '-'} (truth {pool_pick['truth_dc'] if pool_pick else float('nan'):.2f})")


if __name__ == "__main__":
    main()
