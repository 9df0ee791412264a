"""Export the EMA weights of a prior-training checkpoint as the package's default prior + card.

    python scripts/export_default_prior.py --ckpt runs/prior/prior.ckpt.safetensors \
        --data runs/data --out fastmri_diffmask/prior/default/edm_unet_colin27_128.safetensors

    # the multi-subject default (issue 14; prior/default/CORPUS.md): the best-validation weights
    python scripts/export_default_prior.py --ckpt runs/prior2/prior.ckpt.safetensors \
        --weights runs/prior2/prior.best.safetensors --data runs/prior_corpus \
        --data-card "prior-corpus-v1 (prior/default/CORPUS.md)" \
        --out fastmri_diffmask/prior/default/edm_unet_brains_128.safetensors --shards-to training

Writes the weights (safetensors, config in the metadata) and a JSON card next to them with the
architecture, data, steps, wall time, final loss and the held-out denoising PSNR at several noise
levels on the validation split (PSNR of the 2-channel image, peak = max |x|). With
``--shards-to training`` the resumable checkpoint is also split into committable shards
(``training/prior.ckpt-0000i-of-0000n.safetensors`` + index; see training/README.md).
"""

import argparse
import json
from pathlib import Path

import torch


def denoising_psnr(prior, images: torch.Tensor, sigmas, seed: int = 0) -> dict:
    from fastmri_diffmask.prior.train import scaled_training_images

    x = scaled_training_images(images)
    g = torch.Generator().manual_seed(seed)
    out = {}
    with torch.no_grad():
        for s in sigmas:
            n = torch.randn(x.shape, generator=g)
            d = prior(x + s * n, torch.full((len(x),), float(s)))
            mse = ((d - x) ** 2).flatten(1).mean(1)
            peak = x.abs().flatten(1).amax(1)
            out[f"{s:g}"] = {"denoised_psnr": round(float((10 * torch.log10(peak ** 2 / mse)).mean()), 2),
                             "noisy_psnr": round(float((10 * torch.log10(peak ** 2 / (s ** 2))).mean()), 2)}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="runs/prior/prior.ckpt.safetensors")
    p.add_argument("--data", default="runs/data")
    p.add_argument("--out", default="fastmri_diffmask/prior/default/edm_unet_colin27_128.safetensors")
    p.add_argument("--shards-to", default=None,
                   help="also split the checkpoint into <= 15 MB shards in this folder (committable: training/)")
    p.add_argument("--wall-minutes", type=float, default=None, help="training wall time to record")
    p.add_argument("--weights", default=None,
                   help="export these prior weights (e.g. <out>.best.safetensors, the best validation loss) "
                        "instead of the checkpoint's last EMA")
    p.add_argument("--data-card", default=None, help="what the card's 'data' says (default: the embedded train split)")
    a = p.parse_args()
    from fastmri_diffmask.dataset import load_slices
    from fastmri_diffmask.embedded import DATA_ID
    from fastmri_diffmask.prior.shards import read_metadata, split_file
    from fastmri_diffmask.prior.train import export_checkpoint
    from fastmri_diffmask.prior.weights import load_prior

    log = json.loads(read_metadata(a.ckpt).get("log", "[]"))
    timed = [e for e in log if "seconds" in e]
    wall = a.wall_minutes if a.wall_minutes is not None else (timed[-1]["seconds"] / 60 if timed else None)
    extra = {"data": a.data_card or f"{DATA_ID} train split (138 slices, 8 simulated coils, true maps)",
             "image_size": [128, 128], "scaling": "complex image / 99th percentile of magnitude",
             "wall_minutes_last_run": round(wall, 1) if wall else None,
             "hardware": "2 CPU cores (shared), torch 2.13 CPU, 1 thread"}
    if a.weights:  # a prior file (the best-validation EMA): re-save it with the card's fields
        from fastmri_diffmask.prior.weights import save_prior

        src = load_prior(a.weights, device="cpu")
        out = save_prior(a.out, src, {**src.config, **extra})
    else:
        out = export_checkpoint(a.ckpt, a.out, extra)
    prior = load_prior(out, device="cpu")
    val = load_slices(a.data, "val").images
    card = dict(prior.config)
    card["heldout_denoising_val"] = denoising_psnr(prior, val, [0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
    card["loss_log_tail"] = [e for e in log if "loss" in e][-5:]
    card["val_log"] = [e for e in log if "val_loss" in e]
    Path(out).with_suffix(".json").write_text(json.dumps(card, indent=1))
    if a.shards_to:
        print("checkpoint shards:", split_file(a.ckpt, a.shards_to))
    print(json.dumps({k: card[k] for k in ("steps", "final_loss", "parameters", "heldout_denoising_val")}, indent=1))


if __name__ == "__main__":
    main()
