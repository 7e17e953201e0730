"""Timing helpers every benchmark shares: interleaved rounds, so the machine's noise hits all paths alike."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds of samples in seconds."""
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e3, ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1e3


def interleaved(paths: dict[str, Callable[[int], object]], n: int, warmup: int = 2) -> dict[str, list[float]]:
    """Wall-clock seconds of each `fn(i)`: every path once per round, `n` timed rounds after `warmup` untimed ones."""
    samples: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(warmup + n):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn(i)
            if i >= warmup:
                samples[name].append(time.perf_counter() - start)
    return samples
