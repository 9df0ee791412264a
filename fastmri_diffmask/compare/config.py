"""Study configs for ``fastmri-diffmask compare`` (YAML), validated into one dataclass.

A config names the data, the prior, the accelerations, the masks (learned, from a file, or any
baseline; several seeds for random ones) and the reconstructors. See ``recon_configs/*.yaml``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..recon.run import METHODS, SENS_CHOICES

LEARNED = "learned_diffusion"


@dataclasses.dataclass
class MaskSpec:
    name: str                       # label in tables and figures
    type: str                       # baseline type or learned_diffusion
    seeds: int = 1                  # draws for random masks (results averaged per slice)
    file: str | None = None         # learned mask file ({R} is replaced by the acceleration)
    learn: dict[str, Any] | None = None  # learn-mask flags for learning on the fly


@dataclasses.dataclass
class MethodSpec:
    name: str                       # zero-filled | bart-l1 | sigpy-l1 | dps
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # steps, zeta, churn, lamda, max_iter


@dataclasses.dataclass
class StudyConfig:
    data: str
    split: str = "test"
    make_data: dict[str, Any] | None = None   # make-data flags if `data` must be generated
    num_slices: int | None = None
    prior: str = "default"
    kind: str = "line"
    accelerations: list[float] = dataclasses.field(default_factory=lambda: [4.0, 8.0])
    num_low_frequencies: dict[float, int] | int | None = None
    sens_maps: str = "espirit-bart"
    masks: list[MaskSpec] = dataclasses.field(default_factory=list)
    methods: list[MethodSpec] = dataclasses.field(default_factory=list)
    reference: str | None = None              # mask name the paired differences are taken against
    seed: int = 0
    out: str = "runs/compare"
    train_split: str = "train"
    val_split: str = "val"

    def nlf(self, acceleration: float) -> int | None:
        if isinstance(self.num_low_frequencies, dict):
            for r, n in self.num_low_frequencies.items():
                if abs(float(r) - acceleration) < 1e-9:
                    return int(n)
            return None
        return self.num_low_frequencies


def load_config(path: str | Path) -> StudyConfig:
    """Read and validate a study config; one-line :class:`UserError` on anything wrong."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config {path} does not exist; see recon_configs/ for examples")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path} must hold a YAML mapping")
    return parse_config(raw, base=path.parent, where=str(path))


def parse_config(raw: dict, base: Path = Path("."), where: str = "config") -> StudyConfig:
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "data" not in raw:
        raise UserError(f"{where}: 'data' (a folder of fastMRI h5 files) is required")
    try:
        masks = [MaskSpec(**m) for m in raw.pop("masks", [])]
        methods = [MethodSpec(name=m) if isinstance(m, str) else MethodSpec(name=m["name"], options={k: v for k, v in m.items() if k != "name"})
                   for m in raw.pop("methods", [])]
    except TypeError as e:
        raise UserError(f"{where}: bad mask or method entry ({e})") from None
    cfg = StudyConfig(**raw, masks=masks, methods=methods)
    cfg.accelerations = [float(r) for r in cfg.accelerations]
    if not cfg.masks or not cfg.methods:
        raise UserError(f"{where}: list at least one mask and one method")
    if any(r <= 1 for r in cfg.accelerations):
        raise UserError(f"{where}: accelerations must be > 1, got {cfg.accelerations}")
    if cfg.kind not in ("line", "point"):
        raise UserError(f"{where}: kind must be line or point, got {cfg.kind!r}")
    if cfg.sens_maps not in SENS_CHOICES:
        raise UserError(f"{where}: sens_maps must be one of {', '.join(SENS_CHOICES)}")
    for m in cfg.methods:
        if m.name not in METHODS:
            raise UserError(f"{where}: unknown method {m.name!r}; use {', '.join(METHODS)}")
    names = [m.name for m in cfg.masks]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: mask names must be unique, got {names}")
    from ..masks.baselines import MASK_TYPES

    for m in cfg.masks:
        if m.type != LEARNED and m.type not in MASK_TYPES:
            raise UserError(f"{where}: mask {m.name!r} has unknown type {m.type!r}; use {LEARNED} or {', '.join(MASK_TYPES)}")
        if m.type == LEARNED and not (m.file or m.learn is not None):
            raise UserError(f"{where}: learned mask {m.name!r} needs 'file' or 'learn'")
        if m.file and not Path(m.file).is_absolute():
            m.file = str((base / m.file).resolve()) if (base / m.file.replace("{R}", "4")).exists() else m.file
    if cfg.reference is None:
        learned = [m.name for m in cfg.masks if m.type == LEARNED]
        cfg.reference = learned[0] if learned else cfg.masks[0].name
    if cfg.reference not in names:
        raise UserError(f"{where}: reference {cfg.reference!r} is not a mask name")
    return cfg
