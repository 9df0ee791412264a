"""Run a comparison study cell by cell: resumable, shardable, one JSON file per finished cell.

A cell is (acceleration, mask, seed, method) over all study slices. Each finished cell is written
atomically to ``OUT/cells/<cell>.json`` with its per-slice scores, so a rerun skips it and
independent processes (``--shard i/n``, or torchrun ranks) can split the cells; ``merge`` then
reads every cell file (:mod:`fastmri_diffmask.compare.report`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from ..utils import atomic_path
from .config import LEARNED, MaskSpec, MethodSpec, StudyConfig


class Cell(NamedTuple):
    acceleration: float
    mask: MaskSpec
    seed: int
    method: MethodSpec

    @property
    def id(self) -> str:
        return f"R{self.acceleration:g}_{self.mask.name}_s{self.seed}_{self.method.name}"


def all_cells(cfg: StudyConfig) -> list[Cell]:
    return [Cell(r, m, s, meth) for r in cfg.accelerations for m in cfg.masks for s in range(m.seeds) for meth in cfg.methods]


def shard_cells(cells: list[Cell], shard: str | None) -> list[Cell]:
    """Cells of shard ``"i/n"`` (round robin), all cells when ``shard`` is None."""
    if not shard:
        return cells
    try:
        i, n = (int(v) for v in shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise UserError(f"--shard {shard!r} must be i/n with 0 <= i < n, e.g. 0/4") from None
    return cells[i::n]


def ensure_data(cfg: StudyConfig) -> None:
    """Generate the embedded data with make-data when the config asks for it and it is missing."""
    root = Path(cfg.data)
    if cfg.make_data is not None and not (root / cfg.split).is_dir():
        from ..simulate import write_embedded_dataset

        opts = {"split": "train,val,test", **cfg.make_data}
        write_embedded_dataset(root, splits=opts.pop("split"), **opts)


def learned_mask_path(cfg: StudyConfig, spec: MaskSpec, acceleration: float, out: Path, device="auto",
                      progress: bool = True) -> Path:
    """The learned mask file for ``spec`` at ``acceleration``, learning it first if needed (with
    learn-mask's progress bars unless ``progress`` is False or the mask's ``learn`` says ``quiet``)."""
    if spec.file:
        path = Path(spec.file.replace("{R}", f"{acceleration:g}"))
        if not path.is_file():
            raise UserError(f"mask file {path} for mask {spec.name!r} does not exist")
        return path
    path = out / "masks" / f"{spec.name}_R{acceleration:g}.safetensors"
    if path.is_file():
        return path
    from ..learn.api import learn_mask_file

    try:
        options = learn_options(cfg, spec, acceleration, progress)
        return learn_mask_file(cfg.data, path, acceleration, cfg.prior, cfg.kind, device=device,
                               **dataclasses.asdict(options))
    except UserError as e:
        raise UserError(f"learning mask {spec.name!r} at R={acceleration:g} failed: {e}") from None


def learn_options(cfg: StudyConfig, spec: MaskSpec, acceleration: float, progress: bool = True):
    """The :class:`~fastmri_diffmask.learn.options.LearnMaskOptions` the study learns ``spec`` with:
    the study's seed, readout grid and centre width, overridden by the mask's ``learn`` keys."""
    from ..learn.options import LearnMaskOptions

    study = {"seed": cfg.seed, "readout_crop": cfg.readout_crop}  # the study's readout grid, as its data
    if not progress:
        study["quiet"] = True
    if cfg.nlf(acceleration) is not None:
        study["num_low_frequencies"] = cfg.nlf(acceleration)  # else learn-mask's default = study_nlf
    return LearnMaskOptions.from_flags(study, spec.learn or {})  # the mask's learn flags win


def check_learned_masks(cfg: StudyConfig, cells: list[Cell], out: Path, prior_sha: str | None) -> None:
    """Refuse to reuse a mask already learned into ``out/masks`` when the config (or a changed
    learn-mask default) now gives other options, or the study's prior differs from the one it was
    learned with: one line naming the file and the first difference. Mask files written before
    options were recorded (``options`` in the metadata) are taken as they are."""
    from ..learn.options import LearnMaskOptions
    from ..masks.file import load_mask_file
    from ..prior.weights import prior_path
    from ..utils import file_sha256

    seen = set()
    for cell in cells:
        spec, r = cell.mask, cell.acceleration
        path = out / "masks" / f"{spec.name}_R{r:g}.safetensors"
        if spec.type != LEARNED or spec.file or (spec.name, r) in seen or not path.is_file():
            continue
        seen.add((spec.name, r))
        meta = load_mask_file(path).metadata
        stored = meta.get("options")
        if stored is None:
            continue
        now = json.loads(json.dumps(learn_options(cfg, spec, r).resolved(cfg.kind, r).record()))
        defaults = json.loads(json.dumps(LearnMaskOptions().resolved(cfg.kind, r).record()))
        stored = {**defaults, **stored}  # an option added since the file was written: its default
        diff = [k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k)]
        sha = meta.get("prior", {}).get("sha256")
        want = prior_sha or file_sha256(prior_path(cfg.prior))
        if not diff and sha and sha != want:
            diff, stored, now = ["prior sha256"], {"prior sha256": sha[:12]}, {"prior sha256": want[:12]}
        if diff:
            key = diff[0]
            raise UserError(f"{path} was learned with {key} = {stored.get(key)!r}, the config now gives "
                            f"{now.get(key)!r}; use another --out (or delete the mask file) to learn it again")


def make_cell_mask(cfg: StudyConfig, cell: Cell, shape: tuple[int, int], out: Path, device="auto", acquired=None):
    """The mask of a cell (shared by its methods): learned (from its file, learned first if
    needed) or a baseline drawn with seed ``cfg.seed * 1000 + cell.seed``; 0 outside the
    ``acquired`` columns (the study slices' common range, fastMRI's padding)."""
    from ..masks.select import make_mask

    spec, r = cell.mask, cell.acceleration
    if spec.type == LEARNED:
        return make_mask(LEARNED, shape, r, mask_file=learned_mask_path(cfg, spec, r, out, device), acquired=acquired)
    # line baselines stay valid comparators in point studies (they are 2D masks too)
    return make_mask(spec.type, shape, r, study_nlf(cfg, r, shape), seed=cfg.seed * 1000 + cell.seed,
                     acquired=acquired)


def study_nlf(cfg: StudyConfig, acceleration: float, shape: tuple[int, int]) -> int:
    """The centre width every mask of the study uses at ``acceleration``: the config's, else the
    learning default (10 of 128 lines at R = 8, 20 at R = 4), so all masks share one centre."""
    from ..learn.loop import default_num_low_frequencies

    n = cfg.nlf(acceleration)
    return int(n) if n is not None else default_num_low_frequencies(shape[-1], acceleration)


def masks_to_learn(cfg: StudyConfig, cells: list[Cell], out: Path) -> list[tuple[MaskSpec, float]]:
    """The ``(mask, acceleration)`` pairs of ``cells`` whose learned mask is not yet on disk,
    once each, in cell order: the long step before the first reconstruction."""
    todo = []
    for cell in cells:
        spec, r = cell.mask, cell.acceleration
        if spec.type == LEARNED and not spec.file and (spec, r) not in todo \
                and not (out / "masks" / f"{spec.name}_R{r:g}.safetensors").is_file():
            todo.append((spec, r))
    return todo


def check_mask_files(cfg: StudyConfig, cells: list[Cell]) -> None:
    """Refuse up front, before any work, when a learned mask's file is missing at some R."""
    for cell in cells:
        if cell.mask.type == LEARNED and cell.mask.file:
            path = Path(cell.mask.file.replace("{R}", f"{cell.acceleration:g}"))
            if not path.is_file():
                raise UserError(f"mask file {path} for mask {cell.mask.name!r} at R={cell.acceleration:g} does not exist; "
                                "learn it with `fastmri-diffmask learn-mask` or use learn: {} in the config")


def run_study(cfg: StudyConfig, out: Path, shard: str | None = None, device="auto", progress: bool = True,
              figure_slices: int = 2) -> list[Path]:
    """Run (or resume) the cells of ``shard``; returns the cell files now present.

    Every mask the remaining cells need is made (or learned) before the first reconstruction,
    so a bad mask setting fails in seconds rather than after hours of reconstructions.
    """
    from tqdm import tqdm

    from ..dataset import load_slices
    from ..recon.run import DIFFUSION_METHODS, ReconSettings, reconstruct_slices, sens_maps_for

    cells = shard_cells(all_cells(cfg), shard)
    cell_dir = out / "cells"
    todo = [c for c in cells if not (cell_dir / f"{c.id}.json").is_file()]
    prior_sha = prior_sha256(cfg, cells)
    check_finished_cells(cfg, [c for c in cells if c not in todo], cell_dir, prior_sha)
    if not todo:
        if progress:
            print(f"all {len(cells)} cells are finished; nothing to run")
        return sorted(cell_dir.glob("*.json")) if cell_dir.is_dir() else []
    check_mask_files(cfg, todo)
    check_learned_masks(cfg, todo, out, prior_sha)
    ensure_data(cfg)
    data = load_slices(cfg.data, cfg.split, num_slices=cfg.num_slices,  # a mixed folder: its most common size
                       sens_backend="file" if cfg.sens_maps == "file" else "none", readout_crop=cfg.readout_crop,
                       size="most-common")
    kspace = data.kspace.numpy()
    target = data.target.numpy()
    shape = kspace.shape[-2:]
    learn = masks_to_learn(cfg, todo, out)
    if learn:  # minutes each: one bar over them, learn-mask's own bars below it
        with tqdm(total=len(learn), desc="compare: learning masks", unit="mask", disable=not progress) as bar:
            for spec, r in learn:
                bar.set_postfix_str(f"{spec.name} R={r:g}")
                learned_mask_path(cfg, spec, r, out, device, progress=progress)
                bar.update(1)
    masks = {}
    for cell in todo:
        key = (cell.acceleration, cell.mask.name, cell.seed)
        if key not in masks:
            masks[key] = make_cell_mask(cfg, cell, shape, out, device, acquired=data.acquired_range)
    prior = None
    if any(c.method.name in DIFFUSION_METHODS for c in todo):
        from ..prior.weights import load_prior

        prior = load_prior(cfg.prior, device=device, precision=cfg.precision)
    maps_cache: dict = {}
    bar = tqdm(total=len(todo), desc="compare", unit="cell", disable=not progress)
    if len(todo) < len(cells):
        bar.write(f"skipping {len(cells) - len(todo)} finished cells")
    for cell in todo:
        bar.set_postfix_str(cell.id)
        key = (cell.acceleration, cell.mask.name, cell.seed)
        m = masks[key]
        if key not in maps_cache:
            maps_cache.clear()  # one mask's maps at a time keeps memory flat
            maps_cache[key] = np.stack([
                sens_maps_for(kspace[i] * m.mask, data.sens_maps[i].numpy() if cfg.sens_maps == "file" else None,
                              m.num_low_frequencies, cfg.sens_maps, device) for i in range(len(kspace))])
        s = recon_settings(cfg, cell, device, prior)
        t0 = time.time()
        recon = reconstruct_slices(kspace, m.mask, maps_cache[key], m.acceleration, s)
        seconds = (time.time() - t0) / len(recon)
        write_cell(cell_dir, cell, m, recon, target, data, seconds, figure_slices, cell_settings(cfg, cell, prior_sha))
        bar.update(1)
    bar.close()
    return sorted(cell_dir.glob("*.json")) if cell_dir.is_dir() else []


#: ReconSettings fields a method entry may set.
_SETTING_KEYS = ("lamda", "max_iter", "steps", "zeta", "churn", "batch", "dc_weight", "dc_every", "cg_iters",
                 "init", "sigma_start", "eta", "sigma_min")


def recon_settings(cfg: StudyConfig, cell: Cell, device="auto", prior=None):
    """The :class:`~fastmri_diffmask.recon.run.ReconSettings` a cell reconstructs with."""
    from ..recon.run import ReconSettings

    return ReconSettings(method=cell.method.name, device=device, sens=cfg.sens_maps, seed=cfg.seed, prior=prior,
                         **{k: v for k, v in cell.method.options.items() if k in _SETTING_KEYS})


def prior_sha256(cfg: StudyConfig, cells: list[Cell]) -> str | None:
    """sha256 of the prior file the study's diffusion cells use (``None`` when none does)."""
    from ..prior.weights import prior_path
    from ..recon.run import DIFFUSION_METHODS
    from ..utils import file_sha256

    return file_sha256(prior_path(cfg.prior)) if any(c.method.name in DIFFUSION_METHODS for c in cells) else None


def cell_settings(cfg: StudyConfig, cell: Cell, prior_sha: str | None) -> dict:
    """What a cell's numbers depend on, defaults resolved (the samplers' from
    :mod:`~fastmri_diffmask.sample.defaults`; the prior by ``prior_sha``, :func:`prior_sha256`),
    stored with the cell so that a resumed study never mixes cells made with other settings."""
    s = recon_settings(cfg, cell)
    name = cell.method.name
    method = {}
    if name in ("bart-l1", "sigpy-l1"):
        method = {"lamda": s.lamda, "max_iter": s.max_iter}
    elif name == "dps":
        method = {**s.sampler_options(), "zeta": s.zeta, "prior_sha256": prior_sha}
    elif name == "dds":
        method = {**s.sampler_options(), "cg_iters": s.cg_iters, "prior_sha256": prior_sha}
    if name in ("dps", "dds") and cfg.precision != "float32":  # float32 cells keep the settings they always had
        method["precision"] = cfg.precision
    return {"method": name, **method, "mask": dataclasses.asdict(cell.mask), "sens_maps": cfg.sens_maps,
            "seed": cfg.seed}


def check_finished_cells(cfg: StudyConfig, finished: list[Cell], cell_dir: Path, prior_sha: str | None) -> None:
    """Refuse to resume when a finished cell was made with other settings than the config's now
    (a changed option, default, mask or prior): one line naming the cell and the first difference.
    Cells written before settings were recorded are taken as they are."""
    for cell in finished:
        stored = json.loads((cell_dir / f"{cell.id}.json").read_text()).get("settings")
        if stored is None:
            continue
        now = json.loads(json.dumps(cell_settings(cfg, cell, prior_sha)))  # JSON round trip: tuples -> lists
        if stored != now:
            key = next(k for k in sorted(set(stored) | set(now)) if stored.get(k) != now.get(k))
            raise UserError(f"{cell_dir / (cell.id + '.json')} was made with {key} = {stored.get(key)!r}, the config "
                            f"now gives {now.get(key)!r}; use another --out (or delete the cell) to rerun it")


def write_cell(cell_dir: Path, cell: Cell, m, recon: np.ndarray, target: np.ndarray, data, seconds: float,
               figure_slices: int, settings: dict | None = None) -> Path:
    from ..metrics import score
    from ..recon.run import center_crop

    recon = center_crop(recon, target.shape[-2:])
    rows = []
    for i in range(len(recon)):
        rows.append({"acceleration": cell.acceleration, "mask": cell.mask.name, "mask_type": cell.mask.type,
                     "seed": cell.seed, "method": cell.method.name, "fname": data.fnames[i], "slice": data.slice_nums[i],
                     "achieved_acceleration": round(m.acceleration, 4), "num_low_frequencies": m.num_low_frequencies,
                     "seconds": round(seconds, 3), **{k: round(float(v), 6) for k, v in score(target[i], recon[i]).items()}})
    with atomic_path(cell_dir / f"{cell.id}.npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, recon=recon[:figure_slices].astype(np.float16), mask=m.mask.astype(np.uint8))
    path = cell_dir / f"{cell.id}.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"cell": cell.id, "rows": rows, **({"settings": settings} if settings else {})}))
    return path
