"""The baseline: every image in this process, one after another, on one thread."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..workload import BatchResult, Job, prepare_process, process_batch
from .base import Batch, ExecutorBase


class SequentialExecutor(ExecutorBase):
    """Strictly single-threaded: OpenCV and BLAS pinned to one thread, no pool."""

    name = "sequential"

    def __init__(self) -> None:
        self.workers = 1

    def start(self) -> None:
        prepare_process()

    def map(self, batches: Iterable[Batch], job: Job) -> Iterator[BatchResult]:
        for batch in batches:
            yield process_batch(batch, job)

    def close(self) -> None:
        pass
