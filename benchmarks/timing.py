"""Timing helper shared by the benchmark scripts (they put this folder on sys.path)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[[], Any], runs: int, digits: int = 2) -> dict:
    """Mean and p95 milliseconds of `fn()` over `runs` calls, after one warm-up call."""
    fn()  # warm-up: first runs allocate arenas and pick kernels
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    return {"mean_ms": round(statistics.fmean(ms), digits), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], digits)}


def latency(fn: Callable[[], Any], runs: int, warmup: int = 5, digits: int = 1) -> dict:
    """p50, p95, max and mean milliseconds of `fn()` over `runs` calls, after `warmup` calls
    (for request latencies, where the tail matters as much as the mean)."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    def at(q: float) -> float:
        return round(ms[int(q * (len(ms) - 1))], digits)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "max_ms": round(ms[-1], digits),
            "mean_ms": round(statistics.fmean(ms), digits)}
