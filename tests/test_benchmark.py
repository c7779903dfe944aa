"""Benchmark bookkeeping: a mismatch or a failure makes a round unclean and the run not ok."""

from __future__ import annotations

from parablur.benchmark import BenchSummary, RoundResult, summarize
from parablur.pipeline import RunSummary
from parablur.verify import Verification


def run(name: str, wall: float, failed: int = 0) -> RunSummary:
    return RunSummary(executor=name, workers=1 if name == "sequential" else 2, batch_size=4,
                      images=8, ok=8 - failed, failed=failed,
                      failures=tuple({"image": f"img_{i}.jpg", "reason": "decode: corrupt"}
                                     for i in range(failed)),
                      wall_s=wall, startup_s=0.5, task_s=wall * 0.9)


def rnd(index: int, seq: float, par: float, *, mismatch: bool = False, failed: int = 0) -> RoundResult:
    ver = Verification(8, 7, ({"image": "img_3.jpg", "reason": "12 of 300 values differ"},)) \
        if mismatch else Verification(8, 8)
    return RoundResult(index, False, run("sequential", seq), {"dask": run("dask", par, failed)},
                       {"dask": ver})


def test_clean_rounds_only_count_towards_the_speedup():
    rounds = [rnd(1, 10.0, 5.0), rnd(2, 10.0, 2.0, mismatch=True), rnd(3, 10.0, 6.0)]
    assert [r.clean("dask") for r in rounds] == [True, False, True]
    stats = summarize("dask", rounds, None)
    assert stats.clean_rounds == 2 and stats.rounds == 3
    # median of 2.0x and 1.67x: the mismatching 5x round is left out
    assert abs(stats.speedup - (2.0 + 10 / 6) / 2) < 1e-9
    summary = BenchSummary("id", 8, rounds, {"dask": stats})
    assert not summary.ok
    assert summary.mismatches == [{"round": 2, "executor": "dask", "image": "img_3.jpg",
                                   "reason": "12 of 300 values differ"}]


def test_failed_images_are_reported_with_reasons():
    rounds = [rnd(1, 10.0, 5.0, failed=1)]
    summary = BenchSummary("id", 8, rounds, {"dask": summarize("dask", rounds, None)})
    assert not summary.ok
    assert summary.failures == [{"executor": "dask", "image": "img_0.jpg", "reason": "decode: corrupt"}]
    assert summary.to_dict()["failures"] == summary.failures
