"""Executors: where batches of images run. One small interface, one implementation per file."""

from __future__ import annotations

from ..config import ClusterConfig, RunConfig
from .base import Executor
from .pools import ProcessPoolExecutor, ThreadPoolExecutor
from .sequential import SequentialExecutor

__all__ = ["Executor", "create_executor"]


def create_executor(name: str, config: RunConfig | None = None) -> Executor:
    """Build (not start) the executor called ``name`` with ``config``'s pool settings."""
    config = config or RunConfig(executor=name)
    cluster: ClusterConfig = config.cluster
    if name == "sequential":
        return SequentialExecutor()
    if name == "processes":
        return ProcessPoolExecutor(config.workers, max_task_retries=cluster.max_task_retries)
    if name == "threads":
        return ThreadPoolExecutor(config.workers)
    if name in ("dask", "dask-threads"):
        from .dask_executor import DaskExecutor

        return DaskExecutor(config.workers, config.threads_per_worker, cluster,
                            processes=(name == "dask"),
                            profile=config.performance_report is not None)
    raise ValueError(f"unknown executor {name!r}")
