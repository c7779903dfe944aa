"""The interface every executor implements, and the bounded submission loop they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from ..worker import BatchResult, ImageResult, ImageTask, Job

Batch = Sequence[ImageTask]


@runtime_checkable
class Executor(Protocol):
    """Runs batches of image tasks somewhere and streams their results back.

    ``start`` brings the pool up (timed into ``startup_s``); ``map`` may be
    called many times on a started executor; ``close`` releases everything.
    """

    name: str
    workers: int
    startup_s: float
    dashboard_link: str | None

    def start(self) -> None: ...

    def map(self, batches: Iterable[Batch], job: Job) -> Iterator[BatchResult]: ...

    def run_on_workers(self, fn: Callable[[], object]) -> dict[str, object]: ...

    def close(self) -> None: ...


def failed_batch(batch: Batch, reason: str) -> BatchResult:
    """A result that records every image of ``batch`` as failed for ``reason``."""
    return BatchResult(tuple(ImageResult(t.name, False, reason, part=t.part_index) for t in batch),
                       0.0, "", 0.0)


def window_size(workers: int) -> int:
    """How many batches to keep in flight: enough to keep every worker fed, no more."""
    return max(2 * workers + 2, 4)


def bounded_map(
    submit: Callable[[Batch], object],
    wait_one: Callable[[], tuple[object, BatchResult]],
    batches: Iterable[Batch],
    workers: int,
) -> Iterator[BatchResult]:
    """Keep a bounded window of batches in flight, yielding each result as it completes.

    ``submit`` starts one batch and returns a handle; ``wait_one`` blocks until any
    handle completes and returns it with its result. The client never holds more
    than a window's worth of results, whatever the number of images.
    """
    pending = iter(batches)
    inflight = 0
    for batch in pending:
        submit(batch)
        inflight += 1
        if inflight >= window_size(workers):
            break
    while inflight:
        _, result = wait_one()
        inflight -= 1
        nxt = next(pending, None)
        if nxt is not None:
            submit(nxt)
            inflight += 1
        yield result


class ExecutorBase:
    """Context-manager plumbing shared by the executors."""

    name = "base"
    workers = 1
    startup_s = 0.0
    dashboard_link: str | None = None

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def run_on_workers(self, fn: Callable[[], object]) -> dict[str, object]:
        """``fn()`` where the work runs, by worker. Local pools run it here: their processes
        are started from this interpreter, with its packages and its ``sys.path``."""
        return {"local": fn()}

    def close(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
