"""Starting an embedded LocalCluster, or connecting to an existing Dask scheduler.

Nothing here changes the caller's process for longer than a call: Dask settings
apply to the clusters ParaBlur starts, logging stays as the caller set it (the
CLI's quiet policy lives in ``cli``), and a start-up that fails part-way closes
whatever it had opened before it raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

from . import process_state
from .config import ClusterConfig
from .errors import ClusterError


def cluster_settings(config: ClusterConfig, *, profile: bool) -> dict:
    """The Dask settings of a LocalCluster ParaBlur starts.

    Read while its scheduler, nannies and workers are created (a nanny keeps a copy
    for the workers it restarts), so they need to hold only during creation.
    ``profile`` keeps Dask's statistical profiler on (a performance report wants it).
    """
    return {
        "distributed.scheduler.allowed-failures": max(config.max_task_retries, 0) + 1,
        "distributed.worker.daemon": False,
        # The statistical profiler samples every worker thread's stack every 10 ms:
        # CPU taken from the blur on a machine with no core to spare.
        "distributed.worker.profile.enabled": profile,
        # Equal-sized batches, fed through a bounded window with scheduler-side
        # queuing, need no stealing; a dead worker's tasks are rescheduled anyway.
        "distributed.scheduler.work-stealing": False,
        **CLIENT_SETTINGS,
    }


# Dask keeps the last ``low-level-log-length`` messages of each of its batched streams
# (client -> scheduler, scheduler -> each worker) for debugging, 1,000 by default, and a
# message holds its tasks: with batches of a store run's keys that is up to ~1 GB of old
# task arguments in the client (measured: +470 MB at 1M images, benchmarks/orchestration.py).
# A few messages are enough to debug with.
LOW_LEVEL_LOG = 16
CLIENT_SETTINGS = {"distributed.admin.low-level-log-length": LOW_LEVEL_LOG}


def _short_message_log():
    """A scheduler plugin that keeps the scheduler's message log to each worker short, also
    for a worker that joins (or a nanny restarts) once ParaBlur's settings are undone."""
    from collections import deque

    from distributed.diagnostics.plugin import SchedulerPlugin

    class ShortMessageLog(SchedulerPlugin):
        name = "parablur-short-message-log"

        def add_worker(self, scheduler, worker: str) -> None:
            comm = scheduler.stream_comms.get(worker)
            if comm is not None and comm.recent_message_log.maxlen != LOW_LEVEL_LOG:
                comm.recent_message_log = deque(comm.recent_message_log, maxlen=LOW_LEVEL_LOG)

    return ShortMessageLog()


def _worker_log_level() -> int:
    """How quiet the workers of a LocalCluster are: as quiet as this process's Dask
    logging (the CLI silences it), and at least as quiet as LocalCluster's default."""
    return max(logging.WARNING, logging.getLogger("distributed").getEffectiveLevel())


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

    client: object | None
    cluster: object | None
    threads: int
    dashboard_link: str | None = None
    holds_process: bool = False  # a LocalCluster's nannies changed this process's environment

    def close(self) -> None:
        """Shut down (bounded by timeouts); a second Ctrl-C or SIGTERM cannot cut it short."""
        with _signals_held():
            if self.client is not None:
                with contextlib.suppress(Exception):
                    self.client.close(timeout=10)
            if self.cluster is not None:
                with contextlib.suppress(Exception):
                    self.cluster.close(timeout=10)
        self.client = self.cluster = None
        if self.holds_process:
            self.holds_process = False
            process_state.release()


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


def first_line(exc: BaseException) -> str:
    """An exception's message on one line (its type when it has none)."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def connect(
    config: ClusterConfig, *, workers: int, threads_per_worker: int, processes: bool = True,
    profile: bool = False,
) -> Connection:
    """Start a LocalCluster on 127.0.0.1 (or reach ``config``'s scheduler) and wait for workers.

    Raises ``ClusterError`` (its cause kept) when that fails, having closed what it opened.
    """
    if config.is_remote:
        return _connect_remote(config)
    import dask
    from distributed import Client, LocalCluster

    # In-process workers talk over inproc://, which takes no host; their HTTP server
    # (metrics, health) would otherwise listen on every interface.
    where = ({"host": config.host} if processes
             else {"protocol": "inproc://", "worker_dashboard_address": f"{config.host}:0"})
    expected = workers if processes else 1
    # The nannies set Dask's worker environment (pre-spawn-environ) in this process
    # before they spawn: undone when the cluster closes.
    conn = Connection(None, None, workers * threads_per_worker, holds_process=True)
    process_state.hold()
    before = dict(os.environ)
    try:
        try:
            with dask.config.set(cluster_settings(config, profile=profile)):
                conn.cluster = LocalCluster(
                    n_workers=expected,
                    threads_per_worker=(threads_per_worker if processes
                                        else workers * threads_per_worker),
                    processes=processes,
                    **where,
                    dashboard_address=f"{config.host}:8787" if config.dashboard else None,
                    silence_logs=_worker_log_level(),
                )
            conn.cluster.scheduler.add_plugin(_short_message_log())
            # Not the caller's default client: their own dask calls keep going where they went.
            with dask.config.set(CLIENT_SETTINGS):
                conn.client = Client(conn.cluster, set_as_default=False)
        finally:
            process_state.remember_environ(before)
        conn.client.wait_for_workers(expected, timeout=max(config.wait_workers_s, 60.0))
    except BaseException as exc:
        conn.close()
        if isinstance(exc, TimeoutError):
            raise ClusterError(f"the local Dask cluster's workers did not all start within "
                               f"{max(config.wait_workers_s, 60.0):.0f} s: try fewer --workers, "
                               "or check free memory") from exc
        if isinstance(exc, Exception):
            raise ClusterError(f"cannot start a local Dask cluster: {first_line(exc)}") from exc
        raise
    http = getattr(conn.cluster.scheduler, "http_server", None)
    if config.dashboard and http is not None:
        # The link Dask builds names the machine's address; the server listens on loopback only.
        conn.dashboard_link = f"http://{config.host}:{http.port}/status"
    return conn


def _connect_remote(config: ClusterConfig) -> Connection:
    """A client of an existing scheduler, once at least one worker has joined."""
    import dask
    from distributed import Client

    where = config.scheduler or config.scheduler_file
    client = None
    try:
        kwargs = {"timeout": "15s", "security": _security(config), "set_as_default": False}
        with dask.config.set(CLIENT_SETTINGS):
            if config.scheduler_file is not None:
                client = Client(scheduler_file=str(config.scheduler_file), **kwargs)
            else:
                client = Client(config.scheduler, **kwargs)
        client.wait_for_workers(1, timeout=config.wait_workers_s)
    except BaseException as exc:
        if client is not None:
            with _signals_held(), contextlib.suppress(Exception):
                client.close(timeout=5)
        if isinstance(exc, TimeoutError) and client is not None:
            raise ClusterError(f"no worker joined the Dask scheduler {where} within "
                               f"{config.wait_workers_s:g} s: start `dask worker` processes "
                               "that connect to it") from exc
        if isinstance(exc, OSError | TimeoutError | ValueError):
            raise ClusterError(f"cannot use Dask scheduler {where}: {first_line(exc)}") from exc
        raise
    link = None
    with contextlib.suppress(Exception):
        link = client.dashboard_link
    return Connection(client, None, cluster_threads(client), link)


def cluster_threads(client) -> int:
    """Threads across every worker the scheduler knows now (workers may come and go)."""
    info = client.scheduler_info(n_workers=-1).get("workers", {})
    return max(sum(int(w.get("nthreads", 1)) for w in info.values()), 1)
