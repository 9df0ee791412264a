"""The samplers' default settings: one table, read by ``recon``, ``compare`` and
:class:`~fastmri_diffmask.sample.model.DiffusionPosteriorModel` alike.

Every value was chosen on validation slices (BENCHMARKS.md: "DPS settings chosen on validation",
"DDS: a Jacobian-free posterior sampler", "Fast warm-started DDS", "Warm-started DPS"); test
slices and held-out subjects only report. A caller leaves an option ``None`` to take its default;
:func:`resolve_sampler_options` fills them in.

=========== ======================================= ==============================================
option      DPS                                     DDS
=========== ======================================= ==============================================
steps       100                                     50
churn       0                                       20 (EDM ``S_churn``)
dc_weight   0.03: one final data-consistency step   0.01: ``mu`` of the per-step CG problem
            (0 = none, the paper's plain DPS)
init        ``"noise"`` (warm start, :mod:`.warm_start`)  ``"noise"``
sigma_start ``None`` = ``sigma_max`` (80)           ``None`` = ``sigma_max``
eta         (not a DPS option)                      ``None``: the deterministic DDS step
=========== ======================================= ==============================================

``cg_iters`` (DDS, 5) and ``zeta`` (DPS, :func:`~fastmri_diffmask.sample.dps.default_zeta` of the
acceleration) have their defaults where they are used.
"""

from __future__ import annotations

#: DDS's settings chosen on the validation split (``benchmarks/tune_dds.py``, BENCHMARKS.md).
DDS_DEFAULTS = {"steps": 50, "dc_weight": 0.01, "cg_iters": 5, "churn": 20.0}

#: Defaults of both samplers' options where a caller leaves them ``None`` (module docstring).
SAMPLER_DEFAULTS = {
    "dps": {"steps": 100, "churn": 0.0, "dc_weight": 0.03, "init": "noise", "sigma_start": None},
    "dds": {"steps": DDS_DEFAULTS["steps"], "churn": DDS_DEFAULTS["churn"], "dc_weight": DDS_DEFAULTS["dc_weight"],
            "init": "noise", "sigma_start": None, "eta": None},
}


def resolve_sampler_options(method: str, **given) -> dict:
    """``method``'s options (:data:`SAMPLER_DEFAULTS` keys) with every ``None`` replaced by its default.

    One exception keeps an explicit request meaningful: ``init="noise"`` with ``sigma_start``
    unset starts from pure noise at ``sigma_max`` (``sigma_start=None``), whatever the default
    starting level, since a noise start at a warm start's low level is nobody's intent.
    Unknown option names raise ``KeyError``.
    """
    defaults = SAMPLER_DEFAULTS[method]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise KeyError(f"{method} has no option(s) {', '.join(unknown)}")
    out = {k: (defaults[k] if given.get(k) is None else given[k]) for k in defaults}
    if "init" in defaults and given.get("init") == "noise" and given.get("sigma_start") is None:
        out["sigma_start"] = None
    return out
