"""Timing helper shared by the benchmarks (run as ``python bench/<name>.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def sample_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> np.ndarray:
    """Wall times of ``repeats`` calls of fn in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return np.asarray(times) * 1e3


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    """Median wall time of fn in milliseconds, after ``warmup`` untimed calls."""
    return float(np.median(sample_ms(fn, repeats, warmup)))
