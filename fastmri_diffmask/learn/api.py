"""Learn a line or point sampling mask and write it as a mask file: the library behind
``fastmri-diffmask learn-mask`` and the ``learn`` entries of ``compare`` study configs.

:func:`learn_mask_file` starts a :class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask` from a
density, optionally trains its logits on the ``train`` split (Adam through an objective of
:mod:`fastmri_diffmask.learn.objective`) or runs a greedy learner instead, exports an exact-budget
mask judged on the ``val`` split, refines it by moving lines (:mod:`fastmri_diffmask.learn.refine`),
and writes a mask file (:mod:`fastmri_diffmask.masks.file`) with its provenance plus a PNG of the learned probabilities and mask next to it (:func:`preview_path`).
Its options are the fields of :class:`~.options.LearnMaskOptions`, named like the ``learn-mask`` flags.
Bad input raises a one-line :class:`~fastmri_diffmask.errors.UserError`, before any output.

The CLI parser takes its flags' defaults from :class:`LearnMaskOptions` and the study-config
checks its names (:data:`OPTION_NAMES`); this module never imports the CLI.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .loop import LearnConfig, default_num_low_frequencies, export_mask, learn_mask, learn_nested
from .checks import check_inputs, parse_flatten
from .options import KINDS, OPTIMIZERS, OPTION_NAMES, REFINE_DDS_STEPS, LearnMaskOptions, default_refine_classical  # noqa: F401


def preview_path(out: str | Path) -> Path:
    """Where :func:`learn_mask_file` writes the PNG for mask file ``out`` (``<out>.png``)."""
    out = Path(out)
    return out.with_suffix(".png") if out.suffix != ".png" else out.with_name(out.name + ".preview.png")


def _data_id(root: str | Path, data) -> str:
    h = hashlib.sha256(json.dumps([data.fnames, data.slice_nums, list(data.kspace.shape)]).encode()).hexdigest()[:12]
    return f"{Path(root).resolve().name}/train[{data.kspace.shape[0]}]:{h}"


def _check_prior(prior, h: int, w: int) -> None:
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


def learn_mask_file(data: str | Path, out: str | Path, acceleration: float, prior: str = "default",
                    kind: str = "line", *, device="auto", **options) -> Path:
    """Learn a sampling mask on ``data`` and write it to ``out`` (a mask file) plus a PNG preview.

    Parameters
    ----------
    data : str or Path
        Folder with ``train/`` and ``val/`` fastMRI multi-coil h5 files.
    out : str or Path
        Output mask file (``.safetensors``); its checkpoints ``<out>.ckpt*`` are removed on success.
    acceleration : float
        Target acceleration ``R`` (> 1; budget ``round(N / R)``).
    prior : str
        ``"default"`` (the shipped prior) or a prior weights file.
    kind : {"line", "point"}
        One probability per phase-encode column, or per ``(ky, kz)`` point.
    device : str or torch.device
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    **options
        Fields of :class:`LearnMaskOptions`, converted by :meth:`LearnMaskOptions.from_flags`.

    Returns
    -------
    Path
        ``out``. The preview is at :func:`preview_path` ``(out)``; :func:`summary` reads the result back.

    Raises
    ------
    UserError
        Bad options, data, prior, ``init_from`` mask or checkpoint; nothing is written then.
    """
    from ..dataset import load_slices
    from ..masks.file import load_mask_file, save_mask_file
    from ..masks.plot import plot_mask
    from ..prior.weights import load_prior, resolve_precision, set_precision
    from ..utils import resolve_device

    opts, out, acceleration = LearnMaskOptions.from_flags(options), Path(out), float(acceleration)
    check_inputs(opts, out, acceleration, kind)
    device = resolve_device(device)
    prior_module = load_prior(prior, device=device)
    precision = resolve_precision(opts.precision, prior_module)
    set_precision(prior_module, precision)
    init_logits = None
    if opts.init_from:
        src = load_mask_file(opts.init_from)
        init_logits = torch.from_numpy(np.nan_to_num(src.logits, posinf=0.0, neginf=0.0))
    train = load_slices(data, "train", num_slices=opts.num_train, spread=True, readout_crop=opts.readout_crop,
                        size="most-common")  # a mask has one size: the one most training slices have
    val = load_slices(data, "val", num_slices=opts.num_val, readout_crop=opts.readout_crop,
                      size=tuple(train.kspace.shape[-2:]))
    h, w = train.kspace.shape[-2:]
    _check_prior(prior_module, h, w)
    shape = (w,) if kind == "line" else (h, w)
    if init_logits is None and opts.init_density == "vd":
        from ..masks.baselines import vd_density
        from ..masks.bernoulli import density_logits

        init_logits = density_logits(vd_density(shape, opts.init_power))
    if init_logits is not None and tuple(init_logits.shape) != shape:
        raise UserError(f"--init-from mask has shape {tuple(init_logits.shape)} but the data need {shape}; use a mask learned at this size")
    nlf = opts.num_low_frequencies
    if nlf is None:  # nested masks need a centre that fits the coarsest level (4R)
        nlf = default_num_low_frequencies(w, 4 * acceleration if opts.nested else acceleration)
    obj = opts.objective_config()
    cfg = LearnConfig(objective=obj, steps=opts.steps, epochs=opts.epochs, batch=opts.batch, lr=opts.lr,
                      lr_schedule=opts.lr_schedule, tau=opts.tau, tau_end=opts.tau_end, seed=opts.seed,
                      val_every=opts.val_every, dps_every=opts.dps_every, dps_steps=opts.dps_steps, dds_steps=opts.dds_steps,
                      export=opts.export, export_draws=opts.export_draws, export_sampling=opts.export_sampling,
                      export_select=opts.export_select, select_slices=opts.select_slices,
                      select_dc_weight=opts.select_dc_weight, export_flatten=parse_flatten(opts.export_flatten),
                      checkpoint_every=opts.checkpoint_every)
    ckpt = out.with_name(out.name + ".ckpt")
    t0 = time.time()
    torch.manual_seed(opts.seed)
    common = dict(config=cfg, corner_cut=opts.corner_cut, progress=not opts.quiet, device=device,
                  acquired=train.acquired_range)  # zero-filled columns are never sampled
    order, nested = None, None
    if opts.optimizer != "adam":
        mask, binary, history, order = _learn_greedy(prior_module, train, kind, acceleration, nlf, obj, opts, device)
    elif opts.nested:
        accs = [a for a in (4 * acceleration, 2 * acceleration, acceleration)
                if round((h * w if kind == "point" else w) / a) >= (nlf * nlf if kind == "point" else nlf)]
        mask, binary, order, hists = learn_nested(prior_module, train, val, kind, accs, nlf, checkpoint=ckpt,
                                                  resume=opts.resume, **common)
        history, nested = hists[-1], accs
    else:
        mask, history = learn_mask(prior_module, train, val, kind, acceleration, nlf, init_logits=init_logits,
                                   checkpoint=ckpt, resume=opts.resume, **common)
        binary = export_mask(mask, history, opts.export)
    refined = None
    resolved = opts.resolved(kind, acceleration)
    judge_steps, classical = resolved.refine_dds_steps, resolved.refine_classical  # the refinement judge
    sweeps = resolved.refine_sweeps
    if sweeps and kind == "point":  # reweight the density's rings, export as the judge's candidate did
        from .greedy_search import TrainingScorer
        from .refine_density import refine_point_density

        score = TrainingScorer(prior_module, train, "point", mask.shape, opts.refine_slices,
                               judge_steps, opts.seed, device=torch.device(device),
                               init=opts.refine_init, sigma_start=opts.refine_sigma_start, eta=opts.refine_eta,
                               churn=opts.refine_churn, classical=classical)
        density, offset = _chosen_density(mask, history)
        binary, refined = refine_point_density(score, mask, density, offset=offset, rings=opts.refine_rings,
                                               factor=opts.refine_factor, sweeps=sweeps,
                                               anisotropy=opts.refine_anisotropy, progress=not opts.quiet)
    elif sweeps:
        import dataclasses

        from .refine import loss_gradient, refine_line_mask

        gradient = None
        if opts.refine_propose == "gradient":  # the differentiable DDS objective proposes the moves
            dds_obj = dataclasses.replace(obj, objective="dds")
            gradient = lambda m: loss_gradient(prior_module, train, m, dds_obj, seed=opts.seed, device=device)  # noqa: E731
        scored = train if opts.refine_split == "train" else val.subset(list(range(min(opts.select_slices, len(val.kspace)))))
        binary, refined = refine_line_mask(prior_module, scored, binary, mask.fixed, ~mask.excluded,
                                           moves=opts.refine_moves, sweeps=sweeps,
                                           num_slices=opts.refine_slices, dds_steps=judge_steps,
                                           seed=opts.seed, gradient=gradient, tries=opts.refine_tries, progress=not opts.quiet,
                                           device=device, init=opts.refine_init, sigma_start=opts.refine_sigma_start,
                                           eta=opts.refine_eta, churn=opts.refine_churn,
                                           classical=classical, min_agree=opts.refine_min_agree)
        if order is not None:  # a nested / greedy order: a moved line takes its new column's place
            order = _swap_moves(order, refined["moves"])
    meta = {
        "prior": {"id": getattr(prior_module, "prior_id", "denoiser"), "sha256": getattr(prior_module, "sha256", None),
                  "source": getattr(prior_module, "source", str(prior)),
                  **({"precision": precision} if precision != "float32" else {})},
        "data": _data_id(data, train), "num_train": int(train.kspace.shape[0]),
        "num_val": int(val.kspace.shape[0]), "seed": opts.seed, "objective": cfg.to_dict(),
        "optimizer": opts.optimizer,
        "steps": cfg.total_steps(train.kspace.shape[0]) if opts.optimizer == "adam" else history.get("steps"),
        "best": history.get("best"),
        "validation": history.get("val", []), "wall_seconds": round(time.time() - t0, 1),
        # the grid the mask was learned on: rows after --readout-crop (line masks do not depend on them)
        "readout": {"crop": opts.readout_crop, "rows": int(h), "columns": int(w)},
        "options": resolved.record(),  # compare checks a reused mask file against these
    }
    if "export" in history:  # sampled/best: the candidates' validation scores and the winner
        meta["export_choice"] = {k: history["export"][k] for k in ("scores", "chosen", "labels", "chosen_label")
                                 if k in history["export"]}
    if nested:
        meta["nested_accelerations"] = nested
    if refined is not None:
        meta["refine"] = refined
    if opts.optimizer != "adam":
        meta["greedy"] = {k: history[k] for k in ("additions", "reconstructions", "slices", "top_k", "adds_per_step",
                                                    "candidates", "dds_steps", "mask_form_forced") if k in history}
    if opts.init_from:
        meta["init_from"] = str(opts.init_from)
    else:
        meta["init_density"] = {"density": opts.init_density, "power": opts.init_power}
    mf = mask.to_mask_file(mask=binary, order=order, metadata=meta)
    mf.metadata["export"] = opts.export
    save_mask_file(out, mf)
    plot_mask(mf, preview_path(out))
    for p in out.parent.glob(out.name + ".ckpt*"):
        p.unlink()
    return out


def _chosen_density(mask, history: dict):
    """``(density, offset)`` behind the export's chosen candidate (:func:`.validate.choose_sampled`);
    a random draw or the top-k export is refined as systematic sampling at offset 0.5."""
    export = history.get("export", {})
    offset = export.get("chosen_offset")
    return mask.flattened(export.get("chosen_weight", 0.0)), 0.5 if offset is None else offset


def _swap_moves(order, moves) -> np.ndarray:
    """The priority order after the refinement's moves: each ``from`` column's entry becomes the
    ``to`` column and vice versa (so the nested masks of coarser accelerations keep their sizes)."""
    order = np.asarray(order, dtype=np.int64).copy()
    for move in moves:
        i, j = np.flatnonzero(order == move["from"]), np.flatnonzero(order == move["to"])
        order[i] = move["to"]
        if j.size:
            order[j] = move["from"]
    return order


def _learn_greedy(prior, train, kind, acceleration, nlf, obj, opts, device):
    """``(BernoulliMask of the sets, 0/1 mask, history, order)`` of a greedy learner."""
    from .greedy import build_mask, greedy_mask
    from .greedy_search import greedy_search_mask

    common = dict(corner_cut=opts.corner_cut, progress=not opts.quiet, device=device, seed=opts.seed)
    if opts.optimizer == "greedy":
        binary, history = greedy_mask(prior, train, kind, acceleration, nlf, obj, batch=opts.batch,
                                      top_k=opts.greedy_top_k, adds_per_step=opts.greedy_adds_per_step, **common)
    else:
        binary, history = greedy_search_mask(prior, train, kind, acceleration, nlf, candidates=opts.search_candidates,
                                             num_slices=opts.search_slices, dds_steps=opts.dds_steps, **common)
    mask = build_mask(train, kind, acceleration, nlf, corner_cut=opts.corner_cut)
    with torch.no_grad():  # the file's density: the chosen entries (fixed ones are +inf anyway)
        mask.logits.copy_(torch.where(binary > 0.5, 6.0, -6.0))
    return mask, binary, history, np.asarray(history["order"], dtype=np.int64)


def summary(out: str | Path) -> dict:
    """The one-line report of a mask file written by :func:`learn_mask_file` (``learn-mask`` prints
    it as JSON): paths, samples, achieved acceleration, centre width, best validation, wall time."""
    from ..masks.file import load_mask_file

    mf = load_mask_file(out)
    return {"out": str(out), "png": str(preview_path(out)), "num_sampled": mf.num_sampled,
            "acceleration": round(float(mf.achieved_acceleration), 3), "num_low_frequencies": mf.num_low_frequencies,
            "best": mf.metadata.get("best"), "wall_seconds": mf.metadata["wall_seconds"]}
