"""Starting an embedded LocalCluster, or connecting to an existing Dask scheduler, quietly."""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass

from .config import ClusterConfig
from .errors import ClusterError

_NOISY_LOGGERS = (
    "distributed", "distributed.client", "distributed.scheduler", "distributed.nanny",
    "distributed.worker", "distributed.core", "distributed.comm", "distributed.batched",
    "distributed.process", "distributed.http.proxy", "distributed.utils_perf",
    "distributed.shuffle", "distributed.diskutils", "distributed.preloading",
    "distributed.worker_memory", "distributed.deploy", "distributed.deploy.spec",
    "tornado", "tornado.application", "bokeh", "asyncio",
)


def quiet_dask() -> None:
    """Silence distributed's INFO chatter and its shutdown tracebacks in this process."""
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", message=".*Port .* is already in use.*")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="distributed")


def _security(config: ClusterConfig):
    if not config.uses_tls:
        return None
    from distributed.security import Security

    return Security(
        tls_ca_file=str(config.tls_ca_file),
        tls_client_cert=str(config.tls_cert),
        tls_client_key=str(config.tls_key),
        require_encryption=True,
    )


@dataclass
class Connection:
    """A Dask client and, when ParaBlur started one, its LocalCluster."""

    client: object
    cluster: object | None
    threads: int
    dashboard_link: str | None = None

    def close(self) -> None:
        """Shut down (bounded by timeouts); a second Ctrl-C or SIGTERM cannot cut it short."""
        with _signals_held():
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
            if self.cluster is not None:
                with contextlib.suppress(Exception):
                    self.cluster.close(timeout=10)


@contextlib.contextmanager
def _signals_held():
    """Ignore SIGINT and SIGTERM inside the block (main thread only), then restore them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def connect(
    config: ClusterConfig, *, workers: int, threads_per_worker: int, processes: bool = True,
    profile: bool = False,
) -> Connection:
    """Start a LocalCluster on 127.0.0.1 (or reach ``config``'s scheduler) and wait for workers.

    ``profile`` keeps Dask's statistical profiler on (a performance report wants it).
    """
    quiet_dask()
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({
        "distributed.scheduler.allowed-failures": max(config.max_task_retries, 0) + 1,
        "distributed.admin.tick.limit": "30s",
        "distributed.worker.daemon": False,
        # The statistical profiler samples every worker thread's stack every 10 ms:
        # CPU taken from the blur on a machine with no core to spare.
        "distributed.worker.profile.enabled": profile,
        # Equal-sized batches, fed through a bounded window with scheduler-side
        # queuing, need no stealing; a dead worker's tasks are rescheduled anyway.
        "distributed.scheduler.work-stealing": False,
    })
    if config.is_remote:
        return _connect_remote(config)
    # In-process workers talk over inproc://, which takes no host; their HTTP server
    # (metrics, health) would otherwise listen on every interface.
    where = ({"host": config.host} if processes
             else {"protocol": "inproc://", "worker_dashboard_address": f"{config.host}:0"})
    try:
        cluster = LocalCluster(
            n_workers=workers if processes else 1,
            threads_per_worker=threads_per_worker if processes else workers * threads_per_worker,
            processes=processes,
            **where,
            dashboard_address=f"{config.host}:8787" if config.dashboard else None,
            silence_logs=logging.CRITICAL,
        )
        client = Client(cluster)
        client.wait_for_workers(workers if processes else 1, timeout=60)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot start a local Dask cluster: {exc}") from None
    link = None
    http = getattr(cluster.scheduler, "http_server", None)
    if config.dashboard and http is not None:
        # The link Dask builds names the machine's address; the server listens on loopback only.
        link = f"http://{config.host}:{http.port}/status"
    return Connection(client, cluster, workers * threads_per_worker, link)


def _connect_remote(config: ClusterConfig) -> Connection:
    """A client of an existing scheduler, once at least one worker has joined."""
    from distributed import Client

    where = config.scheduler or config.scheduler_file
    client = None
    try:
        if config.scheduler_file is not None:
            client = Client(scheduler_file=str(config.scheduler_file), timeout="15s",
                            security=_security(config))
        else:
            client = Client(config.scheduler, timeout="15s", security=_security(config))
        client.wait_for_workers(1, timeout=config.wait_workers_s)
    except (OSError, TimeoutError, ValueError) as exc:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close(timeout=5)
        reason = str(exc) or type(exc).__name__
        raise ClusterError(f"cannot use Dask scheduler {where}: {reason}") from None
    link = None
    with contextlib.suppress(Exception):
        link = client.dashboard_link
    return Connection(client, None, cluster_threads(client), link)


def cluster_threads(client) -> int:
    """Threads across every worker the scheduler knows now (workers may come and go)."""
    info = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(sum(int(w.get("nthreads", 1)) for w in info.values()), 1)
