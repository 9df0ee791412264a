"""The samplers' default settings: one table, read by ``recon``, ``compare`` and
:class:`~fastmri_diffmask.sample.model.DiffusionPosteriorModel` alike.

Every value was chosen on validation slices (BENCHMARKS.md: "DPS settings chosen on validation",
"DDS: a Jacobian-free posterior sampler", "Fast warm-started DDS", "Warm-started DPS"); test
slices and held-out subjects only report. A caller leaves an option ``None`` to take its default;
:func:`resolve_sampler_options` fills them in.

=========== ============================================ ==========================================
option      DPS                                          DDS
=========== ============================================ ==========================================
steps       100                                          15
churn       40 (EDM ``S_churn``; per step capped at      0
            ``sqrt 2 - 1``)
dc_weight   0.03: ``mu`` of the data-consistency steps   0.01: ``mu`` of the per-step CG problem
            (with ``dc_every`` 0: of one final step;
            0 there = none, the paper's plain DPS)
dc_every    5: a data-consistency step every 5 steps,    (DDS enforces the data every step)
            the last included (0 = only the final step)
init        ``"sense"`` (:mod:`.warm_start`)             ``"sense"``
sigma_start 0.5 (scaled units, image 99th percentile 1)  0.5
eta         (not a DPS option)                           1: fresh noise each step (0 = the
                                                         deterministic DDS step)
sigma_min   0.002 (EDM's; not an entry-point option)     ``"auto"``: 0.005 at R <= 4 rising to 0.02
                                                         at R >= 12 (:func:`~.dds.default_sigma_min`)
=========== ============================================ ==========================================

Both samplers start from a SENSE estimate plus noise at ``sigma_start`` (Chung, Sim and Ye,
"Come-closer-diffuse-faster", CVPR 2022) rather than pure noise at ``sigma_max = 80``. On 6
validation slices of three subjects (``runs/prior_corpus`` val, BENCHMARKS.md "Warm-started DPS")
this DPS scores +1.6 / +1.8 dB over DPS-100 from noise at R = 4 / 8 (session 8), and the
15-step DDS +0.8 dB over DDS-50 from noise at a third of its cost. Enforcing the data every 5
steps during sampling (as score-MRI does; Chung and Ye, Med Image Anal 2022) added +1.16 / +0.11
dB on the same slices (session 9). Ending DDS's schedule at a noise level that rises with the
acceleration instead of EDM's 0.002 added +0.2-0.7 dB at R = 6-12 and tied at R = 4 (session 16;
BENCHMARKS.md "Where the DDS schedule ends"). The earlier defaults stay one flag set away: session 8's DPS
``dc_every: 0`` (``recon --dc-every 0``); DPS from noise ``init: noise, churn: 0, dc_every: 0``
(``recon --init noise --churn 0 --dc-every 0``); DDS-50 from noise ``init: noise, steps: 50,
churn: 20, eta: 0, sigma_min: 0.002``; session 8's DDS ``sigma_min: 0.002``. An explicit ``init: noise`` alone starts at
``sigma_max`` (:func:`resolve_sampler_options`).

The network runs in float32 unless a caller asks for ``precision="bfloat16"``
(:func:`~fastmri_diffmask.prior.weights.set_precision`; ``recon --precision``): about 2x faster on
CPUs with bfloat16 units at the same quality, but not the default, so that results reproduce to
the bit on every machine.

``cg_iters`` (DDS, 5) and ``zeta`` (DPS, :func:`~fastmri_diffmask.sample.dps.default_zeta` of the
acceleration) have their defaults where they are used.
"""

from __future__ import annotations

from ..errors import UserError

#: The library defaults of :func:`~fastmri_diffmask.sample.dds.dds_reconstruct`: DDS from noise as tuned on
#: the validation split in session 4 (``benchmarks/tune_dds.py``); the entry points use SAMPLER_DEFAULTS.
DDS_DEFAULTS = {"steps": 50, "dc_weight": 0.01, "cg_iters": 5, "churn": 20.0}

#: Defaults of both samplers' options where a caller leaves them ``None`` (module docstring).
SAMPLER_DEFAULTS = {
    "dps": {"steps": 100, "churn": 40.0, "dc_weight": 0.03, "dc_every": 5, "init": "sense", "sigma_start": 0.5},
    "dds": {"steps": 15, "churn": 0.0, "dc_weight": DDS_DEFAULTS["dc_weight"], "init": "sense", "sigma_start": 0.5,
            "eta": 1.0, "sigma_min": "auto"},
}


def resolve_sampler_options(method: str, **given) -> dict:
    """``method``'s options (:data:`SAMPLER_DEFAULTS` keys) with every ``None`` replaced by its default.

    One exception keeps an explicit request meaningful: ``init="noise"`` with ``sigma_start``
    unset starts from pure noise at ``sigma_max`` (``sigma_start=None``), whatever the default
    starting level, since a noise start at a warm start's low level is nobody's intent.
    ``dc_every=0`` (no consistency during sampling) comes back as ``None``, the value
    :func:`~fastmri_diffmask.sample.dps.dps_reconstruct` takes for it. Unknown option names
    raise ``KeyError``.
    """
    defaults = SAMPLER_DEFAULTS[method]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise KeyError(f"{method} has no option(s) {', '.join(unknown)}")
    out = {k: (defaults[k] if given.get(k) is None else given[k]) for k in defaults}
    if "init" in defaults and given.get("init") == "noise" and given.get("sigma_start") is None:
        out["sigma_start"] = None
    if out.get("dc_every") == 0:
        out["dc_every"] = None
    return out


def check_dps_consistency(options: dict) -> None:
    """Resolved DPS options (:func:`resolve_sampler_options`): data consistency during sampling
    (``dc_every``) needs a weight ``dc_weight > 0``; a one-line :class:`UserError` otherwise.
    ``dc_weight`` 0 (no data-consistency step at all, the paper's plain DPS) needs ``dc_every`` 0."""
    weight = options.get("dc_weight")
    if options.get("dc_every") and not (weight is not None and weight > 0):
        raise UserError(f"dc_weight must be > 0 while dc_every is on (default {SAMPLER_DEFAULTS['dps']['dc_every']}), "
                        f"got {weight!r}; set dc_every to 0 for DPS with one final step (dc_weight 0: none)")
