"""The baseline: every image in this process, one after another, on one thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..worker import BatchResult, Job, borrow_process, process_batch, release_process
from .base import Batch, ExecutorBase


class SequentialExecutor(ExecutorBase):
    """Strictly single-threaded: OpenCV and BLAS pinned to one thread, no pool.

    The pinning lasts from ``start`` to ``close``; the caller's process is then as before.
    """

    name = "sequential"

    def __init__(self) -> None:
        self.workers = 1
        self._borrowed = False

    def start(self) -> None:
        if not self._borrowed:
            borrow_process()
            self._borrowed = True

    def map(self, batches: Iterable[Batch], job: Job) -> Iterator[BatchResult]:
        for batch in batches:
            yield process_batch(batch, job)

    def close(self) -> None:
        if self._borrowed:
            self._borrowed = False
            release_process()
