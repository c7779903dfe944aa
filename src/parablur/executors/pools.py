"""Standard-library pools (processes and threads), to tell Dask's cost from the pool's."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from ..errors import ClusterError
from ..worker import (
    BatchResult,
    Job,
    borrow_process,
    prepare_process,
    process_batch,
    release_process,
    warm_up,
)
from .base import Batch, ExecutorBase, bounded_map, failed_batch

# A pool that breaks this many times in a row with no batch to blame and no batch
# finished in between cannot run anything: the run stops with a ClusterError.
_MAX_UNEXPLAINED_BREAKS = 3


def _warm_batch(_: int) -> int:
    time.sleep(0.05)  # let every worker pick up one warm-up task
    return warm_up()


# -- inside a pool's worker process ---------------------------------------------------

_slots = None  # this pool generation's shared array: (pid, batch running or -1) per worker
_slot: int | None = None


# How often a pool worker checks that the process that started it is still there.
_ORPHAN_CHECK_S = 0.05


def _exit_when_orphaned(parent: int) -> None:
    """End this worker as soon as its parent is gone (killed outright: no one would read its
    results, and a batch it went on with would write behind the back of the next run, which
    takes over the dead run's lock)."""
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_S)
    os._exit(1)


def _init_worker(slots, claimed) -> None:
    """Prepare the worker and claim its slot, where it says which batch it is running."""
    global _slots, _slot
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True,
                     name="parablur-orphan-check").start()
    prepare_process()
    with claimed.get_lock():
        index = claimed.value
        claimed.value += 1
    if 2 * index + 1 < len(slots):
        _slots, _slot = slots, index
        slots[2 * index] = os.getpid()
        slots[2 * index + 1] = -1


def _run_tracked(index: int, batch: Batch, job: Job) -> BatchResult:
    """``process_batch``, with the batch's index in this worker's slot while it runs."""
    if _slots is None or _slot is None:
        return process_batch(batch, job)
    _slots[2 * _slot + 1] = index
    try:
        return process_batch(batch, job)
    finally:
        _slots[2 * _slot + 1] = -1


# -- in the caller's process ----------------------------------------------------------


@dataclass
class _Submission:
    """One batch on its way through the pool, and the worker deaths charged to it."""

    index: int
    batch: Batch
    deaths: int = 0
    exit_code: int | None = None  # of the last worker that died running it


class _Generation:
    """One process pool, the exit codes of its workers, and which batch each one runs."""

    def __init__(self, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        others = set(multiprocessing.active_children())
        self.slots = ctx.RawArray("q", 2 * workers)
        self.claimed = ctx.Value("i", 0)
        self.pool = cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                           initargs=(self.slots, self.claimed))
        try:
            # Start every worker and import OpenCV there before any timing.
            list(self.pool.map(_warm_batch, range(workers * 2)))
        except BaseException:
            self.pool.shutdown(wait=True, cancel_futures=True)
            raise
        # The pool's workers are children of this process: keep their handles, whose
        # exit codes tell later which worker died and which the pool stopped.
        self.processes: dict[int, multiprocessing.process.BaseProcess] = {
            p.pid: p for p in multiprocessing.active_children()
            if p not in others and p.pid is not None}

    def running(self) -> dict[int, int]:
        """Batch index -> pid of the worker that was running it."""
        out = {}
        for i in range(0, len(self.slots), 2):
            pid, index = self.slots[i], self.slots[i + 1]
            if pid > 0 and index >= 0:
                out[index] = pid
        return out

    def exit_code(self, pid: int) -> int | None:
        proc = self.processes.get(pid)
        return proc.exitcode if proc is not None else None


def _death(sub: _Submission) -> str:
    code = sub.exit_code
    if code is None:
        how = ""
    elif code < 0:
        try:
            how = f", killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f", killed by signal {-code}"
    else:
        how = f", exit code {code}"
    tries = f"{sub.deaths} attempt{'s' if sub.deaths != 1 else ''}"
    return f"task failed: worker process died (BrokenProcessPool{how}) after {tries}"


class ProcessPoolExecutor(ExecutorBase):
    """A ``concurrent.futures`` process pool, each process single-threaded.

    A worker that dies (SIGKILL, the OOM killer, a crash in native code) breaks a
    ``concurrent.futures`` pool, and with it every batch in flight. The pool is
    then replaced and the batches in flight go to the new one, under this rule:

    - the batch that the dead worker was running is charged one attempt; after
      ``max_task_retries + 1`` attempts it is recorded as failed, with the reason;
    - every other batch in flight is resubmitted without charge: those that had
      not started, and those running in the other workers, which the pool itself
      stopped (SIGTERM) when it broke. Each worker notes in shared memory which
      batch it is running; the workers' exit codes tell the dead from the stopped.
    - a worker whose exit cannot be told from the pool's own stop counts as dead.
    """

    name = "processes"

    def __init__(self, workers: int, *, max_task_retries: int = 2) -> None:
        self.workers = workers
        self.max_task_retries = max_task_retries
        self._gen: _Generation | None = None
        self._unexplained = 0  # breaks in a row with no batch to blame
        self._ids = itertools.count()

    def start(self) -> None:
        t0 = time.perf_counter()
        self._gen = self._new_generation()
        self.startup_s = time.perf_counter() - t0

    def _new_generation(self) -> _Generation:
        try:
            return _Generation(self.workers)
        except (BrokenProcessPool, OSError) as exc:
            raise ClusterError(f"the process pool's workers could not start: {exc}") from exc

    def map(self, batches: Iterable[Batch], job: Job) -> Iterator[BatchResult]:
        assert self._gen is not None, "start() the executor first"
        subs: dict[cf.Future, _Submission] = {}
        given_up: deque[BatchResult] = deque()

        def send(sub: _Submission) -> cf.Future:
            assert self._gen is not None
            try:
                fut = self._gen.pool.submit(_run_tracked, sub.index, sub.batch, job)
            except BrokenProcessPool as exc:  # broke since the last look: recovered in wait_one
                fut = cf.Future()
                fut.set_exception(exc)
            subs[fut] = sub
            return fut

        def submit(batch: Batch) -> cf.Future:
            return send(_Submission(next(self._ids), batch))

        def wait_one() -> tuple[object, BatchResult]:
            while True:
                if given_up:
                    return None, given_up.popleft()
                done, _ = cf.wait(subs, return_when=cf.FIRST_COMPLETED)
                fut = next(iter(done))
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    for sub in self._recover(subs, given_up):
                        send(sub)
                    continue
                sub = subs.pop(fut)
                if exc is None:
                    self._unexplained = 0
                    return fut, fut.result()
                return fut, failed_batch(sub.batch, f"task failed: {type(exc).__name__}: {exc}")

        yield from bounded_map(submit, wait_one, batches, self.workers)

    def _recover(self, subs: dict[cf.Future, _Submission], given_up: deque[BatchResult]) -> list[_Submission]:
        """Charge the batches whose worker died, replace the pool; the batches to resubmit."""
        old = self._gen
        assert old is not None
        # Returns once the pool has failed every pending future and joined its workers.
        old.pool.shutdown(wait=True, cancel_futures=True)
        stranded = []
        for fut, sub in list(subs.items()):
            if fut.cancelled() or not fut.done() or isinstance(fut.exception(), BrokenProcessPool):
                del subs[fut]
                stranded.append(sub)
        running = old.running()
        blamed = 0
        again = []
        for sub in sorted(stranded, key=lambda j: j.index):
            pid = running.get(sub.index)
            code = old.exit_code(pid) if pid is not None else None
            if pid is not None and code != -signal.SIGTERM:
                blamed += 1
                sub.deaths += 1
                sub.exit_code = code
                if sub.deaths > self.max_task_retries:
                    given_up.append(failed_batch(sub.batch, _death(sub)))
                    continue
            again.append(sub)
        self._unexplained = 0 if blamed else self._unexplained + 1
        if self._unexplained >= _MAX_UNEXPLAINED_BREAKS:
            raise ClusterError(f"the process pool broke {self._unexplained} times in a row with no "
                               "batch to blame: its workers keep dying (out of memory?)")
        self._gen = None
        self._gen = self._new_generation()
        return again

    def close(self) -> None:
        if self._gen is not None:
            self._gen.pool.shutdown(wait=True, cancel_futures=True)
            self._gen = None


class ThreadPoolExecutor(ExecutorBase):
    """A thread pool in this process: OpenCV releases the GIL while it works.

    OpenCV's own threads are off from ``start`` to ``close``; the caller's process is then as before.
    """

    name = "threads"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: cf.ThreadPoolExecutor | None = None
        self._borrowed = False

    def start(self) -> None:
        t0 = time.perf_counter()
        if not self._borrowed:
            borrow_process()
            self._borrowed = True
        self._pool = cf.ThreadPoolExecutor(self.workers, thread_name_prefix="parablur")
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
            except Exception as exc:  # the task could not run
                return fut, failed_batch(batch, f"task failed: {type(exc).__name__}: {exc}")

        yield from bounded_map(submit, wait_one, batches, self.workers)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._borrowed:
            self._borrowed = False
            release_process()
