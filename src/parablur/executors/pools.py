"""Standard-library pools (processes and threads), to tell Dask's cost from the pool's."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from collections.abc import Iterable, Iterator

from ..workload import BatchResult, Job, prepare_process, process_batch, warm_up
from .base import Batch, ExecutorBase, bounded_map, failed_batch


class _PoolExecutor(ExecutorBase):
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: cf.Executor | None = None

    def _make_pool(self) -> cf.Executor:  # pragma: no cover - overridden
        raise NotImplementedError

    def start(self) -> None:
        t0 = time.perf_counter()
        self._pool = self._make_pool()
        # Start every worker and import OpenCV there before any timing.
        list(self._pool.map(_warm_batch, range(self.workers * 2)))
        self.startup_s = time.perf_counter() - t0

    def map(self, batches: Iterable[Batch], job: Job) -> Iterator[BatchResult]:
        assert self._pool is not None, "start() the executor first"
        pool = self._pool
        pending: dict[cf.Future, Batch] = {}

        def submit(batch: Batch) -> cf.Future:
            fut = pool.submit(process_batch, batch, job)
            pending[fut] = batch
            return fut

        def wait_one() -> tuple[cf.Future, BatchResult]:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            fut = next(iter(done))
            batch = pending.pop(fut)
            try:
                return fut, fut.result()
            except Exception as exc:  # a worker died or the task could not run
                return fut, failed_batch(batch, f"task failed: {type(exc).__name__}: {exc}")

        yield from bounded_map(submit, wait_one, batches, self.workers)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _warm_batch(_: int) -> int:
    time.sleep(0.05)  # let every worker pick up one warm-up task
    return warm_up()


class ProcessPoolExecutor(_PoolExecutor):
    """A ``concurrent.futures`` process pool, each process single-threaded."""

    name = "processes"

    def _make_pool(self) -> cf.Executor:
        ctx = multiprocessing.get_context("spawn")
        return cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=prepare_process)


class ThreadPoolExecutor(_PoolExecutor):
    """A thread pool in this process: OpenCV releases the GIL while it works."""

    name = "threads"

    def _make_pool(self) -> cf.Executor:
        prepare_process()
        return cf.ThreadPoolExecutor(self.workers, thread_name_prefix="parablur")
