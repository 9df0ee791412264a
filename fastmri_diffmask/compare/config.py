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
from ..learn.api import OPTION_NAMES, LearnMaskOptions
from ..prior import PRECISIONS
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
    name: str                       # zero-filled | bart-l1 | sigpy-l1 | dps | dds
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
    readout_crop: str = "auto"                # auto | off: crop an oversampled readout (io/readout.py)
    precision: str = "float32"                # prior.PRECISIONS: the prior network's arithmetic (dps, dds)
    masks: list[MaskSpec] = dataclasses.field(default_factory=list)
    methods: list[MethodSpec] = dataclasses.field(default_factory=list)
    reference: str | None = None              # mask name the paired differences are taken against
    seed: int = 0
    out: str = "runs/compare"

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


#: Options each reconstructor takes in a method entry (see :class:`~fastmri_diffmask.recon.run.ReconSettings`).
METHOD_OPTIONS = {"zero-filled": (), "bart-l1": ("lamda", "max_iter"), "sigpy-l1": ("lamda", "max_iter"),
                  "dps": ("steps", "zeta", "churn", "batch", "dc_weight", "dc_every", "init", "sigma_start"),
                  "dds": ("steps", "churn", "batch", "dc_weight", "cg_iters", "init", "sigma_start", "eta", "sigma_min")}
#: learn-mask flags a mask's ``learn`` mapping may not set: the study sets them per cell. It may set
#: any :class:`~fastmri_diffmask.learn.api.LearnMaskOptions` field (``-`` or ``_``).
STUDY_LEARN_FLAGS = ("data", "prior", "kind", "acceleration", "out", "device", "readout_crop")


def _mask_spec(m, where: str) -> MaskSpec:
    if not isinstance(m, dict):
        raise UserError(f"{where}: each mask must be a mapping like {{name: equi, type: equispaced_fraction}}, got {m!r}")
    known = {f.name for f in dataclasses.fields(MaskSpec)}
    unknown = sorted(set(m) - known)
    if unknown or "name" not in m or "type" not in m:
        raise UserError(f"{where}: mask {m.get('name', m)!r} needs name and type and takes only "
                        f"{', '.join(sorted(known))}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    spec = MaskSpec(**m)
    spec.name = str(spec.name)
    if not spec.name or any(c in spec.name for c in "/\\*?[]"):
        raise UserError(f"{where}: mask name {spec.name!r} must be non-empty, without / \\ * ? [ ]")
    if isinstance(spec.seeds, bool) or not isinstance(spec.seeds, int) or spec.seeds < 1:
        raise UserError(f"{where}: mask {spec.name!r}: seeds must be an integer >= 1, got {spec.seeds!r}")
    if spec.learn is not None:
        if not isinstance(spec.learn, dict):
            raise UserError(f"{where}: mask {spec.name!r}: learn must be a mapping of learn-mask flags, e.g. {{steps: 250}}")
        flags = {str(k).replace("-", "_") for k in spec.learn}
        fixed = sorted(flags & set(STUDY_LEARN_FLAGS))
        bad = sorted(flags - set(OPTION_NAMES)) if not fixed else []
        if fixed or bad:
            raise UserError(f"{where}: mask {spec.name!r}: learn cannot set {', '.join(fixed or bad)} "
                            + ("(the study sets it)" if fixed else "(not a learn-mask flag; see fastmri-diffmask learn-mask --help)"))
        try:  # values too, so a bad one fails now rather than after hours of work
            LearnMaskOptions.from_flags(spec.learn)
        except UserError as e:
            raise UserError(f"{where}: mask {spec.name!r}: learn: {e}") from None
    return spec


def _method_spec(m, where: str) -> MethodSpec:
    if isinstance(m, str):
        m = {"name": m}
    if not isinstance(m, dict) or "name" not in m:
        raise UserError(f"{where}: each method must be a name or a mapping with 'name', got {m!r}")
    name = m["name"]
    if name not in METHODS:
        raise UserError(f"{where}: unknown method {name!r}; use {', '.join(METHODS)}")
    options = {k: v for k, v in m.items() if k != "name"}
    bad = sorted(set(options) - set(METHOD_OPTIONS[name]))
    if bad:
        allowed = ", ".join(METHOD_OPTIONS[name]) or "no options"
        raise UserError(f"{where}: method {name!r} has unknown option(s) {', '.join(bad)}; it takes {allowed}")
    warm = {k: options.pop(k) for k in ("init", "sigma_start", "eta") if k in options}  # the samplers' warm start
    if "sigma_min" in options:  # DDS's schedule end: "auto" or a number, checked with the warm start
        warm["sigma_min"] = options.pop("sigma_min")
    if warm:
        from ..sample.defaults import resolve_sampler_options
        from ..sample.schedule import check_sigma_min
        from ..sample.warm_start import check_eta, check_warm_start

        try:
            start = resolve_sampler_options(name, init=warm.get("init"), sigma_start=warm.get("sigma_start"))
            check_warm_start(start["init"], start["sigma_start"], check_sigma_min(warm.get("sigma_min", "auto")))
            check_eta(warm.get("eta"))
        except UserError as e:
            raise UserError(f"{where}: method {name!r}: {e}") from None
    for key, value in options.items():  # every other option is a positive number (churn may be 0)
        zero_ok = key in ("churn", "dc_every") or (key == "dc_weight" and name == "dps")  # DPS: 0 = no DC step
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (value >= 0 if zero_ok else value > 0)
        if key in ("steps", "batch", "max_iter", "cg_iters", "dc_every"):
            ok = ok and float(value).is_integer()
        if not ok:
            what = ("a number >= 0" if key == "churn" else "an integer >= 0 (0: off)" if key == "dc_every"
                    else "a positive integer" if key in ("steps", "batch", "max_iter", "cg_iters") else "a positive number")
            raise UserError(f"{where}: method {name!r} option {key} must be {what}, got {value!r}")
    if name == "dps":
        from ..sample.defaults import check_dps_consistency, resolve_sampler_options

        try:
            check_dps_consistency(resolve_sampler_options("dps", dc_weight=options.get("dc_weight"),
                                                          dc_every=options.get("dc_every")))
        except UserError as e:
            raise UserError(f"{where}: method {name!r}: {e}") from None
    return MethodSpec(name=name, options={**options, **warm})


def _accelerations(value, where: str) -> list[float]:
    values = value if isinstance(value, list) else [value]
    try:
        out = [float(r) for r in values if not isinstance(r, bool)]
    except (TypeError, ValueError):
        out = []
    if not out or len(out) != len(values):
        raise UserError(f"{where}: accelerations must be a list of numbers > 1, e.g. [4, 8], got {value!r}")
    if any(not r > 1 for r in out) or len(set(out)) != len(out):
        raise UserError(f"{where}: accelerations must be distinct and > 1, got {value!r}")
    return out


def _num_low_frequencies(value, where: str):
    def ok(n) -> bool:
        return isinstance(n, int) and not isinstance(n, bool) and n >= 0

    if value is None or ok(value):
        return value
    if isinstance(value, dict):
        try:
            out = {float(r): n for r, n in value.items()}
        except (TypeError, ValueError):
            out = None
        if out is not None and all(ok(n) for n in out.values()):
            return out
    raise UserError(f"{where}: num_low_frequencies must be an integer or a mapping R -> integer, e.g. {{4: 16, 8: 10}}, "
                    f"got {value!r}")


def parse_config(raw: dict, base: Path = Path("."), where: str = "config") -> StudyConfig:
    """Validate a config mapping (as read from YAML); relative mask files resolve against ``base``."""
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if "data" not in raw:
        raise UserError(f"{where}: 'data' (a folder of fastMRI h5 files) is required")
    masks, methods = raw.pop("masks", None) or [], raw.pop("methods", None) or []
    if not isinstance(masks, list) or not isinstance(methods, list) or not masks or not methods:
        raise UserError(f"{where}: list at least one mask and one method")
    cfg = StudyConfig(**raw, masks=[_mask_spec(m, where) for m in masks], methods=[_method_spec(m, where) for m in methods])
    cfg.data = str(cfg.data)
    if "accelerations" in raw:
        cfg.accelerations = _accelerations(cfg.accelerations, where)
    cfg.num_low_frequencies = _num_low_frequencies(cfg.num_low_frequencies, where)
    if cfg.num_slices is not None and (isinstance(cfg.num_slices, bool) or not isinstance(cfg.num_slices, int)
                                       or cfg.num_slices < 1):
        raise UserError(f"{where}: num_slices must be an integer >= 1 (or left out for all), got {cfg.num_slices!r}")
    if cfg.make_data is not None and not isinstance(cfg.make_data, dict):
        raise UserError(f"{where}: make_data must be a mapping of make-data flags, e.g. {{size: 128}}")
    bad = sorted(set(cfg.make_data or {}) - {"size", "coils", "snr", "seed", "split", "slices_per_file"})
    if bad:
        raise UserError(f"{where}: make_data takes size, coils, snr, seed, split, slices_per_file; not {', '.join(bad)}")
    if cfg.kind not in ("line", "point"):
        raise UserError(f"{where}: kind must be line or point, got {cfg.kind!r}")
    if cfg.sens_maps not in SENS_CHOICES:
        raise UserError(f"{where}: sens_maps must be one of {', '.join(SENS_CHOICES)}")
    if cfg.readout_crop not in ("auto", "off"):
        raise UserError(f"{where}: readout_crop must be auto or off, got {cfg.readout_crop!r}")
    if cfg.precision not in PRECISIONS:
        raise UserError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {cfg.precision!r}")
    names = [m.name for m in cfg.masks]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: mask names must be unique, got {names}")
    methods = [m.name for m in cfg.methods]
    if len(set(methods)) != len(methods):
        raise UserError(f"{where}: list each method once (its options apply to every cell), got {methods}")
    from ..masks.baselines import MASK_TYPES

    for m in cfg.masks:
        if m.type != LEARNED and m.type not in MASK_TYPES:
            raise UserError(f"{where}: mask {m.name!r} has unknown type {m.type!r}; use {LEARNED} or {', '.join(MASK_TYPES)}")
        if m.type == LEARNED and not (m.file or m.learn is not None):
            raise UserError(f"{where}: learned mask {m.name!r} needs 'file' or 'learn'")
        if m.type != LEARNED and (m.file or m.learn is not None):
            raise UserError(f"{where}: mask {m.name!r} of type {m.type!r} takes no 'file' or 'learn' (learned masks only)")
        if m.file and not Path(m.file).is_absolute():
            # relative to the config's folder when the file is there, else to the working directory
            here = [base / m.file.replace("{R}", f"{r:g}") for r in cfg.accelerations]
            if any(p.exists() for p in here):
                m.file = str((base / m.file).resolve())
    if cfg.reference is None:
        learned = [m.name for m in cfg.masks if m.type == LEARNED]
        cfg.reference = learned[0] if learned else cfg.masks[0].name
    if cfg.reference not in names:
        raise UserError(f"{where}: reference {cfg.reference!r} is not a mask name")
    return cfg
