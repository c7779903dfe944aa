"""Configuration objects validate themselves with messages that state the rule."""

import pytest

from parablur.config import BenchConfig, BlurParams, ClusterConfig, FetchConfig, RunConfig
from parablur.errors import ConfigError


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BlurParams(sigma=-1), "sigma) must be > 0, got -1"),
        (lambda: BlurParams(passes=0), "passes must be >= 1"),
        (lambda: RunConfig(workers=0), "workers must be >= 1, got 0"),
        (lambda: RunConfig(batch_size="many"), "batch-size must be a positive integer or 'auto'"),
        (lambda: RunConfig(batch_size=0), "batch-size must be >= 1"),
        (lambda: RunConfig(executor="gpu"), "executor must be one of"),
        (lambda: FetchConfig(num_images=0), "num-images must be >= 1, got 0"),
        (lambda: FetchConfig(source_url="ftp://x/y"), "source-url must be an http:// or https://"),
        (lambda: BenchConfig(trials=0), "trials must be >= 1"),
        (lambda: BenchConfig(executors=("sequential",)), "at least one parallel executor"),
        (lambda: BenchConfig(executors=("dask", "gpu")), "executors must be among"),
        (lambda: ClusterConfig(scheduler="localhost:8786"), "must start with tcp:// or tls://"),
    ],
)
def test_rules_are_stated(make, message):
    with pytest.raises(ConfigError, match=None) as info:
        make()
    assert message in str(info.value)


def test_batch_size_accepts_digits_and_auto():
    assert RunConfig(batch_size="8").batch_size == 8
    assert RunConfig(batch_size="auto").batch_size == "auto"


def test_frozen():
    with pytest.raises(AttributeError):
        RunConfig().workers = 3  # type: ignore[misc]


def test_sequential_may_be_named_among_the_executors():
    cfg = BenchConfig(executors=("sequential", "dask", "processes", "threads", "dask"))
    assert cfg.executors == ("dask", "processes", "threads")
