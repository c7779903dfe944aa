"""The client of a long run holds a window of tasks, not every task it has sent (1M-image runs)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from parablur.config import BlurParams, RunConfig
from parablur.executors import create_executor
from parablur.storage import LocalStore
from parablur.worker import ImageTask, Job


def _alive_tasks() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, ImageTask))


@pytest.mark.slow
def test_a_dask_client_does_not_keep_the_tasks_it_has_finished(tmp_path: Path):
    from conftest import make_images

    make_images(tmp_path / "in", 1, size=(16, 16))
    src = next((tmp_path / "in").iterdir())
    config = RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out", executor="dask",
                       workers=2, batch_size=1, blur=BlurParams(sigma=0.5))
    inp, out = LocalStore(tmp_path / "in"), LocalStore(tmp_path / "out")
    count = 300

    def batches():  # made as the window asks for them: this test holds none of them
        for i in range(count):
            yield [ImageTask(f"{i}.png", src.name, f"{i}.png", inp, out)]

    before = _alive_tasks()
    with create_executor("dask", config) as executor:
        done = sum(r.images[0].ok for r in executor.map(batches(), Job.for_run(config)))
        assert done == count
        # Dask's default keeps the last 1,000 messages of each stream, each holding its
        # task's arguments: here all 300 tasks. ParaBlur keeps 16 per stream: client ->
        # scheduler, and scheduler -> each of the 2 workers (a message may carry two or
        # three tasks sent together); plus the window in flight.
        bound = 2 * 16 * (1 + 2) + 6
        held = _alive_tasks() - before
        assert held <= bound, f"the client still holds {held} of {count} finished tasks"
        # Workers that join later (here: restarted by their nannies) get short logs too.
        executor.client.restart(wait_for_workers=True)
        done = sum(r.images[0].ok for r in executor.map(batches(), Job.for_run(config)))
        assert done == count
        held = _alive_tasks() - before
        assert held <= bound, f"after a restart the client holds {held} of {count} tasks"
    assert len(list((tmp_path / "out").glob("*.png"))) == count
