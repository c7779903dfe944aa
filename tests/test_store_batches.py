"""--batch-size auto on a store's listing: batches grow with the listing, none is lost, little is held."""

from __future__ import annotations

import pytest

from parablur.imageinfo import file_image_size
from parablur.pipeline import _auto_chunks, _balanced, _by_cost, auto_batch_size
from parablur.worker import ImageTask


def _stream(count: int, pulled: list[int]):
    for i in range(count):
        pulled[0] = i + 1
        yield ImageTask(f"{i:07d}.png", f"{i:07d}.png", f"{i:07d}.png")


@pytest.mark.parametrize("count", [1, 7, 100, 999, 1000, 1001, 5000, 60_000])
def test_every_task_comes_once_in_order_with_balanced_batches(count):
    pulled = [0]
    sizes, names, ahead = [], [], 0
    for batch in _auto_chunks(_stream(count, pulled), by_cost=2500, workers=2, lookahead=1000):
        ahead = max(ahead, pulled[0] - len(names))  # tasks taken from the listing, not yet batched
        sizes.append(len(batch))
        names.extend(t.name for t in batch)
    assert names == [f"{i:07d}.png" for i in range(count)]
    assert ahead <= 1000 + 2500
    assert max(sizes) <= 2500
    if count <= 1000:  # a listing that ends within the look-ahead is batched as a folder is
        assert set(sizes[:-1]) <= {_balanced(2500, count, 2)}
        assert len(sizes) >= min(count, 16)
    else:
        assert sizes == sorted(sizes[:-1]) + sizes[-1:]  # grow with the listing, never shrink
    if count == 60_000:
        # long listings: few, large tasks (the former cap of 32 images made 1,875 here)
        assert max(sizes) == 2500 and len(sizes) < 100


def test_a_folder_and_a_short_listing_get_the_same_batches(tmp_path):
    from conftest import make_images

    make_images(tmp_path, 1, size=(1000, 1000))
    big = next(tmp_path.iterdir())  # "auto" reads the first image's header only
    for count in (40, 400):  # sized by balance (2 a task), then by cost (10 a task)
        folder = auto_batch_size([big] * count, 2)
        by_cost = _by_cost(file_image_size(big), workers=2)
        stream = [len(b) for b in _auto_chunks(_stream(count, [0]), by_cost=by_cost, workers=2)]
        assert set(stream[:-1]) == {folder} and sum(stream) == count
        assert folder == (2 if count == 40 else 10)


def test_store_round_trips_count_in_the_cost_of_an_image():
    assert _by_cost((32, 32)) == 2500  # pixels alone: a 32x32 image is nearly free
    assert _by_cost((32, 32), io_s=0.015) == 17  # three 5 ms round trips: ~0.25 s tasks
    assert _by_cost((2000, 2000), io_s=0.015) == 3


def test_a_large_cluster_gets_longer_tasks_so_the_scheduler_keeps_up():
    from parablur.pipeline import task_target_s

    assert task_target_s(2) == task_target_s(20) == 0.25
    assert task_target_s(100) == pytest.approx(1.2)
    # 2000x2000 images: 3 a task on a laptop, 12 a task on 100 workers (83 tasks/s at most)
    assert (_by_cost((2000, 2000), workers=2), _by_cost((2000, 2000), workers=100)) == (3, 12)
