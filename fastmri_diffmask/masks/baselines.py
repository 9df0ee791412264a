"""Baseline sampling masks to compare learned masks against.

One entry, :func:`baseline_mask`, draws any of:

* fastMRI's own line masks, used as they are through
  :func:`fastmri.data.subsample.create_mask_for_mask_type`: ``"random"``, ``"equispaced"``,
  ``"equispaced_fraction"``, ``"magic"``, ``"magic_fraction"`` (their sample counts only
  approximate ``W / acceleration``; the exact achieved acceleration is reported);
* ``"vd_random"``: a 1D variable-density random line mask with exactly ``round(W / R)`` lines,
  a fully sampled centre and the other lines drawn without replacement with probability
  proportional to ``(1 - |k|)^power`` (``k`` in [-1, 1] across the phase-encode axis);
* ``"vd_random_2d"``: the 2D analogue over the ky-kz plane, density ``(1 - r)^power`` with ``r``
  the normalised radius (clipped at 0 beyond the inscribed ellipse), exactly ``round(H W / R)``
  points including a ``c x c`` centre;
* ``"poisson_sigpy"`` / ``"poisson_bart"``: Poisson-disc point masks (:func:`sigpy.mri.poisson`,
  variable density; ``bart poisson``, uniform density), both with the ``c x c`` centre; their
  acceleration parameter is searched so the point count is within 0.5% of ``round(H W / R)``
  when the generator allows (few draws: they are slow), and the achieved acceleration is
  reported exactly.

Masks are float32 0/1: ``(W,)`` for line masks (broadcast over the readout rows), ``(H, W)`` for
point masks. The centre uses fastMRI's placement: ``c`` lines starting at ``(W - c + 1) // 2``.

Zero-padded k-space (``acquired``, fastMRI's ``(padding_left, padding_right)``; see
:mod:`~fastmri_diffmask.masks.acquired`): every mask is 0 outside the acquired range and the
centre must lie inside it. fastMRI's five are drawn over all ``W`` columns and then zeroed
outside, exactly as ``VarNetDataTransform`` does; ours (``vd_random*``, Poisson disc) put their
exact budget ``round(N_acquirable / R)`` inside the range. The reported acceleration counts
acquirable entries (:attr:`BaselineMask.acceleration`); fastMRI's convention, all ``W`` columns,
is :attr:`BaselineMask.acceleration_fastmri`.

References
----------
Zbontar J, et al. fastMRI: an open dataset and benchmarks for accelerated MRI. arXiv:1811.08839.
Defazio A. Offset sampling improves deep learning based accelerated MRI reconstructions by
exploiting symmetry. arXiv:1912.01101.
Lustig M, Donoho D, Pauly JM. Sparse MRI. Magn Reson Med 2007;58:1182-1195.
Bridson R. Fast Poisson disk sampling in arbitrary dimensions. SIGGRAPH sketches 2007.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from ..errors import UserError
from .acquired import acquirable, check_inside

__all__ = [
    "BaselineMask",
    "FASTMRI_MASK_TYPES",
    "LINE_MASK_TYPES",
    "POINT_MASK_TYPES",
    "MASK_TYPES",
    "baseline_mask",
    "acceleration_of",
    "centre_mask",
    "vd_random_mask",
    "vd_random_mask_2d",
    "poisson_mask",
]

FASTMRI_MASK_TYPES = ("random", "equispaced", "equispaced_fraction", "magic", "magic_fraction")
LINE_MASK_TYPES = FASTMRI_MASK_TYPES + ("vd_random",)
POINT_MASK_TYPES = ("poisson_sigpy", "poisson_bart", "vd_random_2d")
MASK_TYPES = LINE_MASK_TYPES + POINT_MASK_TYPES


class BaselineMask(NamedTuple):
    """A drawn mask and what it achieves."""

    mask: np.ndarray  #: float32 0/1, ``(W,)`` or ``(H, W)``
    num_low_frequencies: int  #: width of the fully sampled centre (lines, or side of the square)
    acceleration: float  #: exact achieved ``N_acquirable / mask.sum()`` (``mask.size`` unpadded)
    mask_type: str
    acceleration_fastmri: float | None = None  #: fastMRI's convention ``mask.size / mask.sum()``


def acceleration_of(mask, allowed=None) -> float:
    """Achieved acceleration ``N / mask.sum()`` (``inf`` for an empty mask); ``N`` is
    ``allowed.sum()`` (the acquirable entries) when given, else ``mask.size`` (fastMRI's)."""
    m = np.asarray(mask, dtype=np.float64)
    total = m.sum()
    n = m.size if allowed is None else int(np.asarray(allowed, bool).sum())
    return float(n / total) if total > 0 else float("inf")


def _centre_slice(n: int, c: int) -> slice:
    pad = (n - c + 1) // 2
    return slice(pad, pad + c)


def centre_mask(shape: Sequence[int], num_low_frequencies: int) -> np.ndarray:
    """Fully sampled centre: ``c`` lines of ``(W,)`` or a ``c x c`` square of ``(H, W)``."""
    m = np.zeros(tuple(shape), dtype=np.float32)
    m[tuple(_centre_slice(n, num_low_frequencies) for n in shape)] = 1
    return m


def _draw_exact(density: np.ndarray, fixed: np.ndarray, budget: int, seed: int, allowed=None) -> np.ndarray:
    """Add ``budget - fixed.sum()`` samples outside ``fixed`` and inside ``allowed`` (default
    everywhere), without replacement, p ~ density."""
    mask = fixed.astype(np.float32).ravel()
    allowed = np.ones(mask.size, bool) if allowed is None else np.asarray(allowed, bool).ravel()
    p = np.where((mask > 0) | ~allowed, 0.0, np.maximum(density.ravel(), 0.0))
    need = budget - int(mask.sum())
    if need > 0:
        avail = np.count_nonzero(p)
        if avail < need:  # density is zero on too many samples: fill the rest uniformly
            p = np.where((mask > 0) | ~allowed, 0.0, p + 1e-12 * p.max() + 1e-30)
        rng = np.random.default_rng(seed)
        mask[rng.choice(mask.size, size=need, replace=False, p=p / p.sum())] = 1
    return mask.reshape(fixed.shape)


def vd_density(shape: Sequence[int], power: float = 2.0) -> np.ndarray:
    """Unnormalised variable density ``(1 - r)^power`` over a line ``(W,)`` or plane ``(H, W)``,
    ``r`` the distance from the k-space centre ``(n/2)`` normalised per axis (0 beyond ``r = 1``)."""
    axes = [np.abs(np.arange(n) - n / 2) / (n / 2) for n in shape]
    r = axes[0] if len(axes) == 1 else np.sqrt(axes[0][:, None] ** 2 + axes[1][None, :] ** 2)
    return (1 - np.clip(r, 0, 1)) ** power


def vd_random_mask(
    num_cols: int, budget: int, num_low_frequencies: int, power: float = 2.0, seed: int = 0, allowed=None
) -> np.ndarray:
    """1D variable-density random line mask with exactly ``budget`` lines.

    Density ``(1 - |k|)^power`` outside the centre, with ``k = (j - W/2) / (W/2)`` for column ``j``;
    lines only where ``allowed`` (bool ``(W,)``, default all).
    """
    return _draw_exact(vd_density((num_cols,), power), centre_mask((num_cols,), num_low_frequencies), budget, seed,
                       allowed)


def vd_random_mask_2d(
    shape: Sequence[int], budget: int, num_low_frequencies: int, power: float = 2.0, seed: int = 0, allowed=None
) -> np.ndarray:
    """2D variable-density random point mask with exactly ``budget`` points (density ``(1 - r)^power``;
    points only where ``allowed``, bool ``(H, W)``, default all)."""
    h, w = shape
    return _draw_exact(vd_density((h, w), power), centre_mask((h, w), num_low_frequencies), budget, seed, allowed)


def _sigpy_draw(shape, slope: float, c: int, seed: int) -> np.ndarray:
    """One variable-density Poisson-disc draw from sigpy's generator at density slope ``slope``.

    The radius grows linearly with the normalised distance ``r`` from the centre square,
    ``(1 + slope r)`` pixels (scaled per axis for non-square planes); corners ``r >= 1`` are
    dropped, as :func:`sigpy.mri.poisson` does with ``crop_corner=True``. The public function's
    own search over the slope can loop forever when its tolerance is unreachable, so the slope
    is searched here instead.
    """
    from sigpy.mri.samp import _poisson

    h, w = shape
    dy = np.maximum(np.abs(np.arange(h) - h / 2) - c / 2, 0)
    dx = np.maximum(np.abs(np.arange(w) - w / 2) - c / 2, 0)
    r = np.sqrt((dy / max(dy.max(), 1e-9))[:, None] ** 2 + (dx / max(dx.max(), 1e-9))[None, :] ** 2)
    base = 1 + slope * r
    rx = np.maximum(base * w / max(h, w), 1.0)
    ry = np.maximum(base * h / max(h, w), 1.0)
    m = _poisson(w, h, 30, rx, ry, (c, c), seed)
    return (m * (r < 1)).astype(np.float32)


def _bart_draw(shape, accel: float, c: int, seed: int) -> np.ndarray:
    from ..io.bart import run_bart

    h, w = shape
    a = float(np.sqrt(accel))
    m = run_bart(["poisson", "-Y", h, "-Z", w, "-y", f"{a:.6f}", "-z", f"{a:.6f}", "-C", c, "-s", seed])
    return (np.abs(np.asarray(m)).reshape(h, w) > 0).astype(np.float32)  # BART dims (1, Y, Z)


def poisson_mask(
    shape: Sequence[int],
    budget: int,
    num_low_frequencies: int,
    generator: str = "sigpy",
    seed: int = 0,
    rtol: float = 0.005,
    max_evals: int | None = None,
    allowed=None,
) -> np.ndarray:
    """Poisson-disc point mask with a point count as close to ``budget`` as found.

    ``generator="sigpy"``: sigpy's variable-density generator (radius ``1 + s r``, corners
    cropped, as :func:`sigpy.mri.poisson`), searched over the slope ``s``. ``generator="bart"``:
    ``bart poisson`` (uniform density; BART's ``-v`` variable density cannot go below R ~ 7.5 at
    128^2), searched over its acceleration. Each draw keeps the ``c x c`` centre. The search
    (secant steps, then regula falsi inside the bracket) stops when the count is within
    ``rtol * budget`` or after ``max_evals`` draws (default 16 sigpy, 5 BART: ``bart poisson``
    takes ~1 s at 128^2 and ~20 s at 320^2); the draw closest to ``budget`` is returned. Points
    outside ``allowed`` (bool ``(H, W)``, the acquired range) are dropped before counting.
    """
    h, w = (int(d) for d in shape)
    c = num_low_frequencies
    centre = centre_mask((h, w), c)
    keep = np.ones((h, w), np.float32) if allowed is None else np.asarray(allowed, np.float32)
    if generator == "sigpy":
        draw = lambda x: np.maximum(_sigpy_draw((h, w), x, c, seed), centre) * keep  # noqa: E731
        x, floor, max_evals = float(max(h, w)) / 4, 0.0, max_evals or 16
    elif generator == "bart":
        draw = lambda x: np.maximum(_bart_draw((h, w), x, c, seed), centre) * keep  # noqa: E731
        x, floor, max_evals = keep.sum() / budget, 1.0, max_evals or 5
    else:
        raise UserError(f"unknown Poisson generator {generator!r}; use 'sigpy' or 'bart'")
    lo = hi = None  # (parameter, count) with count(lo) > budget > count(hi); count falls as x grows
    best, best_err = None, None
    for _ in range(max_evals):
        m = draw(x)
        n = int(m.sum())
        if best is None or abs(n - budget) < best_err:
            best, best_err = m, abs(n - budget)
        if best_err <= rtol * budget:
            break
        if n > budget:
            lo = (x, n) if lo is None or x > lo[0] else lo
        else:
            hi = (x, n) if hi is None or x < hi[0] else hi
        if lo is not None and hi is not None:
            (x0, n0), (x1, n1) = lo, hi
            t = (n0 - budget) / max(n0 - n1, 1)
            x = x0 + min(max(t, 0.1), 0.9) * (x1 - x0)
        else:  # secant-like step from the count alone: points ~ 1/accel (BART), ~ 1/(1+slope)^2 (sigpy)
            guess = x * n / budget if generator == "bart" else (1 + x) * np.sqrt(n / budget) - 1
            x = guess if guess > floor else 0.5 * (floor + x)
        if hi is not None and lo is not None and abs(hi[0] - lo[0]) < 1e-9 * max(1.0, abs(x)):
            break
    return best


def _resolve_centre(width: int, acceleration: float, num_low_frequencies, center_fraction) -> int:
    if num_low_frequencies is not None and center_fraction is not None:
        raise UserError("pass num_low_frequencies or center_fraction, not both")
    if center_fraction is not None:
        if not 0 < center_fraction <= 1:
            raise UserError(f"center_fraction must be in (0, 1], got {center_fraction}")
        return max(1, round(width * center_fraction))
    if num_low_frequencies is None:
        return max(1, round(width * 0.32 / acceleration))  # fastMRI's pairing: 0.08 at R4, 0.04 at R8
    c = int(num_low_frequencies)
    if c != num_low_frequencies or not 0 <= c <= width:
        raise UserError(f"num_low_frequencies must be an integer in 0..{width}, got {num_low_frequencies}")
    return c


def _fastmri_mask(
    mask_type: str, width: int, height: int, acceleration: float, c: int, seed: int
) -> tuple[np.ndarray, int]:
    from fastmri.data.subsample import create_mask_for_mask_type

    if mask_type in ("equispaced", "magic") and acceleration != int(acceleration):
        raise UserError(f"fastMRI's {mask_type!r} mask needs an integer acceleration, got {acceleration}")
    accel = int(acceleration) if acceleration == int(acceleration) else float(acceleration)
    func = create_mask_for_mask_type(mask_type, [c / width], [accel])
    mask, num_low = func((1, height, width, 1), seed=seed)
    return mask.numpy().reshape(width).astype(np.float32), int(num_low)


def baseline_mask(
    mask_type: str,
    shape: Sequence[int],
    acceleration: float,
    num_low_frequencies: int | None = None,
    center_fraction: float | None = None,
    seed: int = 0,
    power: float = 2.0,
    acquired=None,
) -> BaselineMask:
    """Draw a baseline mask.

    Parameters
    ----------
    mask_type : str
        One of :data:`MASK_TYPES` (see the module docstring).
    shape : sequence of int
        k-space shape; the last axis is W (phase encode). Line masks need ``(W,)`` at least, point
        masks ``(H, W)`` (the ky-kz plane) - e.g. pass ``kspace.shape``.
    acceleration : float
        Target acceleration R > 1; the budget is ``round(N / R)`` samples (N = W or H W).
    num_low_frequencies, center_fraction : optional
        Width of the fully sampled centre as a count or as a fraction of W (at most one). Default
        ``round(0.32 W / R)`` (fastMRI's 8% at R = 4, 4% at R = 8).
    seed : int
        Seed; the same seed gives the same mask (fastMRI's masks are seeded per call).
    power : float
        Exponent of the variable-density masks' density.
    acquired : optional
        The acquired range (fastMRI's ``(padding_left, padding_right)`` columns, or any form
        :func:`~fastmri_diffmask.masks.acquired.acquirable` takes; line masks use its columns):
        the mask is 0 outside, the centre must lie inside, and ``N`` above counts acquirable
        entries. Default: the full grid.

    Returns
    -------
    BaselineMask
        ``(mask, num_low_frequencies, acceleration, mask_type, acceleration_fastmri)`` with the
        exact achieved acceleration over the acquirable entries, ``N_acquirable / mask.sum()``,
        and fastMRI's ``mask.size / mask.sum()``.
    """
    if mask_type not in MASK_TYPES:
        raise UserError(f"unknown mask type {mask_type!r}; use one of {', '.join(MASK_TYPES)}")
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise UserError(f"shape must be a sequence of ints, got {shape!r}") from None
    point = mask_type in POINT_MASK_TYPES
    if len(dims) < (2 if point else 1) or min(dims) < 1:
        raise UserError(f"shape {tuple(shape)} is too small for a {'(H, W)' if point else '(W,)'} {mask_type} mask")
    try:
        acceleration = float(acceleration)
    except (TypeError, ValueError):
        raise UserError(f"acceleration must be a number, got {acceleration!r}") from None
    if not acceleration > 1 or not np.isfinite(acceleration):
        raise UserError(f"acceleration must be > 1, got {acceleration}")
    h, w = (dims[-2] if len(dims) > 1 else 1), dims[-1]
    c = _resolve_centre(w, acceleration, num_low_frequencies, center_fraction)
    allowed = _allowed((h, w) if point else (w,), acquired)
    budget = round(int(allowed.sum()) / acceleration)
    centre_count = c * c if point else c
    if point and c > h:
        raise UserError(f"num_low_frequencies={c} exceeds H={h}; pass a smaller centre")
    check_inside(centre_mask(allowed.shape, c) > 0, allowed)
    if centre_count > budget or budget < 1:
        raise UserError(
            f"acceleration {acceleration:g} leaves {budget} samples but the centre alone takes {centre_count}; "
            "lower the acceleration or num_low_frequencies"
        )
    if mask_type in FASTMRI_MASK_TYPES:
        if centre_count >= round(w / acceleration):  # fastMRI's *_fraction masks divide by (W / R - centre)
            raise UserError(f"fastMRI's {mask_type} mask needs more lines than its centre: R={acceleration:g} leaves "
                            f"{budget} for a centre of {centre_count}; lower the acceleration or num_low_frequencies")
        mask, c = _fastmri_mask(mask_type, w, h, acceleration, c, seed)
        mask = mask * allowed  # as VarNetDataTransform zeroes fastMRI's masks outside the padding
    elif mask_type == "vd_random":
        mask = vd_random_mask(w, budget, c, power=power, seed=seed, allowed=allowed)
    elif mask_type == "vd_random_2d":
        mask = vd_random_mask_2d((h, w), budget, c, power=power, seed=seed, allowed=allowed)
    else:
        mask = poisson_mask((h, w), budget, c, generator=mask_type.split("_")[1], seed=seed, allowed=allowed)
    mask = np.ascontiguousarray(mask, dtype=np.float32)
    return BaselineMask(mask, int(c), acceleration_of(mask, allowed), mask_type, acceleration_of(mask))


def _allowed(grid: tuple[int, ...], acquired) -> np.ndarray:
    """The acquirable entries of a ``(W,)`` line or ``(H, W)`` point grid; a line mask takes the
    columns of a ky-kz rectangle or of an ``(H, W)`` boolean grid."""
    if len(grid) == 1 and acquired is not None:
        if hasattr(acquired, "shape") and np.ndim(acquired) == 2:
            acquired = np.asarray(acquired).any(axis=0)
        elif not hasattr(acquired, "shape") and len(acquired) == 2 and np.ndim(acquired[0]) == 1:
            acquired = tuple(acquired[1])
    return acquirable(grid, acquired)
