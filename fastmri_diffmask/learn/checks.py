"""Validation of :class:`~fastmri_diffmask.learn.options.LearnMaskOptions` before anything is
loaded: every bad option is one :class:`~fastmri_diffmask.errors.UserError` line naming the flag,
so that ``learn-mask`` (exit code 2) and a study config's ``learn:`` keys fail in seconds."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .config import EXPORTS, SAMPLINGS, SELECTS
from .greedy_search import CLASSICAL_SCORES
from .options import KINDS, LEARN_PRECISIONS, OPTIMIZERS, LearnMaskOptions


def parse_flatten(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> ``(0.0, 0.5, 1.0)``; an unreadable entry gives an empty tuple."""
    try:
        return tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        return ()


def check_inputs(opts: LearnMaskOptions, out: Path, acceleration: float, kind: str) -> None:
    """Validate ``opts`` before anything is loaded; one-line :class:`UserError` otherwise."""
    if kind not in KINDS:
        raise UserError(f"kind must be line or point, got {kind!r}")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a mask file path such as {out / 'mask.safetensors'}")
    if opts.precision not in LEARN_PRECISIONS:
        raise UserError(f"--precision must be one of {', '.join(LEARN_PRECISIONS)}, got {opts.precision!r}")
    if opts.steps < 0:
        raise UserError(f"--steps must be >= 0 (0: no learning, export the starting density), got {opts.steps}")
    for name in ("batch", "export_draws", "checkpoint_every", "unroll_steps", "dps_steps", "dds_steps", "recon_steps",
                 "recon_cg_iters"):
        if getattr(opts, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    for name in ("num_train", "num_val", "epochs", "select_slices", "refine_dds_steps"):
        if getattr(opts, name) is not None and getattr(opts, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1")
    if not acceleration > 1:
        raise UserError(f"--acceleration must be > 1, got {acceleration:g}")
    if opts.corner_cut and kind != "point":
        raise UserError("--corner-cut applies to point masks only; add --kind point or drop it")
    if not (opts.init_power >= 0 and opts.init_power < float("inf")):
        raise UserError(f"--init-power must be a finite number >= 0, got {opts.init_power}")
    classical = () if opts.refine_classical is None else (("refine_classical", CLASSICAL_SCORES),)
    for name, allowed in (("export", EXPORTS), ("export_sampling", SAMPLINGS), ("export_select", SELECTS),
                          ("refine_split", ("train", "val")), *classical):
        if getattr(opts, name) not in allowed:  # before any loading (a study config's learn: keys land here)
            raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(allowed)}, got {getattr(opts, name)!r}")
    opts.objective_config().validate()  # objective names and ranges, before any loading
    if opts.optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {opts.optimizer!r}")
    if opts.optimizer != "adam" and opts.nested:
        raise UserError("--nested applies to --optimizer adam; the greedy learners are nested by construction")
    if opts.refine_sweeps is not None and opts.refine_sweeps < 0:
        raise UserError(f"--refine-sweeps must be >= 0 (0: off), got {opts.refine_sweeps}")
    if opts.refine_sweeps and kind == "point" and opts.optimizer != "adam":
        raise UserError("--refine-sweeps on point masks reweights the export's density: use it with --optimizer adam")
    if not opts.refine_factor > 1:
        raise UserError(f"--refine-factor must be > 1, got {opts.refine_factor}")
    from .refine import check_min_agree, parse_moves

    parse_moves(opts.refine_moves)
    check_min_agree(opts.refine_min_agree)
    from ..sample.warm_start import check_eta, check_warm_start

    if opts.refine_init == "l1":
        raise UserError("--refine-init takes noise, zero-filled or sense (l1 runs BART per slice: too slow to score moves)")
    check_warm_start(opts.refine_init, opts.refine_sigma_start)
    check_eta(opts.refine_eta)
    if opts.refine_churn is not None and not opts.refine_churn >= 0:
        raise UserError(f"--refine-churn must be >= 0, got {opts.refine_churn}")
    if opts.refine_init != "noise" and opts.refine_sigma_start is None:
        raise UserError(f"--refine-init {opts.refine_init} needs --refine-sigma-start (e.g. 1.0)")
    if opts.refine_propose not in ("gradient", "all"):
        raise UserError(f"--refine-propose must be gradient or all, got {opts.refine_propose!r}")
    for name in ("greedy_top_k", "greedy_adds_per_step", "search_candidates", "search_slices", "refine_slices",
                 "refine_tries", "refine_rings"):
        if getattr(opts, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(opts, name)}")
    if opts.init_density not in ("uniform", "vd"):
        raise UserError(f"--init-density must be uniform or vd, got {opts.init_density!r}")
    weights = parse_flatten(opts.export_flatten)
    if not weights or not all(0.0 <= w <= 1.0 for w in weights):
        raise UserError(f"--export-flatten takes comma-separated weights in [0, 1] such as 0,0.5,1; got {opts.export_flatten!r}")
    if opts.select_dc_weight is not None and not opts.select_dc_weight > 0:
        raise UserError(f"--select-dc-weight must be > 0, got {opts.select_dc_weight}")
    if opts.resume and opts.init_from:
        raise UserError("--resume and --init-from exclude each other; pick one")
