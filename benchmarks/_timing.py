"""Wall-time helper shared by the micro-benchmarks (``bench_cg.py``, ``bench_precision.py``)."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmups: int = 2) -> float:
    """Median wall time of ``repeats`` calls of ``fn()`` after ``warmups`` untimed calls."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
