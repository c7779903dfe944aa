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

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=10)


def connect(
    config: ClusterConfig, *, workers: int, threads_per_worker: int, processes: bool = True
) -> Connection:
    """Start a LocalCluster on 127.0.0.1 (or reach ``config``'s scheduler) and wait for workers."""
    quiet_dask()
    import dask
    from distributed import Client, LocalCluster

    dask.config.set({
        "distributed.scheduler.allowed-failures": max(config.max_task_retries, 0) + 1,
        "distributed.admin.tick.limit": "30s",
        "distributed.worker.daemon": False,
        "distributed.scheduler.work-stealing": True,
    })
    if config.is_remote:
        try:
            if config.scheduler_file is not None:
                client = Client(scheduler_file=str(config.scheduler_file), timeout="15s",
                                security=_security(config))
            else:
                client = Client(config.scheduler, timeout="15s", security=_security(config))
            client.wait_for_workers(1, timeout=30)
        except (OSError, TimeoutError) as exc:
            where = config.scheduler or config.scheduler_file
            raise ClusterError(f"cannot reach Dask scheduler {where}: {exc}") from None
        info = client.scheduler_info(n_workers=-1)["workers"]
        threads = sum(w.get("nthreads", 1) for w in info.values())
        return Connection(client, None, max(threads, 1))
    # In-process workers talk over inproc://, which takes no host.
    where = {"host": config.host} if processes else {}
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
    return Connection(client, cluster, workers * threads_per_worker)
