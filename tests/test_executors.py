"""Every executor gives outputs pixel-identical to the sequential ones (batches that don't divide evenly)."""

from __future__ import annotations

from pathlib import Path

import pytest

from parablur.config import BlurParams, RunConfig
from parablur.executors import Executor, create_executor
from parablur.pipeline import anonymize, run_images
from parablur.storage import LocalStore
from parablur.verify import compare_dirs


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    from conftest import make_images

    root = tmp_path_factory.mktemp("exec")
    make_images(root / "in", 7, size=(90, 110))
    summary = anonymize(RunConfig(input_dir=root / "in", output_dir=root / "out",
                                  blur=BlurParams(sigma=4)))
    assert summary.ok == 7 and summary.failed == 0
    return root / "in", root / "out"


@pytest.mark.parametrize("name", ["processes", "threads", "dask", "dask-threads"])
@pytest.mark.slow
def test_parallel_executor_matches_sequential(name, reference):
    src, out = reference
    config = RunConfig(input_dir=src, output_dir=out, executor=name, workers=2, batch_size=3,
                       blur=BlurParams(sigma=4))
    executor = create_executor(name, config)
    assert isinstance(executor, Executor)
    with executor:
        assert executor.workers == 2
        # two runs on one started pool: the pool is reused, nothing served from the first
        for _ in range(2):
            target = out / name
            summary = run_images(executor, config, LocalStore(src), LocalStore(target), force=True)
            assert (summary.ok, summary.failed, summary.images) == (7, 0, 7)
            check = compare_dirs(out / "sequential", target)
            assert check.ok and check.identical == 7
