"""``fastmri-diffmask learn-mask``: learn a line or point sampling mask with a diffusion prior.

Parses the flags and hands them to :func:`fastmri_diffmask.learn.api.learn_mask_file`, which
trains the mask on the ``train`` split, validates on ``val`` and writes the mask file plus a PNG
next to it (``<out>.png``); then prints the run's one-line JSON summary. The flags' defaults are
those of :class:`~fastmri_diffmask.learn.api.LearnMaskOptions`.
"""

from __future__ import annotations

import json

from ..learn.api import OPTIMIZERS, LearnMaskOptions
from ..learn.greedy_search import CLASSICAL_SCORES
from ..learn.config import EXPORTS, SAMPLINGS, SELECTS
from ..learn.options import LEARN_PRECISIONS
from ..learn.objective import OBJECTIVES, RECON_INITS
from .main import add_device_argument

_D = LearnMaskOptions()  # the library's defaults are the flags' defaults


def register(sub) -> None:
    p = sub.add_parser("learn-mask", help="learn a k-space sampling mask with a diffusion prior (Tweedie objective)")
    p.add_argument("--data", required=True, help="folder with train/ and val/ fastMRI multi-coil h5 files")
    p.add_argument("--prior", default="default", help="'default' (shipped) or a prior weights file")
    p.add_argument("--kind", choices=["line", "point"], default="line", help="line (per column) or point (per ky-kz) mask")
    p.add_argument("--acceleration", type=float, required=True, help="target acceleration R (budget round(N/R))")
    p.add_argument("--out", required=True, help="output mask file (.safetensors)")
    p.add_argument("--num-low-frequencies", type=int, default=_D.num_low_frequencies,
                   help="fully sampled centre width (default: see fastmri_diffmask.learn.loop.default_num_low_frequencies)")
    p.add_argument("--corner-cut", action="store_true", help="point masks: never sample outside the inscribed ellipse")
    g = p.add_argument_group("objective")
    g.add_argument("--objective", choices=OBJECTIVES, default=_D.objective,
                   help="tweedie: grad through the denoiser (paper v1); tweedie-x0: analytic grad (v2); unrolled: K DPS "
                        "steps; dds: a short DDS reconstruction from the masked data, differentiated through its CG steps")
    g.add_argument("--loss", choices=["l2", "nl2", "l1", "ssim"], default=_D.loss)
    g.add_argument("--eta", type=float, default=_D.eta, help="likelihood step size (default 0.5)")
    g.add_argument("--sigma-mean", type=float, default=_D.sigma_mean, help="mean of ln sigma (default -1.2)")
    g.add_argument("--sigma-std", type=float, default=_D.sigma_std, help="std of ln sigma (default 1.2)")
    g.add_argument("--meas-noise", type=float, default=_D.meas_noise, help="k-space noise std added to the measurements")
    g.add_argument("--unroll-steps", type=int, default=_D.unroll_steps, help="K for --objective unrolled")
    g.add_argument("--unroll-sigma-end", type=float, default=_D.unroll_sigma_end)
    g.add_argument("--init", choices=["truth", "adjoint"], default=_D.init, help="start x_t from x (paper) or A^H y")
    g.add_argument("--mask-form", choices=["paper", "linear"], default=_D.mask_form,
                   help="data term ||M A x - M y||^2 (paper: only drawn lines learn) or sum M|A x - y|^2 (linear: all learn)")
    g.add_argument("--relaxed", action="store_true", help="LOUPE comparator: sigmoid relaxation instead of Gumbel-ST")
    g.add_argument("--recon-steps", type=int, default=_D.recon_steps, help="--objective dds: noise levels of the short run")
    g.add_argument("--recon-sigma-start", type=float, default=_D.recon_sigma_start, help="--objective dds: first noise level")
    g.add_argument("--recon-dc-weight", type=float, default=_D.recon_dc_weight, help="--objective dds: CG weight mu")
    g.add_argument("--recon-cg-iters", type=int, default=_D.recon_cg_iters, help="--objective dds: CG iterations per level")
    g.add_argument("--recon-init", choices=RECON_INITS, default=_D.recon_init,
                   help="--objective dds: start from the zero-filled image + noise, or noise alone")
    g.add_argument("--denoiser-grad", action="store_true", help="--objective dds: backpropagate through the denoiser too")
    o = p.add_argument_group("optimisation")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=_D.optimizer,
                   help="adam: Bernoulli logits + export (default); greedy: additions by the loss gradient w.r.t. "
                        "the mask (paper follow-up); greedy-search: additions scored by DDS (slow reference)")
    o.add_argument("--greedy-top-k", type=int, default=_D.greedy_top_k, help="greedy: farthest of the top-k gradients")
    o.add_argument("--greedy-adds-per-step", type=int, default=_D.greedy_adds_per_step,
                   help="greedy: additions per gradient evaluation")
    o.add_argument("--search-candidates", type=int, default=_D.search_candidates,
                   help="greedy-search: candidates scored per addition")
    o.add_argument("--search-slices", type=int, default=_D.search_slices, help="greedy-search: training slices scored")
    o.add_argument("--refine-sweeps", type=int, default=_D.refine_sweeps,
                   help="after the export, move free lines (point masks: reweight rings of the density) while DDS "
                        "on training slices improves (passes; 0 off; default 2 for line masks, 0 for point masks)")
    o.add_argument("--refine-moves", default=_D.refine_moves, help="column offsets a line may move by (default 1,2,3)")
    o.add_argument("--refine-rings", type=int, default=_D.refine_rings,
                   help="point masks: equal-count rings of the density the refinement reweights (default 8)")
    o.add_argument("--refine-factor", type=float, default=_D.refine_factor,
                   help="point masks: factor (and inverse) a ring's density is tried at (default 1.5)")
    o.add_argument("--refine-anisotropy", action="store_true",
                   help="point masks: also reweight the density by angle (cos 2theta, sin 2theta), moving samples "
                        "between the axes of k-space")
    o.add_argument("--refine-slices", type=int, default=_D.refine_slices, help="training slices the refinement scores")
    o.add_argument("--refine-propose", choices=["gradient", "all"], default=_D.refine_propose,
                   help="reconstruct only the moves the differentiable DDS objective's gradient ranks best "
                        "(gradient, default) or every move (all)")
    o.add_argument("--refine-dds-steps", type=int, default=_D.refine_dds_steps,
                   help="DDS steps of the refinement's reconstructions (default 15 for line masks, 8 for point masks)")
    o.add_argument("--refine-init", choices=["noise", "zero-filled", "sense"], default=_D.refine_init,
                   help="warm start of the refinement's DDS reconstructions (default sense, from --refine-sigma-start; "
                        "noise with --refine-sigma-start 80: from sigma_max)")
    o.add_argument("--refine-sigma-start", type=float, default=_D.refine_sigma_start,
                   help="noise level the refinement reconstructions start from (default 0.5)")
    o.add_argument("--refine-eta", type=float, default=_D.refine_eta,
                   help="fresh-noise fraction of the refinement's DDS steps (recon's --dds-eta; default 1)")
    o.add_argument("--refine-churn", type=float, default=_D.refine_churn,
                   help="churn of the refinement's DDS (default 0)")
    o.add_argument("--refine-classical", choices=CLASSICAL_SCORES, default=_D.refine_classical,
                   help="also score the refinement's moves by CG-SENSE or BART pics -l1 (the mean of the two "
                        "PSNRs; none: DDS alone; default: sense for line masks at R >= 8, else none)")
    o.add_argument("--refine-split", choices=["train", "val"], default=_D.refine_split,
                   help="line refinement: score moves on training slices (default) or on the export judge's "
                        "validation slices")
    o.add_argument("--refine-min-agree", type=float, default=_D.refine_min_agree,
                   help="line refinement: keep a move only if it raises the PSNR of at least this fraction "
                        "of the scoring slices too (default 0: the mean decides)")
    o.add_argument("--refine-tries", type=int, default=_D.refine_tries,
                   help="moves reconstructed per line with --refine-propose gradient (default 3)")
    o.add_argument("--steps", type=int, default=_D.steps,
                   help="Adam iterations; 0 = no learning: export the starting density (the baseline to beat); "
                        "default 0: the refinement learns")
    o.add_argument("--epochs", type=int, default=_D.epochs, help="overrides --steps")
    o.add_argument("--batch", type=int, default=_D.batch)
    o.add_argument("--lr", type=float, default=_D.lr)
    o.add_argument("--lr-schedule", choices=["constant", "cosine"], default=_D.lr_schedule)
    o.add_argument("--tau", type=float, default=_D.tau, help="Gumbel temperature (start)")
    o.add_argument("--tau-end", type=float, default=_D.tau_end, help="anneal tau geometrically to this")
    o.add_argument("--seed", type=int, default=_D.seed)
    o.add_argument("--num-train", type=int, default=_D.num_train, help="use N training slices evenly spread over the training set (default all)")
    o.add_argument("--num-val", type=int, default=_D.num_val, help="use the first N validation slices")
    o.add_argument("--readout-crop", choices=["auto", "off"], default=_D.readout_crop,
                   help="auto (default): crop an oversampled readout (header encodedSpace x > reconSpace x) to the "
                        "reconSpace rows in image space; off: the stored grid")
    o.add_argument("--val-every", type=int, default=_D.val_every, help="validate every N steps (default one epoch, at least 25 steps; 0 never)")
    o.add_argument("--dps-every", type=int, default=_D.dps_every, help="full DPS validation every K validations (0 off)")
    o.add_argument("--dps-steps", type=int, default=_D.dps_steps, help="DPS steps of DPS validation and the DPS judge")
    o.add_argument("--dds-steps", type=int, default=_D.dds_steps, help="DDS steps of the DDS judge (--export-select dds)")
    o.add_argument("--export", choices=EXPORTS, default=_D.export,
                   help="binary mask: top-k, quantiles of the density, best of --export-draws draws on val, "
                        "or best of those draws, top-k and quantile")
    o.add_argument("--export-draws", type=int, default=_D.export_draws, help="candidates per density (default 4)")
    o.add_argument("--export-sampling", choices=SAMPLINGS, default=_D.export_sampling,
                   help="how the candidates come from a density: systematic offsets (deterministic), stratified "
                        "or independent random draws")
    o.add_argument("--export-select", choices=SELECTS, default=_D.export_select,
                   help="how --export sampled/best picks its mask on val: the one-step proxy, DPS PSNR (--dps-steps) "
                        "or DDS PSNR (--dds-steps)")
    o.add_argument("--select-slices", type=int, default=_D.select_slices,
                   help="validation slices the DPS / DDS selection uses (default 4)")
    o.add_argument("--select-dc-weight", type=float, default=_D.select_dc_weight,
                   help="data-consistency weight of the DPS judge's final step (default 0.03)")
    o.add_argument("--export-flatten", default=_D.export_flatten,
                   help="comma-separated weights w: candidates also come from (1-w) p' + w * flat (default 0,0.5)")
    o.add_argument("--nested", action="store_true", help="learn nested masks at 4R, 2R, R (coarse to fine)")
    o.add_argument("--resume", action="store_true", help="continue an interrupted run from <out>.ckpt")
    o.add_argument("--init-from", default=_D.init_from, help="start from the logits of an existing mask file")
    o.add_argument("--init-density", choices=["uniform", "vd"], default=_D.init_density,
                   help="starting logits: uniform (paper) or the variable density (1 - r)^--init-power")
    o.add_argument("--init-power", type=float, default=_D.init_power)
    o.add_argument("--checkpoint-every", type=int, default=_D.checkpoint_every)
    o.add_argument("--precision", choices=LEARN_PRECISIONS, default=_D.precision,
                   help="the prior network's arithmetic in the objectives and judges (default auto: bfloat16 on CPUs "
                        "with bfloat16 units, about 2x faster, float32 elsewhere)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..learn.api import OPTION_NAMES, learn_mask_file, summary

    out = learn_mask_file(args.data, args.out, args.acceleration, args.prior, args.kind, device=args.device,
                          **{name: getattr(args, name) for name in OPTION_NAMES})
    print(json.dumps(summary(out)))
    return 0
