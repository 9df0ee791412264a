"""Which exact-budget candidates should learn-mask's judge choose among? Systematic offsets vs
stratified draws of a learned density (validation split only).

    python benchmarks/sampling_study.py --mask-file runs/p1_128/masks/learned_R8.safetensors \
        --densities learned --offsets $(python -c "print(*[(i + .5) / 16 for i in range(16)])") \
        --draws 4 --out benchmarks/sampling_study_R8.jsonl
    python benchmarks/sampling_study.py --out benchmarks/sampling_study_R8.jsonl --table
    # only the file's own mask (e.g. an earlier export), scored the same way:
    python benchmarks/sampling_study.py --mask-file OLD.safetensors --offsets --draws 0 --out old.jsonl

Candidates, from the learned density of ``--mask-file`` (its logits) and from its 50/50 mix with a
flat density (``flattened(0.5)``: the two families learn-mask draws from, ``--export-flatten 0,0.5``):
``BernoulliMask.systematic`` at each of ``--offsets`` and ``--draws`` stratified draws (seeds
0..N-1); plus the file's own exported mask. Each is scored by the learn-mask judge (DDS, 25
steps, on validation slices 0..``--judge-slices``-1) and by a held-apart check: DDS with 50
steps (which beats DPS-100 + DC on the test slices, BENCHMARKS.md) on the remaining validation
slices. ESPIRiT (BART) maps from the fixed centre; the shipped prior. One JSON line per
candidate, appended (a rerun skips finished ones).
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
    p.add_argument("--mask-file")
    p.add_argument("--offsets", type=float, nargs="*", default=[0.125, 0.375, 0.625, 0.875])
    p.add_argument("--draws", type=int, default=4, help="stratified draws per density")
    p.add_argument("--densities", nargs="+", choices=["learned", "mix50"], default=["learned", "mix50"])
    p.add_argument("--judge-slices", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    out = Path(a.out)
    if a.table:
        return table(out)
    if not a.mask_file:
        p.error("--mask-file is required (except with --table)")
    torch.set_num_threads(a.threads)
    from _val_cases import dds_psnr, line_mask_judging

    mf, k, target, maps, prior, bm = line_mask_judging(a.data, a.mask_file)
    r, centre = mf.acceleration, bm.fixed.numpy().astype(np.float32)
    densities = {"learned": bm.probabilities().detach(), "mix50": bm.flattened(0.5)}

    def dds(mask, idx, steps):
        return dds_psnr(prior, k, target, maps, mask, idx, steps)

    cands = [("file", "file", np.asarray(mf.mask, np.float32))]
    for name in a.densities:
        dens = densities[name]
        cands += [(f"{name} offset {u:g}", "systematic", bm.systematic(u, probabilities=dens).numpy()) for u in a.offsets]
        cands += [(f"{name} draw {d}", "stratified",
                   bm.draw_exact(torch.Generator().manual_seed(d), stratified=True, probabilities=dens).numpy())
                  for d in range(a.draws)]
    done = {json.loads(x)["label"] for x in out.read_text().splitlines()} if out.exists() else set()
    judge, check = list(range(a.judge_slices)), list(range(a.judge_slices, len(k)))
    for label, sampling, mask in cands:
        if label in done:
            continue
        row = {"label": label, "sampling": sampling, "acceleration": r, "lines": int(mask.sum()),
               "judge_dds25": dds(mask, judge, 25), "check_dds50": dds(mask, check, 50),
               "free": np.flatnonzero(mask * (1 - centre)).tolist(), "mask": np.flatnonzero(mask).tolist()}
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps({k2: (round(v, 3) if isinstance(v, float) else v) for k2, v in row.items() if k2 not in ("mask", "free")}),
              flush=True)


def table(path: Path) -> None:
    """Per candidate the judge and the check; per pool (systematic, stratified, both) the check
    of the candidate the judge picks, the pool's mean and its best."""
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    print("| candidate | lines outside the centre | judge: DDS-25, val 0-3 | check: DDS-50, val 4-9 |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['label']} | {' '.join(map(str, r['free']))} | {r['judge_dds25']:.2f} | {r['check_dds50']:.2f} |")
    for pool in ("systematic", "stratified"):
        rs = [r for r in rows if r["sampling"] == pool]
        if not rs:
            continue
        pick = max(rs, key=lambda r: r["judge_dds25"])
        checks = [r["check_dds50"] for r in rs]
        print(f"{pool} ({len(rs)}): judge picks {pick['label']} (check {pick['check_dds50']:.2f}); "
              f"pool mean {np.mean(checks):.2f}, best {max(checks):.2f}")


if __name__ == "__main__":
    main()
