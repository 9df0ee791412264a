"""Ablation of the mask-learning levers on the VALIDATION split (never test), scored by DPS.

Every mask has exactly ``round(W / R)`` lines including a centre of ``num_low_frequencies``
(10 at R = 8, 16 at R = 4 on 128 columns unless ``--nlf``). Baselines: equispaced and uniform
random with that exact budget (fastMRI's own ``equispaced``/``random`` with their own, larger,
line counts are listed too), and variable-density random (``baselines.vd_random``, several
draws, power tuned). Learned masks: ``learn_mask`` with a named configuration (``CONFIGS``)
plus ``--set key=value`` overrides, each exported as top-k, quantile and best-of-K draws (chosen
by the validation proxy).

Scores: DPS (``sample.dps.dps_reconstruct``, ``--dps-steps``, default zeta, one fixed seed so
all masks see the same noise: paired comparisons) on the val slices; PSNR/SSIM on magnitudes
with ``data_range = max - min`` of the ground truth (the paper's; ``metrics.score``). Results
append to a JSON-lines file; DPS scores are cached by mask.

Examples::

    python benchmarks/ablate_mask_learning.py baselines --prior P --acceleration 8
    python benchmarks/ablate_mask_learning.py learn --prior P --acceleration 8 --config v1
    python benchmarks/ablate_mask_learning.py learn --prior P --acceleration 8 --config v1 --set objective.p_mean=-2.5
    python benchmarks/ablate_mask_learning.py table
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "ablation_results.jsonl"
CACHE = HERE / ".ablation_dps_cache.json"

#: Named learning configurations (LearnConfig fields; "objective" holds ObjectiveConfig fields).
CONFIGS = {
    # the paper's v1 recipe as FACTS describes it (eta 0.5 per the prototype)
    "v1": {"steps": 250, "batch": 2, "lr": 0.01, "objective": {"objective": "tweedie", "eta": 0.5}},
    "v1-linear": {"steps": 250, "batch": 2, "lr": 0.01,
                  "objective": {"objective": "tweedie", "eta": 0.5, "mask_form": "linear"}},
    "x0": {"steps": 250, "batch": 2, "lr": 0.01, "objective": {"objective": "tweedie-x0", "eta": 0.5}},
    "x0-linear": {"steps": 250, "batch": 2, "lr": 0.01,
                  "objective": {"objective": "tweedie-x0", "eta": 0.5, "mask_form": "linear"}},
    "unrolled": {"steps": 120, "batch": 2, "lr": 0.01,
                 "objective": {"objective": "unrolled", "eta": 0.5, "unroll_steps": 3, "mask_form": "linear"}},
    "loupe": {"steps": 250, "batch": 2, "lr": 0.01,
              "objective": {"objective": "tweedie-x0", "eta": 0.5, "relaxed": True}},
}


def load(prior_path: str, num_val: int | None):
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.prior.weights import load_prior

    root = HERE.parent / "runs" / "data"
    prior = load_prior(prior_path, device="cpu")
    return prior, load_slices(root, "train"), load_slices(root, "val", num_slices=num_val)


def _key(mask: np.ndarray, prior, steps: int, seed: int, n: int) -> str:
    h = hashlib.sha1(np.ascontiguousarray(mask, np.float32).tobytes()).hexdigest()[:16]
    return f"{prior.sha256[:12]}:{h}:{steps}:{seed}:{n}"


def dps_scores(prior, val, mask: np.ndarray, steps: int, seed: int = 0) -> dict:
    """Per-slice PSNR/SSIM (paper's data range) of DPS with a line mask ``(W,)``; cached."""
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.sample.dps import dps_reconstruct

    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    key = _key(mask, prior, steps, seed, val.kspace.shape[0])
    if key in cache:
        return cache[key]
    km = torch.from_numpy(np.asarray(mask, np.float32)).view(1, 1, 1, -1)
    t0 = time.time()
    rec = dps_reconstruct(prior, val.kspace * km, km.expand(val.kspace.shape[0], 1, 1, -1), val.sens_maps,
                          steps=steps, generator=torch.Generator().manual_seed(seed), progress=False)
    gt = val.images.abs().numpy()
    s = [score(g, r) for g, r in zip(gt, rec.abs().numpy())]
    out = {"psnr": [x["psnr_paper"] for x in s], "ssim": [x["ssim_paper"] for x in s],
           "seconds": round(time.time() - t0, 1)}
    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    cache[key] = out
    CACHE.write_text(json.dumps(cache))
    return out


def record(row: dict) -> None:
    """Append a result row (a baseline already recorded for this prior and protocol is skipped)."""
    if row["kind"] == "baseline" and RESULTS.is_file():
        same = ("R", "nlf", "mask", "dps_steps", "prior")
        for line in RESULTS.read_text().splitlines():
            old = json.loads(line)
            if all(old.get(k) == row.get(k) for k in same):
                return
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{row['R']:>3} {row['mask']:<40} psnr {np.mean(row['psnr']):6.2f} ssim {np.mean(row['ssim']):.4f}", flush=True)


def exact_equispaced(w: int, r: float, c: int) -> np.ndarray:
    from fastmri_diffmask.masks.bernoulli import BernoulliMask

    return BernoulliMask(w, r, c).binarize("quantile").numpy()  # uniform density: evenly spread


def run_baselines(args, prior, val) -> None:
    from fastmri_diffmask.masks.baselines import baseline_mask

    w, r, c = val.kspace.shape[-1], args.acceleration, args.nlf
    base = {"R": r, "nlf": c, "dps_steps": args.dps_steps, "prior": prior.sha256[:12], "kind": "baseline"}
    record({**base, "mask": "equispaced (exact budget)", **dps_scores(prior, val, exact_equispaced(w, r, c), args.dps_steps)})
    budget = round(w / r)
    for seed in range(args.draws):
        m = baseline_mask("vd_random", (w,), r, num_low_frequencies=c, seed=seed, power=0.0).mask
        record({**base, "mask": f"uniform random (exact) seed{seed}", "group": "uniform random (exact)",
                **dps_scores(prior, val, m, args.dps_steps)})
    for name in ("equispaced", "random"):
        for seed in range(1 if name == "equispaced" else args.draws):
            b = baseline_mask(name, (w,), r, num_low_frequencies=c, seed=seed)
            record({**base, "mask": f"fastMRI {name} (R={b.acceleration:.2f}) seed{seed}", "group": f"fastMRI {name}",
                    "achieved_R": b.acceleration, **dps_scores(prior, val, b.mask, args.dps_steps)})
    for power in args.powers:
        for seed in range(args.vd_draws):
            m = baseline_mask("vd_random", (w,), r, num_low_frequencies=c, seed=seed, power=power).mask
            assert m.sum() == budget
            record({**base, "mask": f"vd_random p{power:g} seed{seed}", "group": f"vd_random p{power:g}",
                    **dps_scores(prior, val, m, args.dps_steps)})


def _apply(cfg: dict, sets: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for item in sets:
        key, value = item.split("=", 1)
        target = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = json.loads(value) if value[:1] in "-0123456789[{tfn" else value
    return cfg


def run_learn(args, prior, train, val) -> None:
    from fastmri_diffmask.learn.loop import LearnConfig, export_mask, learn_mask
    from fastmri_diffmask.learn.objective import ObjectiveConfig

    spec = _apply(CONFIGS[args.config], args.set)
    obj = ObjectiveConfig(**spec.get("objective", {}))
    lc = LearnConfig(objective=obj, **{k: v for k, v in spec.items() if k != "objective"})
    lc.export = "sampled"
    lc.export_draws = args.export_draws
    torch.manual_seed(lc.seed)
    sub = train if args.num_train is None else train.subset(range(args.num_train))
    t0 = time.time()
    init = None
    if args.init_vd is not None:  # start from the vd density (1 - |k|)^p
        from fastmri_diffmask.masks.baselines import vd_density
        from fastmri_diffmask.masks.bernoulli import density_logits

        init = density_logits(vd_density((val.kspace.shape[-1],), args.init_vd))
    mask, hist = learn_mask(prior, sub, val, "line", args.acceleration, args.nlf, lc, progress=not args.quiet,
                            init_logits=init)
    secs = time.time() - t0
    name = args.config + ("" if not args.set else " " + " ".join(args.set))
    name += "" if args.init_vd is None else f" init vd p{args.init_vd:g}"
    base = {"R": args.acceleration, "nlf": args.nlf, "dps_steps": args.dps_steps, "prior": prior.sha256[:12],
            "kind": "learned", "config": spec, "learn_seconds": round(secs, 1), "best": hist["best"],
            "probabilities": [round(float(p), 4) for p in mask.probabilities().detach()],
            "val_proxy": [v["proxy"] for v in hist["val"]]}
    for export in args.exports:
        m = export_mask(mask, hist, export).numpy()
        record({**base, "mask": f"{name} [{export}]", "group": name, "export": export,
                "lines": np.flatnonzero(m).tolist(), **dps_scores(prior, val, m, args.dps_steps)})


def run_select(args, prior, val) -> None:
    """Best of ``--export-draws`` stratified draws from a density, chosen by DPS (``--select-steps``)
    on the first ``--select-slices`` validation slices, then scored like every other mask.

    ``--density vd`` is the vd_random density ``(1 - |k|)^p`` (``--ref-power``); ``--density
    NAME`` the probabilities of the last learned row whose mask name starts with NAME. Both go
    through the same selection, so the pair separates the density from the selection. Compare on
    the slices not used for selecting (``table --skip-slices``).
    """
    from fastmri_diffmask.masks.bernoulli import BernoulliMask, density_logits

    w, r, c = val.kspace.shape[-1], args.acceleration, args.nlf
    mask = BernoulliMask(w, r, c)
    if args.density == "vd":
        k = np.abs(np.arange(w) - w / 2) / (w / 2)
        p = (1 - np.clip(k, 0, 1)) ** args.ref_power
        label = f"vd p{args.ref_power:g}"
    else:
        rows = [json.loads(l) for l in RESULTS.read_text().splitlines() if l.strip()]
        rows = [x for x in rows if x["kind"] == "learned" and x["R"] == r and x["prior"] == prior.sha256[:12]
                and x["mask"].startswith(args.density)]
        if not rows:
            raise SystemExit(f"no learned row at R={r:g} named {args.density!r}")
        p, label = np.asarray(rows[-1]["probabilities"]), rows[-1]["mask"].rsplit(" [", 1)[0]
    with torch.no_grad():
        mask.logits.copy_(density_logits(p, floor=1e-4))
    g = torch.Generator().manual_seed(2)
    draws = [mask.draw_exact(g, stratified=True).numpy() for _ in range(args.export_draws)]
    sel = val.subset(range(args.select_slices))
    scores = [float(np.mean(dps_scores(prior, sel, d, args.select_steps)["psnr"])) for d in draws]
    best = draws[int(np.argmax(scores))]
    record({"R": r, "nlf": c, "dps_steps": args.dps_steps, "prior": prior.sha256[:12], "kind": "selected",
            "mask": f"{label} best-of-{args.export_draws} (DPS{args.select_steps}, val 0-{args.select_slices - 1})",
            "group": f"{label} selected", "selection_psnr": scores, "lines": np.flatnonzero(best).tolist(),
            **dps_scores(prior, val, best, args.dps_steps)})


def table(args) -> None:
    rows = [json.loads(l) for l in RESULTS.read_text().splitlines() if l.strip()]
    for r_val in sorted({r["R"] for r in rows}, reverse=True):
        sub = [r for r in rows if r["R"] == r_val and r.get("dps_steps") == args.dps_steps
               and (args.only_prior is None or r.get("prior") == args.only_prior)]
        if not sub:
            continue
        groups: dict = {}
        for r in sub:
            groups.setdefault(r.get("group", r["mask"]) if r["kind"] == "baseline" else r["mask"], []).append(r)
        if args.skip_slices:  # score on the slices a selection did not see
            for rs in groups.values():
                for x in rs:
                    x["psnr"], x["ssim"] = x["psnr"][args.skip_slices:], x["ssim"][args.skip_slices:]
        ref = groups.get(args.ref.format(p=args.ref_power))
        ref_psnr = np.mean([r["psnr"] for r in ref], 0) if ref else None
        print(f"\n### R = {r_val:g} (prior {sub[0]['prior']}, DPS {args.dps_steps} steps, "
              f"{len(sub[0]['psnr'])} val slices)\n")
        print("| mask | draws | PSNR | SSIM | dPSNR vs ref (paired, +-se) | learn s |")
        print("|---|---|---|---|---|---|")
        for name, rs in groups.items():
            ps = np.mean([r["psnr"] for r in rs], 0)
            ss = np.mean([r["ssim"] for r in rs], 0)
            d = ""
            if ref_psnr is not None:
                diff = ps - ref_psnr
                d = f"{diff.mean():+.2f} +- {diff.std(ddof=1) / np.sqrt(diff.size):.2f}"
            ls = rs[0].get("learn_seconds", "")
            print(f"| {name} | {len(rs)} | {ps.mean():.2f} | {ss.mean():.4f} | {d} | {ls} |")


def main() -> int:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["baselines", "learn", "select", "table"])
    ap.add_argument("--prior", default="default")
    ap.add_argument("--acceleration", type=float, default=8)
    ap.add_argument("--nlf", type=int, default=None)
    ap.add_argument("--dps-steps", type=int, default=50)
    ap.add_argument("--draws", type=int, default=2, help="draws of the uniform and fastMRI random masks")
    ap.add_argument("--vd-draws", type=int, default=3)
    ap.add_argument("--powers", type=float, nargs="+", default=[2.0])
    ap.add_argument("--config", default="v1", choices=sorted(CONFIGS))
    ap.add_argument("--set", action="append", default=[], help="override, e.g. objective.p_mean=-2.5 or steps=400")
    ap.add_argument("--exports", nargs="+", default=["topk", "quantile", "sampled"])
    ap.add_argument("--export-draws", type=int, default=8)
    ap.add_argument("--num-train", type=int, default=None)
    ap.add_argument("--num-val", type=int, default=None)
    ap.add_argument("--ref", default="vd_random p{p:g}")
    ap.add_argument("--ref-power", type=float, default=2.0)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--init-vd", type=float, default=None, help="learn: start from the vd density of this power")
    ap.add_argument("--density", default="vd", help="select: 'vd' or the name prefix of a learned row")
    ap.add_argument("--select-steps", type=int, default=25)
    ap.add_argument("--select-slices", type=int, default=4)
    ap.add_argument("--skip-slices", type=int, default=0, help="table: drop the first N val slices (used to select)")
    ap.add_argument("--only-prior", default=None, help="table: only rows of this prior (sha256 prefix, 12 chars)")
    args = ap.parse_args()
    if args.stage == "table":
        table(args)
        return 0
    if args.nlf is None:
        args.nlf = 10 if args.acceleration >= 8 else 16
    prior, train, val = load(args.prior, args.num_val)
    if args.stage == "baselines":
        run_baselines(args, prior, val)
    elif args.stage == "select":
        run_select(args, prior, val)
    else:
        run_learn(args, prior, train, val)
    return 0


if __name__ == "__main__":
    sys.exit(main())
