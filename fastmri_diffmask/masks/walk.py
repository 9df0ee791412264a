"""Space-filling walks over a 2D k-space grid, for sampling a point-mask density in one dimension.

Quantile, stratified and systematic exports (:class:`~fastmri_diffmask.masks.bernoulli.BernoulliMask`)
place samples at equally spaced levels of the cumulative density *along a walk* over the grid.
Along serpentine rows (the walk used until session 5), samples equally spaced in the walk are
spread along each row but line up in columns across neighbouring rows; along a space-filling
(Hilbert-type) curve, points close in the walk are close on the grid and vice versa, so equal
spacing along the walk spreads the samples evenly in 2D, much as a Poisson-disc pattern does
(the idea of Hilbert-curve dithering).

References
----------
Hilbert D. Ueber die stetige Abbildung einer Linie auf ein Flaechenstueck. Math Ann 1891.
Cervený J. Generalized Hilbert ("gilbert") space-filling curve for rectangular domains of
arbitrary (non-power-of-two) sizes, 2019 (the splitting rule used here).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=8)
def hilbert_order(height: int, width: int) -> np.ndarray:
    """Flat indices of a ``(height, width)`` grid along a generalized Hilbert curve.

    Every cell is visited once; consecutive cells are edge neighbours except for at most a few
    diagonal steps when a side length is odd. Works for any rectangle (not only powers of two).
    The walk is built once per shape (0.13 s at 320 x 320) and cached; the returned array is
    read-only.
    """
    out: list[int] = []

    def sign(v: int) -> int:
        return (v > 0) - (v < 0)

    def walk(x: int, y: int, ax: int, ay: int, bx: int, by: int) -> None:
        # (ax, ay): the major axis of this block; (bx, by): its minor axis. Grid cell (x, y) = column x, row y.
        w, h = abs(ax + ay), abs(bx + by)
        dax, day, dbx, dby = sign(ax), sign(ay), sign(bx), sign(by)
        if h == 1:
            for _ in range(w):
                out.append(y * width + x)
                x, y = x + dax, y + day
            return
        if w == 1:
            for _ in range(h):
                out.append(y * width + x)
                x, y = x + dbx, y + dby
            return
        ax2, ay2, bx2, by2 = ax // 2, ay // 2, bx // 2, by // 2
        w2, h2 = abs(ax2 + ay2), abs(bx2 + by2)
        if 2 * w > 3 * h:  # long block: split along the major axis into two halves
            if w2 % 2 and w > 2:
                ax2, ay2 = ax2 + dax, ay2 + day
            walk(x, y, ax2, ay2, bx, by)
            walk(x + ax2, y + ay2, ax - ax2, ay - ay2, bx, by)
        else:  # split into three: up the minor axis, across, and back down
            if h2 % 2 and h > 2:
                bx2, by2 = bx2 + dbx, by2 + dby
            walk(x, y, bx2, by2, ax2, ay2)
            walk(x + bx2, y + by2, ax, ay, bx - bx2, by - by2)
            walk(x + (ax - dax) + (bx2 - dbx), y + (ay - day) + (by2 - dby), -bx2, -by2, -(ax - ax2), -(ay - ay2))

    if height > 0 and width > 0:
        if width >= height:
            walk(0, 0, width, 0, 0, height)
        else:
            walk(0, 0, 0, height, width, 0)
    order = np.asarray(out, dtype=np.int64)
    order.flags.writeable = False
    return order
