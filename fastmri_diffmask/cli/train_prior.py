"""``fastmri-diffmask train-prior``: train an EDM UNet prior on fastMRI-layout h5 files."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import UserError
from .main import add_device_argument


def register(sub) -> None:
    p = sub.add_parser("train-prior", help="train an EDM diffusion prior (runs under torchrun for DDP)")
    p.add_argument("--data", required=True, help="folder of fastMRI multi-coil h5 files (or a make-data output)")
    p.add_argument("--split", default="train", help="sub-folder to train on (default train)")
    p.add_argument("--out", required=True, help="output weights, .safetensors")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-schedule", default="constant", choices=["constant", "cosine"],
                   help="constant (default): --lr after the warm-up; cosine: decay to 0 at --steps from "
                        "--lr-decay-start (e.g. the step a resumed run starts at)")
    p.add_argument("--lr-decay-start", type=int, default=0, metavar="STEP")
    p.add_argument("--size-preset", default="small", help="tiny | small (default) | medium | large")
    p.add_argument("--ema-decay", type=float, default=0.999)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=None, help="use N slices spread evenly over the split (as learn-mask's --num-train)")
    p.add_argument("--sens-backend", default="auto", choices=["auto", "file", "sigpy", "bart"])
    p.add_argument("--readout-crop", default="auto", choices=["auto", "off"],
                   help="auto (default): crop an oversampled readout (header encodedSpace x > reconSpace x) to the "
                        "reconSpace rows in image space before training; off: train on the stored grid")
    p.add_argument("--augment", default="basic", choices=["basic", "full"],
                   help="basic (default): left-right flips and a global phase; full: also rotation, zoom and shift "
                        "(head size and position), contrast (gamma) and a smooth random phase (prior/augment.py)")
    p.add_argument("--init", default=None, metavar="PRIOR",
                   help="start from this prior's weights (a .safetensors prior file, or 'default') instead of random "
                        "ones: fine-tuning; ignored when --resume finds a checkpoint")
    p.add_argument("--val-split", default=None, metavar="SPLIT",
                   help="sub-folder of --data with validation slices: at every checkpoint the EMA weights' denoising "
                        "loss on them is logged and the best weights so far kept in <out>.best.safetensors")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.safetensors, or from its shards (training/README.md)")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..dataset import load_slice_groups
    from ..prior.train import TrainConfig, train_prior

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UserError(f"--out {out} must end in .safetensors")
    for name in ("steps", "batch", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lr > 0:
        raise UserError("--lr must be > 0")
    if not 0 <= args.lr_decay_start < args.steps:
        raise UserError(f"--lr-decay-start must be in [0, --steps) = [0, {args.steps}), got {args.lr_decay_start}")
    if args.num_train is not None and args.num_train < 1:
        raise UserError("--num-train must be >= 1")
    if args.init is not None:  # before the data are read
        from ..prior.weights import prior_path

        try:
            prior_path(args.init)
        except UserError as e:
            raise UserError(f"--init: {e}") from None
    groups = load_slice_groups(args.data, args.split, num_slices=args.num_train, sens_backend=args.sens_backend,
                               spread=True, readout_crop=args.readout_crop)
    if len(groups) > 1:  # the denoiser pads any size: every batch comes from one size (prior/train.py)
        from ..dataset import sizes_text

        counts = {(g.kspace.shape[-3], *g.kspace.shape[-2:]): len(g.fnames) for g in groups}
        what, unit = ("k-space shapes", "shape") if len({k[0] for k in counts}) > 1 else ("matrix sizes", "size")
        print(f"train-prior: {len(groups)} {what} ({sizes_text(counts)}); batches drawn per {unit}", file=sys.stderr)
    val = None
    if args.val_split is not None:
        val = [g.images for g in load_slice_groups(args.data, args.val_split, sens_backend=args.sens_backend,
                                                   readout_crop=args.readout_crop)]
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, preset=args.size_preset, seed=args.seed,
                      checkpoint_every=args.checkpoint_every, ema_decay=args.ema_decay, augment=args.augment,
                      init=args.init, lr_schedule=args.lr_schedule, lr_decay_start=args.lr_decay_start)
    t0 = time.time()
    images = groups[0].images if len(groups) == 1 else [g.images for g in groups]
    card = train_prior(images, out, cfg, resume=args.resume, device=args.device,
                       data_id=f"{Path(args.data).name}/{args.split}", val_images=val)
    card.pop("_ema")
    card["wall_seconds_this_run"] = round(time.time() - t0, 1)
    print(json.dumps({k: card[k] for k in ("steps", "final_loss", "parameters", "wall_seconds_this_run")}))
    return 0
