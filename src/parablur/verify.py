"""Checking that a parallel run's outputs are pixel-identical to the sequential ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .dataset import list_images


@dataclass(frozen=True)
class Verification:
    """Which outputs matched the reference, pixel for pixel, and which did not (and why)."""

    compared: int
    identical: int
    mismatches: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.compared > 0


def _load(path: Path) -> np.ndarray | None:
    data = np.fromfile(path, dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def _compare(ref: Path, other: Path) -> str | None:
    if not other.is_file():
        return "missing output"
    a, b = _load(ref), _load(other)
    if a is None or b is None:
        return "output does not decode"
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape {b.shape} {b.dtype} differs from {a.shape} {a.dtype}"
    if not np.array_equal(a, b):
        diff = int(np.count_nonzero(a != b))
        return f"{diff} of {a.size} values differ (max |d| {int(np.abs(a.astype(int) - b).max())})"
    return None


def compare_dirs(reference: Path, candidate: Path, threads: int = 2) -> Verification:
    """Decode every image under ``reference`` and its twin under ``candidate`` and compare."""
    refs = list_images(reference) if reference.exists() else []
    names = [p.relative_to(reference) for p in refs]
    extra = []
    if candidate.exists():
        extra = sorted({p.relative_to(candidate) for p in list_images(candidate)} - set(names))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        reasons = list(pool.map(lambda n: _compare(reference / n, candidate / n), names))
    mismatches = [{"image": n.as_posix(), "reason": r} for n, r in zip(names, reasons, strict=True)
                  if r]
    mismatches += [{"image": n.as_posix(), "reason": "output without a sequential twin"}
                   for n in extra]
    return Verification(len(names), len(names) - sum(1 for r in reasons if r),
                        tuple(mismatches))
