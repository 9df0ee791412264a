"""``fastmri-diffmask learn-mask``: learn a line or point sampling mask with a diffusion prior.

Trains the logits of a :class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask` on the ``train``
split through the Tweedie objective (:mod:`fastmri_diffmask.learn.tweedie`), validates on the
``val`` split, and writes a mask file (:mod:`fastmri_diffmask.masks.file`) with its provenance
plus a PNG of the learned probabilities and mask next to it (``<out>.png``).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from ..errors import UserError
from .main import add_device_argument


def register(sub) -> None:
    p = sub.add_parser("learn-mask", help="learn a k-space sampling mask with a diffusion prior (Tweedie objective)")
    p.add_argument("--data", required=True, help="folder with train/ and val/ fastMRI multi-coil h5 files")
    p.add_argument("--prior", default="default", help="'default' (shipped) or a prior weights file")
    p.add_argument("--kind", choices=["line", "point"], default="line", help="line (per column) or point (per ky-kz) mask")
    p.add_argument("--acceleration", type=float, required=True, help="target acceleration R (budget round(N/R))")
    p.add_argument("--out", required=True, help="output mask file (.safetensors)")
    p.add_argument("--num-low-frequencies", type=int, default=None,
                   help="fully sampled centre width (default: see fastmri_diffmask.learn.loop.default_num_low_frequencies)")
    p.add_argument("--corner-cut", action="store_true", help="point masks: never sample outside the inscribed ellipse")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", choices=["tweedie", "tweedie-x0", "unrolled"], default="tweedie",
                   help="tweedie: grad through the denoiser (paper v1); tweedie-x0: analytic grad (v2); unrolled: K DPS steps")
    g.add_argument("--loss", choices=["l2", "nl2", "l1", "ssim"], default="l2")
    g.add_argument("--eta", type=float, default=0.5, help="likelihood step size (default 0.5)")
    g.add_argument("--sigma-mean", type=float, default=-1.2, help="mean of ln sigma (default -1.2)")
    g.add_argument("--sigma-std", type=float, default=1.2, help="std of ln sigma (default 1.2)")
    g.add_argument("--meas-noise", type=float, default=0.0, help="k-space noise std added to the measurements")
    g.add_argument("--unroll-steps", type=int, default=3, help="K for --objective unrolled")
    g.add_argument("--unroll-sigma-end", type=float, default=0.02)
    g.add_argument("--init", choices=["truth", "adjoint"], default="truth", help="start x_t from x (paper) or A^H y")
    g.add_argument("--mask-form", choices=["paper", "linear"], default="paper",
                   help="data term ||M A x - M y||^2 (paper: only drawn lines learn) or sum M|A x - y|^2 (linear: all learn)")
    g.add_argument("--relaxed", action="store_true", help="LOUPE comparator: sigmoid relaxation instead of Gumbel-ST")
    o = p.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=250)
    o.add_argument("--epochs", type=int, default=None, help="overrides --steps")
    o.add_argument("--batch", type=int, default=2)
    o.add_argument("--lr", type=float, default=0.01)
    o.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    o.add_argument("--tau", type=float, default=1.0, help="Gumbel temperature (start)")
    o.add_argument("--tau-end", type=float, default=None, help="anneal tau geometrically to this")
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--num-train", type=int, default=None, help="use the first N training slices")
    o.add_argument("--num-val", type=int, default=None, help="use the first N validation slices")
    o.add_argument("--val-every", type=int, default=None, help="validate every N steps (default one epoch; 0 never)")
    o.add_argument("--dps-every", type=int, default=0, help="full DPS validation every K validations (0 off)")
    o.add_argument("--dps-steps", type=int, default=50)
    o.add_argument("--export", choices=["topk", "quantile", "sampled"], default="topk",
                   help="binary mask: top-k, quantiles of the density, or best of --export-draws draws on val")
    o.add_argument("--export-draws", type=int, default=8)
    o.add_argument("--nested", action="store_true", help="learn nested masks at 4R, 2R, R (coarse to fine)")
    o.add_argument("--resume", action="store_true", help="continue an interrupted run from <out>.ckpt")
    o.add_argument("--init-from", default=None, help="start from the logits of an existing mask file")
    o.add_argument("--checkpoint-every", type=int, default=50)
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(p)
    p.set_defaults(func=run)


def _data_id(root: str, data) -> str:
    h = hashlib.sha256(json.dumps([data.fnames, data.slice_nums, list(data.kspace.shape)]).encode()).hexdigest()[:12]
    return f"{Path(root).resolve().name}/train[{data.kspace.shape[0]}]:{h}"


def _check_prior(prior, h: int, w: int) -> None:
    import torch

    shape = getattr(prior, "shape", None)
    if shape is not None and tuple(shape) != (h, w):
        raise UserError(f"the prior is for {tuple(shape)} images but the data are {(h, w)}; use a prior trained at that size")
    try:
        with torch.no_grad():
            prior(torch.zeros(1, 2, h, w, device=next(iter(prior.buffers()), torch.zeros(0)).device), torch.ones(1))
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"the prior cannot denoise {h}x{w} images ({type(e).__name__}); use a prior for this matrix size") from None


def plot_mask(mf, path: Path) -> Path:
    """PNG of the learned probabilities and the binary mask, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..utils import atomic_path

    title = f"{mf.kind} mask R={mf.acceleration:g} ({mf.num_sampled} samples, centre {mf.num_low_frequencies})"
    if mf.kind == "line":
        fig, ax = plt.subplots(2, 1, figsize=(8, 3.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        cols = np.arange(mf.mask.size)
        ax[0].bar(cols, mf.probabilities, width=1.0, color="0.6", label="probability p'")
        ax[0].bar(cols[mf.mask > 0], mf.probabilities[mf.mask > 0], width=1.0, color="C0", label="sampled")
        ax[0].set_ylim(0, 1.02)
        ax[0].legend(loc="upper right", fontsize=7)
        ax[0].set_title(title, fontsize=9)
        ax[1].imshow(np.tile(mf.mask, (8, 1)), cmap="gray", aspect="auto", interpolation="nearest")
        ax[1].set_yticks([])
        ax[1].set_xlabel("phase-encode column")
    else:
        fig, ax = plt.subplots(1, 2, figsize=(8, 4))
        ax[0].imshow(mf.probabilities, cmap="viridis", vmin=0, vmax=1)
        ax[0].set_title("probability p'", fontsize=9)
        ax[1].imshow(mf.mask, cmap="gray", interpolation="nearest")
        ax[1].set_title(title, fontsize=9)
        for a in ax:
            a.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path


def run(args) -> int:
    import numpy as np
    import torch

    from ..dataset import load_slices
    from ..learn.loop import LearnConfig, default_num_low_frequencies, export_mask, learn_mask, learn_nested
    from ..learn.tweedie import ObjectiveConfig
    from ..masks.file import load_mask_file, save_mask_file
    from ..prior.weights import load_prior
    from ..utils import resolve_device

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a mask file path such as {out / 'mask.safetensors'}")
    for name in ("steps", "batch", "export_draws", "checkpoint_every", "unroll_steps", "dps_steps"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("num_train", "num_val", "epochs"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not args.acceleration > 1:
        raise UserError(f"--acceleration must be > 1, got {args.acceleration:g}")
    if args.corner_cut and args.kind != "point":
        raise UserError("--corner-cut applies to point masks only; add --kind point or drop it")
    if args.resume and args.init_from:
        raise UserError("--resume and --init-from exclude each other; pick one")
    device = resolve_device(args.device)
    prior = load_prior(args.prior, device=device)
    init_logits = None
    if args.init_from:
        src = load_mask_file(args.init_from)
        init_logits = torch.from_numpy(np.nan_to_num(src.logits, posinf=0.0, neginf=0.0))
    train = load_slices(args.data, "train", num_slices=args.num_train)
    val = load_slices(args.data, "val", num_slices=args.num_val)
    h, w = train.kspace.shape[-2:]
    _check_prior(prior, h, w)
    shape = (w,) if args.kind == "line" else (h, w)
    if init_logits is not None and tuple(init_logits.shape) != shape:
        raise UserError(f"--init-from mask has shape {tuple(init_logits.shape)} but the data need {shape}; use a mask learned at this size")
    nlf = args.num_low_frequencies
    if nlf is None:  # nested masks need a centre that fits the coarsest level (4R)
        nlf = default_num_low_frequencies(w, 4 * args.acceleration if args.nested else args.acceleration)
    obj = ObjectiveConfig(objective=args.objective, loss=args.loss, eta=args.eta, p_mean=args.sigma_mean,
                          p_std=args.sigma_std, meas_noise=args.meas_noise, unroll_steps=args.unroll_steps,
                          unroll_sigma_end=args.unroll_sigma_end, init=args.init, relaxed=args.relaxed,
                          mask_form=args.mask_form)
    cfg = LearnConfig(objective=obj, steps=args.steps, epochs=args.epochs, batch=args.batch, lr=args.lr,
                      lr_schedule=args.lr_schedule, tau=args.tau, tau_end=args.tau_end, seed=args.seed,
                      val_every=args.val_every, dps_every=args.dps_every, dps_steps=args.dps_steps,
                      export=args.export, export_draws=args.export_draws, checkpoint_every=args.checkpoint_every)
    ckpt = out.with_name(out.name + ".ckpt")
    t0 = time.time()
    torch.manual_seed(args.seed)
    common = dict(config=cfg, corner_cut=args.corner_cut, progress=not args.quiet, device=device)
    order, nested = None, None
    if args.nested:
        accs = [a for a in (4 * args.acceleration, 2 * args.acceleration, args.acceleration)
                if round((h * w if args.kind == "point" else w) / a) >= (nlf * nlf if args.kind == "point" else nlf)]
        mask, binary, order, hists = learn_nested(prior, train, val, args.kind, accs, nlf, checkpoint=ckpt,
                                                  resume=args.resume, **common)
        history, nested = hists[-1], accs
    else:
        mask, history = learn_mask(prior, train, val, args.kind, args.acceleration, nlf, init_logits=init_logits,
                                   checkpoint=ckpt, resume=args.resume, **common)
        binary = export_mask(mask, history, args.export)
    meta = {
        "prior": {"id": getattr(prior, "prior_id", "denoiser"), "sha256": getattr(prior, "sha256", None),
                  "source": getattr(prior, "source", str(args.prior))},
        "data": _data_id(args.data, train), "num_train": int(train.kspace.shape[0]),
        "num_val": int(val.kspace.shape[0]), "seed": args.seed, "objective": cfg.to_dict(),
        "steps": cfg.total_steps(train.kspace.shape[0]), "best": history.get("best"),
        "validation": history.get("val", []), "wall_seconds": round(time.time() - t0, 1),
    }
    if nested:
        meta["nested_accelerations"] = nested
    if args.init_from:
        meta["init_from"] = str(args.init_from)
    mf = mask.to_mask_file(mask=binary, order=order, metadata=meta)
    mf.metadata["export"] = args.export
    png = out.with_suffix(".png") if out.suffix != ".png" else out.with_name(out.name + ".preview.png")
    save_mask_file(out, mf)
    plot_mask(mf, png)
    for p in out.parent.glob(out.name + ".ckpt*"):
        p.unlink()
    print(json.dumps({"out": str(out), "png": str(png), "num_sampled": mf.num_sampled,
                      "acceleration": round(float(mf.achieved_acceleration), 3), "num_low_frequencies": nlf,
                      "best": history.get("best"), "wall_seconds": meta["wall_seconds"]}))
    return 0
