"""--batch-size auto: batches grow with the listing, none is lost, little is held, and tasks are
sized by what an image costs (its pixels and its store round trips) and the cluster's size."""

from __future__ import annotations

import pytest

from parablur.pipeline import (
    TASK_OVERHEAD_S,
    auto_batches,
    balanced,
    images_per_task,
    task_target_s,
)
from parablur.storage import LocalStore
from parablur.worker import ImageTask

STORE = LocalStore("unused")


def _stream(count: int, pulled: list[int]):
    for i in range(count):
        pulled[0] = i + 1
        yield ImageTask(f"{i:07d}.png", f"{i:07d}.png", f"{i:07d}.png", STORE, STORE)


@pytest.mark.parametrize("count", [1, 7, 100, 999, 1000, 1001, 5000, 60_000])
def test_every_task_comes_once_in_order_with_balanced_batches(count):
    pulled = [0]
    sizes, names, ahead = [], [], 0
    for batch in auto_batches(_stream(count, pulled), by_cost=2500, workers=2, lookahead=1000):
        ahead = max(ahead, pulled[0] - len(names))  # tasks taken from the listing, not yet batched
        sizes.append(len(batch))
        names.extend(t.name for t in batch)
    assert names == [f"{i:07d}.png" for i in range(count)]
    assert ahead <= 1000 + 2500
    assert max(sizes) <= 2500
    if count <= 1000:  # a listing that ends within the look-ahead: equal batches, 8 a worker
        assert len(set(sizes[:-1])) <= 1
        assert len(sizes) >= min(count, 16)
    else:
        assert sizes == sorted(sizes[:-1]) + sizes[-1:]  # grow with the listing, never shrink
    if count == 60_000:
        # long listings: few, large tasks, each as large as the cost allows
        assert max(sizes) == 2500 and len(sizes) < 100


@pytest.mark.parametrize("images", [1, 15, 16, 40, 400, 10_000])
@pytest.mark.parametrize("workers", [1, 2, 7])
def test_balance_gives_every_worker_several_tasks_when_there_are_enough_images(images, workers):
    size = balanced(10_000, images, workers)
    assert size >= 1
    tasks = -(-images // size)
    assert tasks >= min(images, 8 * workers)


def test_an_image_costs_its_pixels_and_its_store_round_trips():
    tiny, big = (32, 32), (2000, 2000)
    # more pixels, or more round trips, make fewer images a task; never fewer than one
    assert images_per_task(tiny) > images_per_task(big) >= 1
    assert images_per_task(tiny) > images_per_task(tiny, io_s=0.005) > images_per_task(tiny, io_s=0.05)
    assert images_per_task(big, io_s=10.0) == 1
    # round trips alone: a task of n images takes about the target, not several times it
    n = images_per_task(tiny, io_s=0.015)
    assert n * 0.015 >= task_target_s(2) * 0.8 and (n - 1) * 0.015 < task_target_s(2)


def test_a_large_cluster_gets_longer_tasks_so_the_scheduler_keeps_up():
    # On a laptop a quarter second; on 100 workers the scheduler, at TASK_OVERHEAD_S of
    # client and scheduler time a task, is asked for at most a quarter of its capacity.
    assert task_target_s(2) == task_target_s(20) == 0.25
    for workers in (2, 20, 100, 1000):
        tasks_per_s = workers / task_target_s(workers)
        assert tasks_per_s * TASK_OVERHEAD_S <= 0.25 + 1e-9
    assert images_per_task((2000, 2000), workers=100) > images_per_task((2000, 2000), workers=2)
