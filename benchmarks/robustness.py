"""Does the learned mask's advantage survive other DPS settings (the paper's robustness claim)?

    python benchmarks/robustness.py --learned runs/p1_128/masks/learned_R8.safetensors \
        --acceleration 8 --num-slices 4 --settings 50:0 100:0 100:40 --out benchmarks/robustness_R8.json

For each DPS setting ``steps:churn`` (EDM's S_churn), reconstructs the first ``--num-slices``
test slices with the learned mask and with ``--baseline`` (default vd_random, ``--seeds`` draws)
under DPS + the data-consistency step (``--dc-weight``), and reports the paired PSNR/SSIM
difference learned minus baseline (mean over seeds per slice, then over slices, with its
standard error). ESPIRiT-BART maps from each mask's own centre, as in the P1 study.
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
    p.add_argument("--split", default="test")
    p.add_argument("--learned", required=True, help="learned mask file")
    p.add_argument("--acceleration", type=float, required=True)
    p.add_argument("--baseline", default="vd_random")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--num-slices", type=int, default=4)
    p.add_argument("--settings", nargs="+", default=["50:0", "100:0", "100:40"], help="DPS steps:churn")
    p.add_argument("--dc-weight", type=float, default=0.03)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(2)
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.masks.select import make_mask
    from fastmri_diffmask.metrics import score
    from fastmri_diffmask.prior.weights import load_prior
    from fastmri_diffmask.recon.run import ReconSettings, reconstruct_slices, sens_maps_for

    data = load_slices(a.data, a.split, num_slices=a.num_slices, sens_backend="none")
    k, target = data.kspace.numpy(), data.target.numpy()
    shape = k.shape[-2:]
    learned = make_mask("learned_diffusion", shape, a.acceleration, mask_file=a.learned)
    masks = {"learned": learned}
    for s in range(a.seeds):
        masks[f"{a.baseline}_s{s}"] = make_mask(a.baseline, shape, a.acceleration, learned.num_low_frequencies, seed=s)
    maps = {name: np.stack([sens_maps_for(k[i] * m.mask, None, m.num_low_frequencies, "espirit-bart")
                            for i in range(len(k))]) for name, m in masks.items()}
    prior = load_prior("default", device="cpu")
    rows = []
    for setting in a.settings:
        steps, churn = (float(v) for v in setting.split(":"))
        s = ReconSettings(method="dps", steps=int(steps), churn=churn, dc_weight=a.dc_weight, batch=a.batch,
                          init="noise", dc_every=0, prior=prior, device="cpu")
        scores = {}
        for name, m in masks.items():
            rec = reconstruct_slices(k, m.mask, maps[name], m.acceleration, s)
            scores[name] = [score(target[i], rec[i]) for i in range(len(k))]
        base = [n for n in masks if n != "learned"]
        row = {"steps": int(steps), "churn": churn, "acceleration": a.acceleration, "slices": len(k)}
        for metric in ("psnr", "ssim"):
            lv = np.array([x[metric] for x in scores["learned"]])
            bv = np.mean([[x[metric] for x in scores[n]] for n in base], axis=0)
            d = lv - bv
            row.update({f"learned_{metric}": float(lv.mean()), f"{a.baseline}_{metric}": float(bv.mean()),
                        f"d{metric}": float(d.mean()), f"d{metric}_se": float(d.std(ddof=1) / np.sqrt(len(d)))})
        rows.append(row)
        print(json.dumps({k2: round(v, 4) if isinstance(v, float) else v for k2, v in row.items()}), flush=True)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"learned": a.learned, "baseline": a.baseline, "seeds": a.seeds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
