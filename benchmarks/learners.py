"""Cost of the greedy mask learners: gradient greedy per objective and the DDS-scored greedy search.

For each acceleration (line masks, the embedded 128^2 data, the shipped prior, the centre width of
:func:`fastmri_diffmask.learn.loop.default_num_low_frequencies`) and each learner

* ``greedy-<objective>``: :func:`fastmri_diffmask.learn.greedy.greedy_mask` with the objective
  ``tweedie`` (v1, double backward), ``tweedie-x0`` (v2, analytic) or ``dds`` (short
  differentiable DDS), mask form forced to linear;
* ``greedy-search``: :func:`fastmri_diffmask.learn.greedy_search.greedy_search_mask`
  (``--candidates`` per addition, DDS-``--dds-steps`` on ``--search-slices`` training slices),

run in a fresh subprocess (so its peak RSS, ``resource.getrusage`` maxrss, is its own): the
learner's wall seconds, seconds per gradient step / per addition, peak RSS and RSS before the
learner started (prior + data loaded), and write its mask as a mask file
(``<out>/<learner>_R<r>.safetensors``, the additions as the file's nested ``order``). One JSON line
per run goes to ``<out>/learners.jsonl``.

Usage (full; the greedy search dominates: (budget - centre) x candidates DDS runs)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learners.py --out runs/learners

Tiny (seconds; shows the pipeline works)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/learners.py --out runs/learners_tiny \\
        --accelerations 8 --num-train 4 --candidates 2 --search-slices 1 --dds-steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OBJECTIVES = ("tweedie", "tweedie-x0", "dds")


from bench_objective import _rss_mb  # noqa: E402 - the sibling benchmark's resident-memory reader


def one(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.learn.greedy import build_mask, greedy_mask
    from fastmri_diffmask.learn.greedy_search import greedy_search_mask
    from fastmri_diffmask.learn.loop import default_num_low_frequencies
    from fastmri_diffmask.learn.objective import ObjectiveConfig
    from fastmri_diffmask.masks.file import save_mask_file
    from fastmri_diffmask.prior.weights import load_prior

    prior = load_prior(spec["prior"])
    train = load_slices(spec["data"], "train", num_slices=spec["num_train"], spread=True)
    r, learner = spec["acceleration"], spec["learner"]
    width = train.kspace.shape[-1]
    nlf = default_num_low_frequencies(width, r)
    with torch.no_grad():  # warm-up: the first forward pass is several times slower
        prior(torch.zeros(2, 2, *train.kspace.shape[-2:]), torch.ones(2))
    base = _rss_mb()
    t0 = time.perf_counter()
    if learner == "greedy-search":
        settings = {k: spec[k] for k in ("candidates", "dds_steps", "seed")} | {"num_slices": spec["search_slices"]}
        binary, hist = greedy_search_mask(prior, train, "line", r, nlf, progress=False, **settings)
        steps = len(hist["additions"])
    else:
        obj = ObjectiveConfig(objective=learner.removeprefix("greedy-"))
        settings = {"batch": spec["batch"], "top_k": spec["top_k"], "seed": spec["seed"]}
        binary, hist = greedy_mask(prior, train, "line", r, nlf, obj, progress=False, **settings)
        settings["objective"] = hist["objective"]
        steps = hist["steps"]
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bm = build_mask(train, "line", r, nlf)
    with torch.no_grad():  # logits that say what was chosen (probabilities ~ the mask)
        bm.logits.copy_(torch.where(binary > 0.5, 8.0, -8.0))
    meta = {"learner": learner, "settings": settings, "seed": spec["seed"], "num_train": int(train.kspace.shape[0]),
            "prior": {"id": getattr(prior, "prior_id", "denoiser"), "sha256": getattr(prior, "sha256", None)},
            "data": f"{Path(spec['data']).resolve().name}/train[{train.kspace.shape[0]}]",
            "steps": steps, "wall_seconds": round(seconds, 2), "history": hist}
    out = Path(spec["out"]) / f"{learner}_R{r:g}.safetensors"
    save_mask_file(out, bm.to_mask_file(mask=binary, order=hist["order"], metadata=meta))
    row = {"learner": learner, "acceleration": r, "num_low_frequencies": nlf, "budget": hist["budget"],
           "additions": len(hist["additions"]), "steps": steps, "seconds": round(seconds, 2),
           "seconds_per_step": round(seconds / max(steps, 1), 3), "peak_rss_mb": round(peak, 1),
           "rss_before_mb": round(base, 1), "mask": str(out),
           "lines": [int(i) for i in binary.nonzero().flatten()]}
    if learner == "greedy-search":
        row["reconstructions"] = hist["reconstructions"]
        row["best_psnr"] = hist["additions"][-1]["psnr"] if hist["additions"] else None
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for the mask files and learners.jsonl")
    ap.add_argument("--data", default="runs/data")
    ap.add_argument("--prior", default="default")
    ap.add_argument("--accelerations", type=float, nargs="+", default=[8, 4])
    ap.add_argument("--learners", nargs="+", default=[f"greedy-{o}" for o in OBJECTIVES] + ["greedy-search"])
    ap.add_argument("--num-train", type=int, default=None, help="training slices, spread over the split (all)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--top-k", type=int, default=1)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--search-slices", type=int, default=4)
    ap.add_argument("--dds-steps", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return 0
    known = {f"greedy-{o}" for o in OBJECTIVES} | {"greedy-search"}
    if set(args.learners) - known:
        ap.error(f"unknown learner(s) {sorted(set(args.learners) - known)}; use {sorted(known)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in args.accelerations:
        for learner in args.learners:
            spec = {"learner": learner, "acceleration": r, "data": args.data, "prior": args.prior, "out": str(out),
                    "num_train": args.num_train, "batch": args.batch, "top_k": args.top_k,
                    "candidates": args.candidates, "search_slices": args.search_slices,
                    "dds_steps": args.dds_steps, "seed": args.seed, "threads": args.threads}
            proc = subprocess.run([sys.executable, __file__, "--out", str(out), "--one", json.dumps(spec)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                row = {"learner": learner, "acceleration": r, "failed": (proc.stderr.strip().splitlines() or ["?"])[-1]}
            else:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            with open(out / "learners.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(f"\n{'learner':<18}{'R':>4}{'adds':>6}{'steps':>7}{'s':>9}{'s/step':>9}{'peak MB':>9}  lines")
    for row in rows:
        if "failed" in row:
            print(f"{row['learner']:<18}{row['acceleration']:>4g}  failed: {row['failed']}")
            continue
        print(f"{row['learner']:<18}{row['acceleration']:>4g}{row['additions']:>6}{row['steps']:>7}{row['seconds']:>9.1f}"
              f"{row['seconds_per_step']:>9.3f}{row['peak_rss_mb']:>9.0f}  {row['lines']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
