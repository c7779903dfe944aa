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
from pathlib import Path

import numpy as np

from .config import BlurParams
from .imageinfo import file_image_size


def _blur_many(shape: tuple[int, int, int], repeats: int, sigma: float) -> float:
    from .workload import blur, prepare_process

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


def ceiling_shape(image: Path) -> dict:
    """The ceiling's image shape and repeats for a dataset like ``image``.

    The same pixel count as the dataset's first image (read from its header), and
    enough repeats for each round to last about half a second on one core.
    """
    size = file_image_size(image)
    width, height = size if size and size[0] > 0 and size[1] > 0 else (2000, 2000)
    per_blur_s = width * height / 57e6  # a 61x61 blur of 2000x2000x3: ~0.07 s
    repeats = min(max(math.ceil(0.5 / max(per_blur_s, 1e-6)), 2), 200)
    return {"shape": (height, width, 3), "repeats": repeats}


def measure_ceiling(workers: int, *, rounds: int = 5, repeats: int = 6,
                    shape: tuple[int, int, int] = (2000, 2000, 3),
                    sigma: float = 10.0) -> Ceiling:
    """Median throughput ratio of ``workers`` processes to one, over alternating rounds."""
    ctx = multiprocessing.get_context("spawn")
    ratios = []
    with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        list(pool.map(_blur_many, [(64, 64, 3)] * workers, [1] * workers, [sigma] * workers))
        for _ in range(rounds):
            t0 = time.perf_counter()
            pool.submit(_blur_many, shape, repeats, sigma).result()
            one = repeats / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            list(pool.map(_blur_many, [shape] * workers, [repeats] * workers, [sigma] * workers))
            many = workers * repeats / (time.perf_counter() - t0)
            ratios.append(many / one)
    return Ceiling(workers, statistics.median(ratios), min(ratios), max(ratios), tuple(ratios))
