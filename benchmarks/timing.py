"""Timing shared by the benchmark scripts (run as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time

import numpy as np


def median_ms(fns: dict, repeats: int) -> dict:
    """Median wall time (ms) of each callable, interleaved so all see the same machine load."""
    for fn in fns.values():
        fn()  # warm-up: compilation, caches
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts) * 1e3) for name, ts in times.items()}
