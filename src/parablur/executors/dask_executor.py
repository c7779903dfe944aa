"""Dask executors: worker processes (``dask``) or threads (``dask-threads``), local or remote."""

from __future__ import annotations

import contextlib
import time
import uuid
import webbrowser
from collections.abc import Iterable, Iterator
from pathlib import Path

from distributed import WorkerPlugin

from .. import __version__
from ..cluster import Connection, connect, first_line
from ..config import ClusterConfig
from ..errors import ClusterError, ParaBlurError
from ..worker import BatchResult, Job, borrow_process, process_batch, release_process, warm_up
from .base import Batch, ExecutorBase, bounded_map, failed_batch


def _parablur_version() -> str:
    """This worker's parablur version (unpickling this function imports parablur there)."""
    return __version__


def _set_allowed_failures(dask_scheduler=None, *, count: int) -> int:
    """Bound how many worker deaths one task may survive, on the scheduler itself."""
    dask_scheduler.allowed_failures = count
    return count


def _ignore_sigint() -> None:
    """Ctrl-C reaches the whole process group: let ParaBlur, not each worker, handle it."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class _IgnoreSigint(WorkerPlugin):
    """Applied to every worker of a local cluster, including those a nanny restarts."""

    name = "parablur-ignore-sigint"

    def setup(self, worker) -> None:
        _ignore_sigint()


class DaskExecutor(ExecutorBase):
    """Batches of images as Dask tasks on a LocalCluster or an existing scheduler."""

    def __init__(
        self,
        workers: int,
        threads_per_worker: int = 1,
        cluster: ClusterConfig | None = None,
        *,
        processes: bool = True,
        profile: bool = False,
    ) -> None:
        self.name = "dask" if processes else "dask-threads"
        self.requested_workers = workers
        self.workers = workers * threads_per_worker
        self.threads_per_worker = threads_per_worker
        self.cluster_config = cluster or ClusterConfig()
        self.processes = processes
        self.profile = profile
        self._conn: Connection | None = None
        self._only: list[str] | None = None  # the chosen workers of a remote cluster
        self._borrowed = False

    @property
    def client(self):
        assert self._conn is not None, "start() the executor first"
        return self._conn.client

    def start(self) -> None:
        """Connect, check and warm up the workers; on any failure close what was opened."""
        t0 = time.perf_counter()
        if not self.processes and not self.cluster_config.is_remote and not self._borrowed:
            borrow_process()  # the workers are threads of this process
            self._borrowed = True
        try:
            self._conn = connect(self.cluster_config, workers=self.requested_workers,
                                 profile=self.profile,
                                 threads_per_worker=self.threads_per_worker,
                                 processes=self.processes)
            self._prepare_workers()
        except BaseException as exc:
            self.close()
            if isinstance(exc, Exception) and not isinstance(exc, ParaBlurError):
                raise ClusterError(f"cannot prepare the Dask workers{self._where()}: "
                                   f"{first_line(exc)}") from exc
            raise
        self.startup_s = time.perf_counter() - t0
        self.dashboard_link = self._conn.dashboard_link if self.cluster_config.dashboard else None
        if self.cluster_config.open_dashboard and self.dashboard_link:
            webbrowser.open(self.dashboard_link)

    def _where(self) -> str:
        config = self.cluster_config
        where = config.scheduler or config.scheduler_file
        return f" of {where}" if where else ""

    def _prepare_workers(self) -> None:
        assert self._conn is not None
        self._check_parablur()  # first: everything below sends parablur's code to the workers
        self.workers = self._conn.threads
        if self._conn.cluster is None and self.cluster_config.limit_workers:
            self._only = self._pick_workers(self.requested_workers)
        if self._conn.cluster is None:
            # A remote scheduler reads allowed-failures from its own config; ParaBlur's
            # --max-task-retries should bound its runs there too.
            with contextlib.suppress(Exception):
                self.client.run_on_scheduler(_set_allowed_failures,
                                             count=self.cluster_config.max_task_retries + 1)
        if self._conn.cluster is not None and self.processes:
            self.client.register_plugin(_IgnoreSigint())
        self.client.run(warm_up)

    def _check_parablur(self) -> None:
        """Every worker runs this client's parablur; if not, say where to install it."""
        found = self.client.run(_parablur_version, on_error="return")
        broken = {addr: v for addr, v in found.items() if isinstance(v, BaseException)}
        if broken:
            addrs = ", ".join(sorted(broken))
            cause = broken[min(broken)]
            if "No module named 'parablur" in str(cause):
                raise ClusterError(f"the workers at {addrs} cannot import parablur {__version__}: "
                                   "install it on the workers") from cause
            raise ClusterError(f"the workers at {addrs} cannot run parablur {__version__}: "
                               f"{first_line(cause)}") from cause
        other = {addr: v for addr, v in found.items() if v != __version__}
        if other:
            addrs = ", ".join(f"{addr} ({v})" for addr, v in sorted(other.items()))
            raise ClusterError(f"the workers at {addrs} run another parablur than this client's "
                               f"{__version__}: install parablur {__version__} on the workers")

    def _pick_workers(self, count: int) -> list[str]:
        """The first ``count`` workers of a remote cluster, for a sweep over worker counts."""
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        if count > len(info):
            raise ClusterError(f"the cluster has {len(info)} workers; {count} were asked for")
        chosen = sorted(info)[:count]
        self.workers = sum(int(info[a].get("nthreads", 1)) for a in chosen)
        return chosen

    @contextlib.contextmanager
    def performance_report(self, path: Path) -> Iterator[None]:
        """Write Dask's performance report of what runs inside, from this executor's cluster."""
        from distributed import performance_report

        # The report finds its client as the current one; ParaBlur's is never the default.
        with self.client.as_current(), performance_report(filename=str(path)):
            yield

    def map(self, batches: Iterable[Batch], job: Job) -> Iterator[BatchResult]:
        from distributed import as_completed

        client = self.client
        retries = self.cluster_config.max_task_retries
        # Results are gathered in the background as tasks finish, not one round trip each.
        queue = as_completed(loop=client.loop, with_results=True, raise_errors=False)
        batch_of: dict[str, Batch] = {}
        futures: dict[str, object] = {}

        def submit(batch: Batch):
            key = f"parablur-{self.name}-{uuid.uuid4().hex}"
            # With a subset of a remote cluster's workers, the others stand in only
            # when none of the chosen ones is alive (loose restrictions).
            where = ({"workers": self._only, "allow_other_workers": True}
                     if self._only else {})
            fut = client.submit(process_batch, batch, job, key=key, pure=False,
                                retries=retries, **where)
            batch_of[key] = batch
            futures[key] = fut
            queue.add(fut)
            return fut

        def wait_one():
            fut, result = next(queue)
            batch = batch_of.pop(fut.key)
            futures.pop(fut.key, None)
            if not isinstance(result, BatchResult):  # KilledWorker, or retries exhausted
                exc = fut.exception() if fut.status == "error" else result
                result = failed_batch(batch, f"task failed: {type(exc).__name__}: {exc}")
            fut.release()
            return fut, result

        try:
            yield from bounded_map(submit, wait_one, batches, self.workers)
        finally:
            if futures:  # interrupted: a remote cluster should not keep running our tasks
                with contextlib.suppress(Exception):
                    client.cancel(list(futures.values()), force=True)

    def run_on_workers(self, fn) -> dict[str, object]:
        """``fn()`` on every worker this executor uses (a remote cluster has its own packages)."""
        return dict(self.client.run(fn, workers=self._only))

    def worker_memory_mb(self) -> dict[str, float]:
        """Current resident memory of each worker, in MB."""
        def rss() -> float:
            import psutil

            return psutil.Process().memory_info().rss / 2**20

        with contextlib.suppress(Exception):
            return {k: float(v) for k, v in self.client.run(rss).items()}
        return {}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._borrowed:
            self._borrowed = False
            release_process()
