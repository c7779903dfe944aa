"""Pure functions that turn timings into speedup, efficiency and serial fractions."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def speedup(sequential_s: float, parallel_s: float) -> float:
    """How many times faster the parallel run was: T1 / Tp."""
    if parallel_s <= 0:
        raise ValueError(f"parallel time must be > 0, got {parallel_s}")
    return sequential_s / parallel_s


def efficiency(speedup_value: float, workers: int) -> float:
    """Speedup per worker: S / p (1.0 is perfect scaling)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return speedup_value / workers


def karp_flatt(speedup_value: float, workers: int) -> float | None:
    """Karp-Flatt experimentally determined serial fraction e = (1/S - 1/p) / (1 - 1/p).

    Undefined (None) for a single worker.
    """
    if workers <= 1:
        return None
    if speedup_value <= 0:
        raise ValueError(f"speedup must be > 0, got {speedup_value}")
    return (1 / speedup_value - 1 / workers) / (1 - 1 / workers)


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of a set of measurements."""

    median: float
    minimum: float
    maximum: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values to summarize")
        return cls(statistics.median(values), min(values), max(values), len(values))
