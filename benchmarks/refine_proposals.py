"""Does the differentiable DDS objective's mask gradient predict which line moves the DDS judge
rewards? For every free line of a mask file and every move by +-1..3 columns, the first-order
prediction ``g[to] - g[from]`` (``g`` = gradient of the ``dds`` objective, linear mask form, w.r.t.
the hard mask, averaged over the training slices) against the measured change of the refinement
score (DDS PSNR on 4 spread training slices; learn/refine.py's scorer). Training slices only.

    python benchmarks/refine_proposals.py runs/exp/r8_s0.safetensors --out benchmarks/refine_proposals_R8.json
"""

import argparse
import json

import numpy as np
import torch


def main() -> None:
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.learn.greedy_search import TrainingScorer
    from fastmri_diffmask.learn.objective import ObjectiveConfig, draw_noise, estimate
    from fastmri_diffmask.learn.tweedie import reconstruction_loss
    from fastmri_diffmask.learn.validate import scaled_batch
    from fastmri_diffmask.masks.bernoulli import as_kspace_mask
    from fastmri_diffmask.masks.file import load_mask_file
    from fastmri_diffmask.prior.weights import load_prior

    ap = argparse.ArgumentParser()
    ap.add_argument("mask")
    ap.add_argument("--data", default="runs/data")
    ap.add_argument("--moves", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    mf = load_mask_file(args.mask)
    prior = load_prior("default", device="cpu")
    train = load_slices(args.data, "train", sens_backend="file")
    m = np.asarray(mf.mask, bool)
    w = m.size
    nlf = mf.num_low_frequencies
    fixed = np.zeros(w, bool)
    fixed[(w - nlf + 1) // 2:(w - nlf + 1) // 2 + nlf] = True
    # gradient of the dds objective w.r.t. the hard mask, averaged over all training slices
    cfg = ObjectiveConfig(objective="dds", mask_form="linear").validate()
    x_all, s_all = scaled_batch(train)
    gen = torch.Generator().manual_seed(0)
    g = torch.zeros(w, dtype=torch.float64)
    for i in range(0, x_all.shape[0], args.batch):
        x, s = x_all[i:i + args.batch], s_all[i:i + args.batch]
        p = torch.from_numpy(m.astype(np.float32)).requires_grad_(True)
        sigma, noise, meas = draw_noise(x, s, cfg, gen)
        loss = reconstruction_loss(estimate(prior, x, s, as_kspace_mask(p.expand(x.shape[0], w), "line"), cfg,
                                            sigma, noise, meas), x, cfg.loss)
        (grad,) = torch.autograd.grad(loss * x.shape[0], p)
        g += grad.double()
    g /= x_all.shape[0]
    scorer = TrainingScorer(prior, train, "line", (w,), 4, 25, 0)
    base = scorer(m[None])[0]
    rows, trials = [], []
    for j in np.flatnonzero(m & ~fixed):
        for t in [j + s * d for d in args.moves for s in (-1, 1)]:
            if 0 <= t < w and not m[t]:
                trial = m.copy()
                trial[j], trial[t] = False, True
                trials.append(trial)
                rows.append({"from": int(j), "to": int(t), "predicted": float(-(g[t] - g[j]))})
    scores = scorer(np.stack(trials))
    for r, sc in zip(rows, scores):
        r["measured_db"] = sc - base
    pred = np.array([r["predicted"] for r in rows])
    meas = np.array([r["measured_db"] for r in rows])
    from scipy.stats import spearmanr

    rho = float(spearmanr(pred, meas).correlation)
    best_pred = [max((r for r in rows if r["from"] == j), key=lambda r: r["predicted"]) for j in {r["from"] for r in rows}]
    summary = {"mask": args.mask, "base_db": base, "moves": len(rows), "spearman": rho,
               "improving_moves": int((meas > 0).sum()),
               "gain_of_best_measured_per_line": float(np.mean([max(r["measured_db"] for r in rows if r["from"] == j)
                                                                for j in {r["from"] for r in rows}])),
               "gain_of_best_predicted_per_line": float(np.mean([r["measured_db"] for r in best_pred]))}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
