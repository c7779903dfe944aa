"""A store of N generated images, for measuring the client's own cost per image (orchestration.py).

Its listing is computed, not fetched: keys ``0000/0000000.png`` ... in pages, with a
size and an ETag each, as an S3 listing gives them. Every image reads as the same tiny
PNG and every write is counted and dropped. So a run through it costs what ParaBlur's
harness costs (listing pages, tasks, batches, the window, the scheduler, results and the
summary) plus a 16x16 decode, blur and encode per image, and nothing of a real store's
latency, which ``storage_rates.py`` and ``store_run.py`` measure against SeaweedFS.

It must be importable on the workers: ``orchestration.py`` runs from ``benchmarks/``, which
is on ``sys.path``, and a LocalCluster's spawned workers inherit that path.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from parablur.storage import ObjectInfo, RetryPolicy, Store

FOLDER_SIZE = 1000  # images per "folder" of keys, as a large collection is usually laid out
SIDE = 16  # pixels: the image every key reads as


@functools.cache
def tiny_png() -> bytes:
    """One small, non-uniform PNG (the same in every process: a fixed pattern)."""
    import cv2
    import numpy as np

    y, x = np.mgrid[0:SIDE, 0:SIDE]
    image = np.dstack([(x * 16) % 256, (y * 16) % 256, ((x + y) * 8) % 256]).astype(np.uint8)
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def key_of(index: int) -> str:
    return f"{index // FOLDER_SIZE:04d}/{index:07d}.png"


class GeneratedStore(Store):
    """``count`` generated images to read, and a sink for outputs."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.url = f"generated://{count}"
        self.retry = RetryPolicy()
        self.written = 0  # outputs dropped, in this process

    def __reduce__(self):
        return (GeneratedStore, (self.count,))

    def claim_output(self, command: str | None = None) -> bool:
        return False  # a sink: nothing to claim

    def check_output(self, command: str | None = None) -> None:
        pass

    def unclaim(self) -> None:
        pass

    def child(self, name: str) -> GeneratedStore:
        return GeneratedStore(self.count)

    def _secrets(self) -> frozenset[str]:
        return frozenset()

    def _pages(self, page_size: int) -> Iterator[list[ObjectInfo]]:
        size = len(tiny_png())
        for start in range(0, self.count, page_size):
            yield [ObjectInfo(key_of(i), size, f"{i:x}")
                   for i in range(start, min(start + page_size, self.count))]

    def _read(self, key: str, length: int | None) -> bytes:
        data = tiny_png()
        return data if length is None else data[:length]

    def _write(self, key: str, data: bytes, metadata: dict[str, str], durable: bool) -> None:
        self.written += 1

    def _info(self, key: str) -> ObjectInfo | None:
        return None  # nothing is ever kept, so nothing is skipped

    def _delete(self, key: str) -> None:
        pass
