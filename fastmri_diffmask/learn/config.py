"""Settings of the mask-learning loop (:mod:`.loop`) and of its export (:mod:`.validate`)."""

from __future__ import annotations

import dataclasses
import json
import math

from ..errors import UserError
from .objective import ObjectiveConfig

#: With ``val_every=None``, validate once an epoch but not more often than every this many steps.
MIN_VAL_EVERY = 25
EXPORTS = ("topk", "quantile", "sampled", "best")
#: How the export's candidates come from a density (:func:`.validate.candidate_masks`).
SAMPLINGS = ("systematic", "stratified", "independent")
#: Judges of the export's candidates on the validation slices (:func:`.validate.choose_sampled`).
SELECTS = ("proxy", "dps", "dds")


@dataclasses.dataclass
class LearnConfig:
    """Loop settings. ``steps`` counts Adam iterations (``epochs``, if set, overrides it as
    ``epochs * ceil(n_train / batch)``; ``steps=0`` learns nothing and exports from the starting
    density with the same candidates and judge: the baseline a learned mask is measured against); ``tau`` anneals geometrically to ``tau_end``; ``lr``
    is constant or cosine-decayed; ``val_every`` in steps (default one epoch but at least
    :data:`MIN_VAL_EVERY` steps, 0 = never).
    ``export="sampled"`` keeps the best of ``export_draws`` exact-budget candidates per density
    (``export_sampling``: systematic offsets, stratified or independent draws); ``export="best"``
    the best of those, the top-k and the quantile masks, by the validation proxy or by DPS / DDS
    PSNR (``export_select``, ``dps_steps``, ``dds_steps``)."""

    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    steps: int = 250
    epochs: int | None = None
    batch: int = 2
    lr: float = 0.01
    lr_schedule: str = "constant"
    tau: float = 1.0
    tau_end: float | None = None
    seed: int = 0
    val_every: int | None = None
    val_quantiles: tuple = (0.1, 0.5, 0.9)
    val_objective: ObjectiveConfig | None = None
    val_export: str = "topk"
    dps_every: int = 0
    dps_steps: int = 50
    dds_steps: int = 25
    export: str = "topk"
    export_draws: int = 8
    export_sampling: str = "stratified"
    export_select: str = "proxy"
    export_flatten: tuple = (0.0,)
    select_slices: int | None = 4
    select_dc_weight: float | None = None
    checkpoint_every: int = 50

    def validate(self, n_train: int) -> "LearnConfig":
        self.objective.validate()
        if self.val_objective is not None:
            self.val_objective.validate()
        if self.batch < 1 or self.steps < 0 or (self.epochs is not None and self.epochs < 1):
            raise UserError("steps must be >= 0 (0: export the starting density), epochs and batch >= 1")
        if not self.lr > 0 or not self.tau > 0 or (self.tau_end is not None and not self.tau_end > 0):
            raise UserError("lr and the Gumbel temperatures must be > 0")
        if self.lr_schedule not in ("constant", "cosine"):
            raise UserError(f"unknown lr schedule {self.lr_schedule!r}; use constant or cosine")
        if self.export_sampling not in SAMPLINGS:
            raise UserError(f"unknown export sampling {self.export_sampling!r}; use one of {', '.join(SAMPLINGS)}")
        if self.export_select not in SELECTS:
            raise UserError(f"unknown export selection {self.export_select!r}; use one of {', '.join(SELECTS)}")
        if not self.export_flatten or not all(0.0 <= float(w) <= 1.0 for w in self.export_flatten):
            raise UserError(f"export flattening weights must lie in [0, 1], got {list(self.export_flatten)}")
        if self.select_dc_weight is not None and not self.select_dc_weight > 0:
            raise UserError(f"the selection's data-consistency weight must be > 0, got {self.select_dc_weight}")
        if self.export not in EXPORTS or self.val_export not in ("topk", "quantile"):
            raise UserError(f"unknown export {self.export!r}; use one of {', '.join(EXPORTS)}")
        if n_train < 1:
            raise UserError("no training slices; check --data and --num-train")
        return self

    def total_steps(self, n_train: int) -> int:
        return self.epochs * math.ceil(n_train / self.batch) if self.epochs else self.steps

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))
