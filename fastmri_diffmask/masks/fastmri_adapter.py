"""Learned masks as a fastMRI mask type.

:class:`LearnedDiffusionMaskFunc` is a :class:`fastmri.data.subsample.MaskFunc`: it plugs into
fastMRI's ``VarNetDataTransform``, ``UnetDataTransform`` and ``apply_mask`` unchanged, and keeps
fastMRI's contract exactly:

* ``mask_func(shape, offset=None, seed=None) -> (mask, num_low_frequencies)``, ``mask`` a
  float32 torch tensor shaped ``[1, ..., W, 1]`` for a line mask (``W = shape[-2]``, the
  columns, i.e. the phase-encode direction), or ``[1, ..., H, W, 1]`` for a point mask
  (``H, W = shape[-3], shape[-2]``: each slice's k-space plane is treated as the ky-kz plane of a
  3D acquisition, as the paper's "3D" point masks do);
* all randomness comes from ``self.rng`` and runs under :func:`fastmri.data.subsample.temp_seed`,
  so the per-volume seed of fastMRI's transforms (``seed = tuple(map(ord, fname))``) gives all
  slices of a volume the same mask, and ``fastmri.pl_modules.data_module.worker_init_fn``
  (which reseeds ``transform.mask_func.rng`` per worker) decorrelates workers;
* the override point is fastMRI's own: :meth:`LearnedDiffusionMaskFunc.sample_mask` returns the
  fully sampled centre and the learned outer samples separately; ``MaskFunc.__call__`` combines
  them.

Modes
-----
``"fixed"``
    The file's deterministic binary mask (exactly its budget). Uses no randomness.
``"sampled"``
    A fresh draw per call (per volume with fastMRI's seeding): independent Bernoulli draws from
    the stored probabilities outside the centre, *conditioned on their sum* being exactly the
    file's budget (conditional Bernoulli / conditional Poisson sampling, drawn exactly by a
    sequential algorithm; for very large point masks, where that costs too much, weighted
    sampling without replacement proportional to the probabilities is used instead). The
    centre of ``num_low_frequencies`` is always fully sampled and contiguous.

Width mismatch rule
-------------------
If the data's width (and, for point masks, height) differs from the file's, with
``on_width_mismatch="resample"`` (the default):

1. the probability profile is resampled onto the new grid by linear interpolation in normalised
   k-space coordinates ``u = (i - N // 2) / N`` (so DC maps to DC and the edges to the edges);
2. the centre keeps its *fraction*: ``num_low_frequencies_new = round(num_low_frequencies *
   N_new / N_file)`` (at least 1 when the file has a centre), placed at fastMRI's centre
   position ``(N - c + 1) // 2``;
3. the budget becomes ``round(N_new / R)`` samples in total (``round(H * W / R)`` for point
   masks), centre included;
4. fixed mode takes the top-k outer samples of the resampled probabilities (ties broken towards
   the centre, then by index); sampled mode draws the outer samples as above.

``on_width_mismatch="refuse"`` raises a one-line :class:`~fastmri_diffmask.errors.UserError`.
In every case the centre is kept whole, even where it alone exceeds the budget.

Zero-padded k-space
-------------------
fastMRI's transforms zero every mask outside ``[padding_left, padding_right)`` after drawing it
(``MaskFunc`` never sees the padding). A file learned on padded data records its acquired range
(``acquired`` metadata) and is 0 outside it; on a grid of the file's shape that range is used.
``acquired=(padding_left, padding_right)`` gives the range of the data served instead (needed on
a resampled grid, or for data padded unlike the training data): no sample is placed outside it,
the budget counts acquirable entries, ``round(N_acquirable / R)``, and the centre must lie inside.

Acceleration
------------
fastMRI passes ``accelerations`` to every mask type. A requested acceleration that differs from
the file's is refused unless the file holds a nested ordering (``order``), in which case the
mask at ``R`` is the centre plus the highest-priority outer samples of that ordering up to
``round(N / R)`` (identical to :meth:`MaskFile.mask_at` when the ordering lists the centre
first); sampled mode at that ``R`` re-budgets the stored probabilities to ``round(N / R)``. With
several accelerations one is chosen per call from ``self.rng``, as fastMRI does.
``center_fractions`` is accepted for fastMRI compatibility and ignored: the centre is the file's.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from fastmri.data import subsample as _subsample
from fastmri.data.subsample import MaskFunc

from ..errors import UserError
from .acquired import acquirable, check_inside
from .conditional import _EXACT_SAMPLING_LIMIT, _conditional_bernoulli  # noqa: F401 (re-exported)
from .file import MaskFile, centre_slices, load_mask_file

__all__ = [
    "LearnedDiffusionMaskFunc",
    "create_mask_for_mask_type",
    "available_mask_types",
    "MASK_TYPE",
    "FASTMRI_MASK_TYPES",
    "ENV_MASK",
    "ENV_MASK_MODE",
    "ENTRY_POINT_GROUP",
]

#: The name this package registers in fastMRI's mask-type vocabulary.
MASK_TYPE = "learned_diffusion"
#: The five names fastMRI's own ``create_mask_for_mask_type`` knows.
FASTMRI_MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
#: Environment variable naming the mask file when none is passed (``--learned_mask``).
ENV_MASK = "FASTMRI_DIFFMASK_MASK"
#: Environment variable naming the mode when none is passed (``--learned_mask_mode``).
ENV_MASK_MODE = "FASTMRI_DIFFMASK_MASK_MODE"
#: importlib.metadata entry point group through which mask types are discovered.
ENTRY_POINT_GROUP = "fastmri.mask_types"

MODES = ("fixed", "sampled")
WIDTH_RULES = ("resample", "refuse")

# fastMRI's factory as it was before anyone (``run-fastmri``) patched it.
_FASTMRI_FACTORY = getattr(
    _subsample.create_mask_for_mask_type, "fastmri_original", _subsample.create_mask_for_mask_type
)



class _Plan:
    """What a call needs for one (grid, acceleration): centre, scores, budget (cached)."""

    def __init__(self, centre, fixed, probabilities, num_outer, num_low_frequencies, allowed):
        self.centre = centre  # bool, grid shape
        self.allowed = allowed  # bool, grid shape: inside the acquired range
        self.fixed = fixed  # bool, outer samples of the fixed mask (centre excluded)
        self.probabilities = probabilities  # float64, grid shape (centre entries unused)
        self.num_outer = num_outer  # samples to draw outside the centre
        self.num_low_frequencies = num_low_frequencies


class LearnedDiffusionMaskFunc(MaskFunc):
    """fastMRI mask function serving a learned mask file.

    Parameters
    ----------
    mask_file : str, Path or MaskFile
        A mask file written by ``fastmri-diffmask learn-mask`` (see
        :mod:`fastmri_diffmask.masks.file`), or an already loaded :class:`MaskFile`.
    mode : {"fixed", "sampled"}
        ``"fixed"``: the file's binary mask; ``"sampled"``: a budget-exact draw from the file's
        probabilities per call (see the module docstring).
    center_fractions : sequence of float, optional
        Accepted for compatibility with fastMRI's factory and ignored: the fully sampled centre
        is the file's ``num_low_frequencies``.
    accelerations : sequence of float, optional
        Accelerations to serve (default: the file's). Any that differs from the file's needs a
        nested ordering in the file; otherwise a one-line :class:`UserError` is raised.
    allow_any_combination : bool
        Accepted for compatibility with fastMRI; has no effect.
    seed : int, optional
        Seed of ``self.rng`` (fastMRI's ``MaskFunc`` seed).
    on_width_mismatch : {"resample", "refuse"}
        What to do when the data grid differs from the file's (see the module docstring).
    kind : {"line", "point"}, optional
        Require this mask kind; ``None`` accepts both.
    acquired : optional
        The acquired range of the data served, e.g. ``(padding_left, padding_right)`` (any form
        :func:`~fastmri_diffmask.masks.acquired.acquirable` takes); default the file's own range
        on its grid, the full grid otherwise (see "Zero-padded k-space" in the module docstring).

    Notes
    -----
    ``offset`` (fastMRI's equispaced offset) is ignored: learned masks have no offset. The
    object is picklable, so it works with DataLoader workers started by ``fork`` or ``spawn``.
    """

    def __init__(
        self,
        mask_file: str | os.PathLike | MaskFile,
        mode: str = "fixed",
        center_fractions: Optional[Sequence[float]] = None,
        accelerations: Optional[Sequence[float]] = None,
        allow_any_combination: bool = False,
        seed: Optional[int] = None,
        on_width_mismatch: str = "resample",
        kind: Optional[str] = None,
        acquired=None,
    ):
        if isinstance(mask_file, MaskFile):
            mf, source = mask_file, "mask"
        else:
            mf, source = load_mask_file(mask_file), str(mask_file)
        if mode not in MODES:
            raise UserError(f"learned mask mode {mode!r} is not one of {', '.join(MODES)}")
        if on_width_mismatch not in WIDTH_RULES:
            raise UserError(f"on_width_mismatch {on_width_mismatch!r} is not one of {', '.join(WIDTH_RULES)}")
        if kind is not None and mf.kind != kind:
            raise UserError(f"{source} holds a {mf.kind} mask, but a {kind} mask is needed here; learn a {kind} mask")
        if accelerations is None or len(accelerations) == 0:
            accelerations = [mf.acceleration]
        accelerations = [float(r) for r in accelerations]
        for r in accelerations:
            if not r > 1:
                raise UserError(f"acceleration {r:g} must be > 1")
            if abs(r - mf.acceleration) > 1e-6 and mf.order is None:
                raise UserError(
                    f"{source} was learned at R={mf.acceleration:g} and holds no nested ordering, "
                    f"but R={r:g} was requested; pass --accelerations {mf.acceleration:g} or learn a mask at R={r:g}"
                )
        centre_fraction = mf.num_low_frequencies / mf.shape[-1]
        # fastMRI's bookkeeping: one (centre fraction, acceleration) pair per acceleration
        super().__init__([centre_fraction] * len(accelerations), accelerations, False, seed)
        self.requested_center_fractions = list(center_fractions) if center_fractions is not None else None
        self.mask_file = mf
        self.source = source
        self.mode = mode
        self.on_width_mismatch = on_width_mismatch
        self.acquired = acquired
        self._plans: dict = {}

    # ------------------------------------------------------------------ fastMRI override point
    def sample_mask(
        self, shape: Sequence[int], offset: Optional[int]
    ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """Return ``(centre_mask, outer_mask, num_low_frequencies)`` for k-space ``shape``.

        fastMRI's override point: ``MaskFunc.__call__`` runs this under ``temp_seed`` and returns
        ``max(centre_mask, outer_mask)``. Both masks are float32 tensors shaped as
        :meth:`reshape_mask` says; ``outer_mask`` never touches the centre.
        """
        if len(self.accelerations) > 1:
            _, acceleration = self.choose_acceleration()
        else:
            acceleration = self.accelerations[0]
        grid = self._grid(shape)
        plan = self._plan(grid, float(acceleration))
        if self.mode == "fixed":
            outer = plan.fixed
        else:
            outer = np.zeros(plan.centre.size, bool)
            free = ~plan.centre.ravel() & plan.allowed.ravel()
            outer[free] = _conditional_bernoulli(plan.probabilities.ravel()[free], plan.num_outer, self.rng)
            outer = outer.reshape(grid)
        return (
            self.reshape_mask(plan.centre, shape),
            self.reshape_mask(outer, shape),
            plan.num_low_frequencies,
        )

    def reshape_mask(self, mask: np.ndarray, shape: Sequence[int]) -> torch.Tensor:
        """``[1, ..., W, 1]`` for line masks (fastMRI's), ``[1, ..., H, W, 1]`` for point masks."""
        if self.mask_file.kind == "line":
            return super().reshape_mask(np.asarray(mask), shape)
        mask_shape = [1] * len(shape)
        mask_shape[-3], mask_shape[-2] = shape[-3], shape[-2]
        return torch.from_numpy(np.asarray(mask).reshape(*mask_shape).astype(np.float32))

    # ------------------------------------------------------------------ helpers
    def _grid(self, shape: Sequence[int]) -> tuple[int, ...]:
        if self.mask_file.kind == "line":
            return (int(shape[-2]),)
        return (int(shape[-3]), int(shape[-2]))

    def _plan(self, grid: tuple[int, ...], acceleration: float) -> _Plan:
        key = (grid, round(acceleration, 9))
        if key not in self._plans:
            self._plans[key] = self._make_plan(grid, acceleration)
        return self._plans[key]

    def _make_plan(self, grid: tuple[int, ...], acceleration: float) -> _Plan:
        mf = self.mask_file
        same_r = abs(acceleration - mf.acceleration) <= 1e-6
        probs = mf.probabilities.astype(np.float64)
        if not same_r:  # nested ordering gives the priority of every sample
            score = np.zeros(mf.mask.size)
            score[mf.order] = 1.0 - np.arange(mf.order.size) / mf.order.size
            score = score.reshape(mf.shape)
        else:
            score = probs
        if grid == mf.shape:
            nlf = (mf.num_low_frequencies,) * len(grid)
        else:
            if self.on_width_mismatch == "refuse":
                raise UserError(
                    f"data k-space is {'x'.join(map(str, grid))} but {self.source} is a "
                    f"{'x'.join(map(str, mf.shape))} mask; learn a mask on data of this size or use on_width_mismatch='resample'"
                )
            probs = _resample(probs, grid)
            score = _resample(score, grid)
            nlf = tuple(
                max(int(round(mf.num_low_frequencies * n / n0)), 1 if mf.num_low_frequencies else 0)
                for n, n0 in zip(grid, mf.shape)
            )
        centre = np.zeros(grid, bool)
        if nlf[0]:
            centre[tuple(centre_slices((n,), c)[0] for n, c in zip(grid, nlf))] = True
        if self.acquired is not None:
            allowed = acquirable(grid, self.acquired)
        else:
            allowed = mf.acquirable if grid == mf.shape else np.ones(grid, bool)
        check_inside(centre, allowed, f"the centre of {self.source}")
        as_file = grid == mf.shape and same_r and np.array_equal(allowed, mf.acquirable)
        size = int(allowed.sum())
        total = mf.num_sampled if as_file else int(round(size / acceleration))
        num_outer = int(np.clip(total - centre.sum(), 0, size - centre.sum()))
        if as_file:
            fixed = (mf.mask > 0) & ~centre
        else:
            fixed = _top_k(score, centre | ~allowed, num_outer)
        probs = np.where(allowed, np.clip(probs, 0.0, 1.0), 0.0)
        return _Plan(centre, fixed, probs, num_outer, int(nlf[-1]), allowed)

    def __repr__(self) -> str:
        mf = self.mask_file
        return (
            f"{type(self).__name__}({self.source!r}, mode={self.mode!r}, kind={mf.kind!r}, "
            f"shape={mf.shape}, accelerations={list(self.accelerations)})"
        )


def _resample(values: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation onto ``grid`` in normalised k-space coordinates, axis by axis."""
    out = np.asarray(values, np.float64)
    for axis, n_new in enumerate(grid):
        n_old = out.shape[axis]
        if n_old == n_new:
            continue
        src = (np.arange(n_new) - n_new // 2) / n_new * n_old + n_old // 2
        out = np.apply_along_axis(lambda v: np.interp(src, np.arange(n_old), v), axis, out)
    return out


def _top_k(score: np.ndarray, centre: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest-scoring samples outside ``centre`` (the blocked entries: centre and
    padding); ties go towards the centre."""
    grid = score.shape
    idx = np.indices(grid).reshape(len(grid), -1)
    dist = sum((i - n // 2) ** 2 for i, n in zip(idx, grid))
    flat_index = np.arange(score.size)
    order = np.lexsort((flat_index, dist, -score.ravel()))
    order = order[~centre.ravel()[order]]
    out = np.zeros(score.size, bool)
    out[order[:k]] = True
    return out.reshape(grid)


# ---------------------------------------------------------------------- factory and discovery
def _entry_points() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_mask_types() -> tuple[str, ...]:
    """All mask type names: fastMRI's five, then those registered in the ``fastmri.mask_types``
    entry point group (``learned_diffusion`` always included), sorted."""
    names = set(_entry_points()) | {MASK_TYPE}
    return FASTMRI_MASK_TYPES + tuple(sorted(names - set(FASTMRI_MASK_TYPES)))


def create_mask_for_mask_type(
    mask_type_str: str,
    center_fractions: Sequence[float],
    accelerations: Sequence[float],
    learned_mask: str | os.PathLike | MaskFile | None = None,
    mode: Optional[str] = None,
    **kw,
) -> MaskFunc:
    """fastMRI's ``create_mask_for_mask_type`` with ``learned_diffusion`` and plugins added.

    Parameters
    ----------
    mask_type_str : str
        ``"learned_diffusion"``, one of fastMRI's five names (handed to fastMRI's own factory
        unchanged), or a name another package registered in the ``fastmri.mask_types`` entry
        point group (its object is called as ``obj(center_fractions, accelerations, **kw)``).
    center_fractions, accelerations : sequence
        As in fastMRI.
    learned_mask : path or MaskFile, optional
        The mask file for ``learned_diffusion``; default ``$FASTMRI_DIFFMASK_MASK``.
    mode : {"fixed", "sampled"}, optional
        For ``learned_diffusion``; default ``$FASTMRI_DIFFMASK_MASK_MODE`` or ``"fixed"``.
    **kw
        Further :class:`LearnedDiffusionMaskFunc` arguments (``seed``, ``on_width_mismatch``,
        ``kind``) or a plugin's keyword arguments.

    Raises
    ------
    UserError
        One line, for a missing mask file, an unknown name (listing the known ones), or any
        other bad argument. ``UserError`` subclasses ``ValueError``, which fastMRI raises.
    """
    if mask_type_str == MASK_TYPE:
        path = learned_mask if learned_mask is not None else os.environ.get(ENV_MASK)
        if not path:
            raise UserError(
                f"mask type {MASK_TYPE!r} needs a mask file: pass learned_mask=FILE "
                f"(--learned_mask FILE) or set the environment variable {ENV_MASK}"
            )
        mode = mode or os.environ.get(ENV_MASK_MODE) or "fixed"
        return LearnedDiffusionMaskFunc(
            path, mode=mode, center_fractions=center_fractions, accelerations=accelerations, **kw
        )
    if mask_type_str not in FASTMRI_MASK_TYPES:
        plugins = _entry_points()
        if mask_type_str in plugins:
            return plugins[mask_type_str].load()(center_fractions, accelerations, **kw)
    extra = sorted(set(kw) | {k for k, v in (("learned_mask", learned_mask), ("mode", mode)) if v is not None})
    if extra and mask_type_str in FASTMRI_MASK_TYPES:
        raise UserError(f"options {', '.join(extra)} apply only to mask type {MASK_TYPE!r}, not {mask_type_str!r}")
    try:
        return _FASTMRI_FACTORY(mask_type_str, center_fractions, accelerations)
    except ValueError as e:
        if str(e) == f"{mask_type_str} not supported":
            raise UserError(
                f"unknown mask type {mask_type_str!r}; choose one of: {', '.join(available_mask_types())}"
            ) from None
        raise UserError(" ".join(str(e).split())) from None


#: fastMRI's own factory, which this one hands fastMRI's names to (kept when ``run-fastmri``
#: installs this factory in place of fastMRI's).
create_mask_for_mask_type.fastmri_original = _FASTMRI_FACTORY  # type: ignore[attr-defined]
