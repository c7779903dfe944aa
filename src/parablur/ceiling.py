"""The hardware's own ceiling: how much faster N single-threaded processes blur than one.

Alternating rounds of one process and of N processes, each blurring the same
in-memory image a fixed number of times: no disk, no decode, no scheduler. The
median ratio of their throughputs is the best speedup any pool can reach on
this machine at this moment.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import statistics
import time
from dataclasses import dataclass

import numpy as np

from .config import BlurParams


def _blur_many(shape: tuple[int, int, int], repeats: int, sigma: float) -> float:
    from . import blur
    from .worker import prepare_process

    prepare_process()
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    params = BlurParams(sigma=sigma)
    t0 = time.perf_counter()
    for _ in range(repeats):
        blur(image, params)
    return time.perf_counter() - t0


@dataclass(frozen=True)
class Ceiling:
    """The measured hardware ceiling and the rounds it came from."""

    workers: int
    median: float
    minimum: float
    maximum: float
    ratios: tuple[float, ...]
    seconds: float = 0.0  # time the measurement took (the pool's start-up excluded)

    @classmethod
    def pooled(cls, ceilings: list[Ceiling]) -> Ceiling | None:
        """One ceiling from the ratios of several measurements (None when there are none)."""
        ratios = tuple(r for c in ceilings for r in c.ratios)
        if not ratios:
            return None
        return cls(ceilings[0].workers, statistics.median(ratios), min(ratios), max(ratios),
                   ratios, sum(c.seconds for c in ceilings))


def ceiling_shape(size: tuple[int, int] | None) -> tuple[int, int, int]:
    """The ceiling's image shape for a dataset of images of ``size`` (width, height; 2000x2000
    when unknown)."""
    width, height = size if size and size[0] > 0 and size[1] > 0 else (2000, 2000)
    return (height, width, 3)


class CeilingMeter:
    """A started pool that measures the ceiling again and again (between benchmark rounds).

    The processes are spawned and warmed once, so each later measurement costs only
    its own alternations: ``rounds`` x (one process's ``repeats`` blurs + the pool's).
    Without ``repeats``, they are calibrated when the pool starts so that one process
    blurs for about ``side_s`` seconds.
    """

    def __init__(self, workers: int, *, repeats: int | None = None, side_s: float = 0.25,
                 shape: tuple[int, int, int] = (2000, 2000, 3), sigma: float = 10.0) -> None:
        self.workers = workers
        self.repeats = repeats
        self.side_s = side_s
        self.shape = shape
        self.sigma = sigma
        self._pool: cf.ProcessPoolExecutor | None = None

    def __enter__(self) -> CeilingMeter:
        n = self.workers
        self._pool = cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"))
        try:
            list(self._pool.map(_blur_many, [(64, 64, 3)] * n, [1] * n, [self.sigma] * n))
            if self.repeats is None:
                per_blur = self._pool.submit(_blur_many, self.shape, 3, self.sigma).result() / 3
                self.repeats = min(max(math.ceil(self.side_s / max(per_blur, 1e-6)), 2), 1000)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def measure(self, rounds: int) -> Ceiling:
        """Median throughput ratio of the pool to one process over ``rounds`` alternations."""
        assert self._pool is not None and self.repeats, "enter the CeilingMeter first"
        n, shape, repeats, sigma = self.workers, self.shape, self.repeats, self.sigma
        ratios = []
        started = time.perf_counter()
        for _ in range(rounds):
            t0 = time.perf_counter()
            self._pool.submit(_blur_many, shape, repeats, sigma).result()
            one = repeats / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(self._pool.map(_blur_many, [shape] * n, [repeats] * n, [sigma] * n))
            many = n * repeats / (time.perf_counter() - t0)
            ratios.append(many / one)
        return Ceiling(n, statistics.median(ratios), min(ratios), max(ratios), tuple(ratios),
                       time.perf_counter() - started)


def measure_ceiling(workers: int, *, rounds: int = 5, repeats: int = 6,
                    shape: tuple[int, int, int] = (2000, 2000, 3),
                    sigma: float = 10.0) -> Ceiling:
    """Median throughput ratio of ``workers`` processes to one, over alternating rounds."""
    with CeilingMeter(workers, repeats=repeats, shape=shape, sigma=sigma) as meter:
        return meter.measure(rounds)
