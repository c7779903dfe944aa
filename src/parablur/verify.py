"""Checking that a parallel run's outputs are pixel-identical to the sequential ones (a video
clip's: frame for frame)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from .dataset import is_video_key
from .errors import ParaBlurError
from .storage import Store


@dataclass(frozen=True)
class Verification:
    """Which outputs matched the reference, pixel for pixel, and which did not (and why)."""

    compared: int
    identical: int
    mismatches: tuple[dict, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.mismatches and self.compared > 0


def _load(store: Store, key: str) -> np.ndarray | None:
    data = np.frombuffer(store.read(key), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def _compare(ref: Store, other: Store, key: str) -> str | None:
    if is_video_key(key):
        return _compare_clip(ref, other, key)
    try:
        a, b = _load(ref, key), _load(other, key)
    except ParaBlurError as exc:
        # Only now ask whether it is there at all: ``info`` of a file hashes it.
        return "missing output" if other.info(key) is None else f"cannot read: {exc}"
    if a is None or b is None:
        return "output does not decode"
    if a.shape != b.shape or a.dtype != b.dtype:
        return f"shape {b.shape} {b.dtype} differs from {a.shape} {a.dtype}"
    if not np.array_equal(a, b):
        diff = int(np.count_nonzero(a != b))
        return f"{diff} of {a.size} values differ (max |d| {int(np.abs(a.astype(int) - b).max())})"
    return None


def _compare_clip(ref: Store, other: Store, key: str) -> str | None:
    """A video clip's frames, decoded one at a time from both outputs and compared."""
    from .video import compare

    try:
        with ref.open(key) as a, other.open(key) as b:
            return compare(a, b)
    except ParaBlurError as exc:
        return "missing output" if other.info(key) is None else f"cannot read: {exc}"


def _keys(store: Store) -> list[str]:
    try:
        return list(store.list_images())
    except ParaBlurError:  # nothing there (a leg that made no output)
        return []


def compare_outputs(reference: Store, candidate: Store, threads: int = 2) -> Verification:
    """Decode every image of ``reference`` and its twin of ``candidate`` and compare."""
    names = _keys(reference)
    extra = sorted(set(_keys(candidate)) - set(names))
    with ThreadPoolExecutor(max(1, threads)) as pool:
        reasons = list(pool.map(lambda n: _compare(reference, candidate, n), names))
    mismatches = [{"image": n, "reason": r} for n, r in zip(names, reasons, strict=True) if r]
    mismatches += [{"image": n, "reason": "output without a sequential twin"} for n in extra]
    return Verification(len(names), len(names) - sum(1 for r in reasons if r), tuple(mismatches))


def compare_dirs(reference, candidate, threads: int = 2) -> Verification:
    """``compare_outputs`` of two folders (or URLs)."""
    from .storage import open_store

    return compare_outputs(open_store(reference), open_store(candidate), threads)
