"""ParaBlur: fault-tolerant image anonymization and parallel-speedup benchmarking.

The public API, for notebooks and programs that should not shell out::

    from parablur import FetchConfig, RunConfig, BenchConfig, fetch_dataset, anonymize, run_benchmark

    fetch_dataset(FetchConfig(num_images=16, width=1000, height=1000))
    anonymize(RunConfig(executor="dask", workers=2))
    run_benchmark(BenchConfig(fetch=FetchConfig(num_images=16), trials=2))
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import BenchConfig, BlurParams, ClusterConfig, FetchConfig, RunConfig
from .errors import (
    ClusterError,
    ConfigError,
    DatasetError,
    ImageError,
    IngestionError,
    ObjectError,
    ParaBlurError,
    ResultsError,
    StorageError,
    ValidationError,
)


def fetch_dataset(config: FetchConfig, *, progress: bool = False):
    """Build (or reuse) the dataset ``config`` describes; returns a ``FetchSummary``."""
    from .ingestion import fetch_dataset as _fetch

    return _fetch(config, progress=progress)


def anonymize(config: RunConfig, *, progress: bool = False):
    """Blur every image of ``config.input_dir`` with one executor; returns a ``RunSummary``."""
    from .pipeline import anonymize as _anonymize

    return _anonymize(config, progress=progress)


def run_benchmark(config: BenchConfig, *, progress: bool = False, echo=print):
    """Run the benchmark (fetch, warm-up, measured rounds, CSV rows); returns a ``BenchSummary``."""
    from .benchmark import run_benchmark as _run

    return _run(config, progress=progress, echo=echo)


def blur(image, params: BlurParams | None = None):
    """The anonymization itself, a pure function of an array: Gaussian blur, sigma 10, 61x61."""
    from .engines.exact import gaussian_blur

    params = params or BlurParams()
    return gaussian_blur(image, params.sigma, params.passes)


__all__ = [
    "BenchConfig",
    "BlurParams",
    "ClusterConfig",
    "ClusterError",
    "ConfigError",
    "DatasetError",
    "FetchConfig",
    "ImageError",
    "IngestionError",
    "ObjectError",
    "ParaBlurError",
    "ResultsError",
    "StorageError",
    "RunConfig",
    "ValidationError",
    "__version__",
    "anonymize",
    "blur",
    "fetch_dataset",
    "run_benchmark",
]
