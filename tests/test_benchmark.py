"""Benchmark bookkeeping: a mismatch or a failure makes a round unclean and the run not ok."""

from __future__ import annotations

from dataclasses import replace

from parablur.analysis import karp_flatt
from parablur.benchmark import (
    BenchSummary,
    RoundResult,
    format_round,
    format_summary,
    run_ceiling,
    summarize,
)
from parablur.ceiling import Ceiling
from parablur.noise import Load
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
    stats = summarize("dask", rounds)
    assert stats.clean_rounds == 2 and stats.rounds == 3
    # median of 2.0x and 1.67x: the mismatching 5x round is left out
    assert abs(stats.speedup - (2.0 + 10 / 6) / 2) < 1e-9
    summary = BenchSummary("id", 8, rounds, {"dask": stats})
    assert not summary.ok
    assert summary.mismatches == [{"round": 2, "executor": "dask", "image": "img_3.jpg",
                                   "reason": "12 of 300 values differ"}]


def test_failed_images_are_reported_with_reasons():
    rounds = [rnd(1, 10.0, 5.0, failed=1)]
    summary = BenchSummary("id", 8, rounds, {"dask": summarize("dask", rounds)})
    assert not summary.ok
    assert summary.failures == [{"executor": "dask", "image": "img_0.jpg", "reason": "decode: corrupt"}]
    assert summary.to_dict()["failures"] == summary.failures


def test_noisy_rounds_are_left_out_of_the_headline_not_folded_into_the_serial_fraction():
    # The study's shared 2-core machine: 2.08x in a quiet round, then 1.09x and 1.01x while
    # another program took a core. Folded together they read "serial fraction 83.6%".
    quiet = Load(wall_s=15.0, cores=2, busy_cores=2, own_cores=1.9, outside_cores=0.04,
                 steal_cores=0.0)
    busy = Load(wall_s=25.0, cores=2, busy_cores=2, own_cores=1.1, outside_cores=0.85,
                steal_cores=0.01)
    ceilings = [Ceiling(2, c, c, c, (c, c), 2.0) for c in (1.95, 1.10, 1.05)]
    rounds = [replace(rnd(i + 1, 10.0, 10.0 / s), load=load, ceiling=c)
              for i, (s, load, c) in enumerate(zip((2.08, 1.09, 1.01), (quiet, busy, busy),
                                                   ceilings, strict=True))]
    assert [r.noisy for r in rounds] == [False, True, True]
    stats = summarize("dask", rounds)
    assert abs(stats.speedup - 2.08) < 1e-9 and stats.noisy_rounds == 2
    assert not stats.headline_noisy
    assert abs(stats.serial_fraction - karp_flatt(2.08, 2)) < 1e-9  # not 83.6%
    assert abs(stats.ceiling_efficiency - 2.08 / 1.95) < 1e-9  # against its own round's ceiling
    summary = BenchSummary("id", 8, rounds, {"dask": stats}, run_ceiling(rounds))
    assert summary.ceiling.median == 1.95  # the quiet round's ceiling, not the loaded ones'
    text = format_summary(summary)
    assert "noise: 2 of 3 rounds ran while other programs took cores" in text
    assert "round 2: outside load 0.85 cores (other programs)" in text
    assert "2 noisy rounds left out of the headline" in text
    assert "83." not in text
    assert "NOISY: outside load 0.85 cores" in format_round(rounds[1])
    assert "NOISY" not in format_round(rounds[0])
    data = summary.to_dict()
    assert [r["noisy"] for r in data["rounds"]] == [False, True, True]
    assert data["rounds"][1]["load"]["outside_cores"] == 0.85
    assert data["rounds"][1]["ceiling"] == 1.10 and data["executors"]["dask"]["noisy_rounds"] == 2
    # with no quiet round at all, the figures are the noisy rounds' and say so
    stats = summarize("dask", rounds[1:])
    assert stats.headline_noisy and stats.noisy_rounds == 2
    text = format_summary(BenchSummary("id", 8, rounds[1:], {"dask": stats}))
    assert "no quiet round" in text and "(Karp-Flatt)" not in text
