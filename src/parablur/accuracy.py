"""How far one image is from another: PSNR and maximum absolute difference, over a sample too.

Pure functions of arrays, used to hold the fast engine's outputs against the
exact engine's outputs of the same decoded inputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError


def peak(dtype: np.dtype) -> float:
    """The largest value of an image of ``dtype``: 255 for 8-bit, 65535 for 16-bit, 1.0 for float."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ValueError(f"no peak value for images of {dtype}")


def _check(test: np.ndarray, reference: np.ndarray) -> None:
    if test.shape != reference.shape or test.dtype != reference.dtype:
        raise ValueError(f"images differ in shape or type: {test.shape} {test.dtype} against "
                         f"{reference.shape} {reference.dtype}")
    if test.size == 0:
        raise ValueError("empty images")


def squared_error_sum(test: np.ndarray, reference: np.ndarray) -> float:
    """Sum of squared differences over every pixel and channel."""
    _check(test, reference)
    return float(cv2.norm(test.reshape(test.shape[0], -1), reference.reshape(test.shape[0], -1),
                          cv2.NORM_L2SQR))


def psnr_from_mse(mse: float, peak_value: float) -> float:
    """10*log10(peak^2 / mse) in dB; infinite for identical images."""
    return math.inf if mse == 0 else 10 * math.log10(peak_value * peak_value / mse)


def psnr(test: np.ndarray, reference: np.ndarray) -> float:
    """Peak signal-to-noise ratio of ``test`` against ``reference`` in dB, the peak from their dtype."""
    return psnr_from_mse(squared_error_sum(test, reference) / test.size, peak(test.dtype))


def max_abs_diff(test: np.ndarray, reference: np.ndarray) -> float:
    """The largest absolute difference between two images of the same shape and type."""
    _check(test, reference)
    return float(cv2.norm(test.reshape(test.shape[0], -1), reference.reshape(test.shape[0], -1),
                          cv2.NORM_INF))


@dataclass(frozen=True)
class Accuracy:
    """Agreement of a sample of images with their references."""

    images: int
    psnr_db: float  # over every pixel of the sample (pooled mean squared error)
    worst_psnr_db: float  # of the single worst image
    max_abs_diff: float


def compare(pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> Accuracy:
    """PSNR (pooled and worst image) and max abs diff of (test, reference) pairs; ValueError if none."""
    count, total_sq, total_n, worst, largest, top = 0, 0.0, 0, math.inf, 0.0, None
    for test, reference in pairs:
        sq = squared_error_sum(test, reference)
        p = peak(test.dtype)
        if top is not None and p != top:
            raise ValueError("a sample mixes images of different peak values (8-bit and 16-bit)")
        top = p
        worst = min(worst, psnr_from_mse(sq / test.size, p))
        largest = max(largest, max_abs_diff(test, reference))
        count, total_sq, total_n = count + 1, total_sq + sq, total_n + test.size
    if count == 0:
        raise ValueError("no images to compare")
    return Accuracy(count, psnr_from_mse(total_sq / total_n, top), worst, largest)


#: Images of each benchmark round whose fast outputs are held against exact ones.
ACCURACY_SAMPLE = 4


def sample_of(images: list, count: int = ACCURACY_SAMPLE) -> list:
    """``count`` images spread evenly over ``images`` (all of them when there are fewer)."""
    if len(images) <= count:
        return list(images)
    step = len(images) / count
    return [images[int(i * step)] for i in range(count)]


def engine_accuracy(paths: list, job, *,
                    read: Callable[[str], bytes] | None = None) -> Accuracy | None:
    """The blur of ``job`` (its engine, on the path its workers take: reduced decode included)
    against the exact engine's blur of the same decoded inputs; None for a job that is not a
    blur by another engine than exact, or when no image of the sample can be read (the runs
    report those images).

    It runs in this process, outside every timed run, on a small sample (``sample_of``);
    ``read`` gives an image's bytes (default: the file's; a benchmark of a store's dataset
    reads its keys from the store).
    """
    from .engines.exact import gaussian_blur
    from .imageinfo import read_size
    from .worker import decode, decode_for
    from .workloads import BlurWorkload

    w = job.workload
    if not isinstance(w, BlurWorkload) or w.engine == "exact":
        return None

    def pairs():
        for path in paths:
            try:
                data = read(path) if read is not None else Path(path).read_bytes()
                suffix = Path(path).suffix
                image, full = decode_for(job, data, suffix, read_size(data))
            except (OSError, ImageError):
                continue  # an image no run could read: its failure is in the runs' summaries
            fast, _ = w(image, full)
            yield fast, gaussian_blur(decode(data, suffix), w.sigma, w.passes)

    try:
        return compare(pairs())
    except ValueError:  # no image of the sample could be read
        return None
