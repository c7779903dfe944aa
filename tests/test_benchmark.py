"""Benchmark bookkeeping: a mismatch or a failure makes a round unclean and the run not ok."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_images
from test_cli import closed_port_url

from parablur import results
from parablur.analysis import karp_flatt
from parablur.benchmark import (
    BenchSummary,
    RoundResult,
    csv_row,
    format_engines,
    format_round,
    format_summary,
    run_benchmark,
    run_ceiling,
    summarize,
)
from parablur.ceiling import Ceiling
from parablur.cli import main
from parablur.config import BenchConfig, BlurParams, FetchConfig, RunConfig
from parablur.noise import Load
from parablur.pipeline import RunSummary
from parablur.verify import Verification

ENV = {"timestamp": "2026-01-01T00:00:00+00:00", "hostname": "h"}


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


def rows_of(rounds: list[RoundResult]) -> list[dict]:
    config = RunConfig(executor="dask", workers=2)
    return [csv_row(r, "dask", config, (64, 48), ENV, "id", "bench", r.ceiling, None)
            for r in rounds]


def stats_of(rounds: list[RoundResult]):
    return summarize("dask", rounds, rows_of(rounds))


def test_clean_rounds_only_count_towards_the_speedup():
    rounds = [rnd(1, 10.0, 5.0), rnd(2, 10.0, 2.0, mismatch=True), rnd(3, 10.0, 6.0)]
    assert [r.clean("dask") for r in rounds] == [True, False, True]
    stats = stats_of(rounds)
    assert stats.clean_rounds == 2 and stats.rounds == 3
    # median of 2.0x and 1.67x: the mismatching 5x round is left out
    assert stats.speedup == pytest.approx((2.0 + 10 / 6) / 2, rel=1e-5)
    assert stats.speedup_range == pytest.approx((10 / 6, 2.0), rel=1e-5)
    assert (stats.parallel_s.median, stats.parallel_s.minimum, stats.parallel_s.maximum) == (
        5.5, 5.0, 6.0)  # the times too: the mismatching round's 2 s is not among them
    summary = BenchSummary("id", 8, rounds, {"dask": stats})
    assert not summary.ok
    assert summary.mismatches == [{"round": 2, "executor": "dask", "image": "img_3.jpg",
                                   "reason": "12 of 300 values differ"}]


def test_without_a_clean_round_there_is_no_speedup():
    """Before: every unclean round was counted when none was clean; the report counted none."""
    stats = stats_of([rnd(1, 10.0, 2.0, mismatch=True), rnd(2, 10.0, 4.0, failed=1)])
    assert stats.clean_rounds == 0 and stats.rounds == 2
    assert stats.speedup is None and stats.efficiency is None and stats.serial_fraction is None
    assert stats.sequential_s is None and stats.parallel_throughput is None


def test_failed_images_are_reported_with_reasons():
    rounds = [rnd(1, 10.0, 5.0, failed=1)]
    summary = BenchSummary("id", 8, rounds, {"dask": stats_of(rounds)})
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
    stats = stats_of(rounds)
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
    stats = stats_of(rounds[1:])
    assert stats.headline_noisy and stats.noisy_rounds == 2
    assert stats.serial_fraction is None  # the summary JSON and the report give none either
    text = format_summary(BenchSummary("id", 8, rounds[1:], {"dask": stats}))
    assert "no quiet round" in text and "(Karp-Flatt)" not in text and "1 worker" not in text


def test_engines_side_by_side_say_when_their_figures_are_the_noisy_rounds():
    """Before: the side-by-side table was headed "clean, quiet rounds" when no round was quiet."""
    quiet = Load(wall_s=15.0, cores=2, busy_cores=2, own_cores=1.9, outside_cores=0.04,
                 steal_cores=0.0)
    busy = replace(quiet, own_cores=1.1, outside_cores=0.9)
    exact = [replace(rnd(i + 1, 10.0, 5.0), load=quiet) for i in range(2)]
    fast = [replace(rnd(i + 1, 2.5, 2.4), load=busy) for i in range(2)]
    summaries = [BenchSummary("id", 8, exact, {"dask": stats_of(exact)}, engine="exact"),
                 BenchSummary("id", 8, fast, {"dask": stats_of(fast)}, engine="fast")]
    text = format_engines(summaries)
    assert "clean, quiet rounds" not in text and "NOISY ones where none was quiet" in text
    exact_line, fast_line = (next(line for line in text.splitlines() if line.strip().startswith(e))
                             for e in ("exact", "fast "))
    assert "NOISY" not in exact_line and fast_line.endswith("NOISY rounds")
    assert "clean, quiet rounds;" in format_engines(summaries[:1])


def test_the_csv_records_the_images_actual_size_not_the_stand_in_settings(tmp_path: Path):
    """A user's own 80x48 photos were recorded as the stand-in size, 2000x2000."""
    photos = tmp_path / "photos"
    make_images(photos, 3, size=(48, 80))
    config = BenchConfig(
        fetch=FetchConfig(input_dir=photos),  # stand-in settings: 2000x2000
        run=RunConfig(input_dir=photos, output_dir=tmp_path / "out", executor="threads",
                      workers=2, batch_size=1, blur=BlurParams(sigma=1.0)),
        executors=("threads",), warmup=0, trials=1, report_csv=tmp_path / "r.csv",
        measure_ceiling=False)
    summary = run_benchmark(config, echo=lambda _: None, fetch_summary={})
    assert summary.ok
    (row,) = results.read_rows(tmp_path / "r.csv")
    assert (row["width"], row["height"]) == ("80", "48")
    assert row["overlap_io"] == "false"


def _bench(tmp_path: Path, *extra: str) -> list[str]:
    return ["bench", "--num-images", "4", "--width", "64", "--height", "64", "--workers", "2",
            "--batch-size", "1", "--blur-radius", "2", "--no-ceiling", "--quiet",
            "--no-dashboard", "--no-report", "--source-url", closed_port_url(),
            "--input-dir", str(tmp_path / "d"), "--output-dir", str(tmp_path / "p"),
            "--report-csv", str(tmp_path / "r.csv"), *extra]


@pytest.mark.slow
def test_bench_shows_the_speedup_figures_its_report_shows(tmp_path: Path, capsys):
    assert main(_bench(tmp_path, "--executors", "threads", "--trials", "3", "--warmup", "0",
                       "--summary-json", str(tmp_path / "b.json"))) == 0
    assert main(["report", str(tmp_path / "r.csv"), "--out", str(tmp_path / "rep"),
                 "--summary-json", str(tmp_path / "rep.json")]) == 0
    bench = json.loads((tmp_path / "b.json").read_text())["executors"]["threads"]
    (group,) = json.loads((tmp_path / "rep.json").read_text())["groups"]
    assert group["clean_trials"] == bench["clean_rounds"] == 3
    assert (bench["speedup"], bench["efficiency"], bench["serial_fraction"]) == (
        group["speedup"], group["efficiency"], group["serial_fraction"])
    assert bench["speedup_range"] == group["speedup_range"]
    assert (bench["sequential_s"]["median"], bench["parallel_s"]["median"],
            bench["parallel_throughput"]) == (group["seq_s"], group["par_s"], group["par_throughput"])
    out = capsys.readouterr().out
    assert f"{bench['speedup']:8.2f}x" in out


@pytest.mark.slow
def test_performance_report_holds_every_measured_round(tmp_path: Path):
    """Each round opened its own report on the same file: only the last round survived.

    With no warm-up, the cluster only ever runs the two rounds' 8 one-image tasks, so the
    report must count all 8 and last at least as long as both rounds' parallel runs.
    """
    report = tmp_path / "perf.html"
    assert main(_bench(tmp_path, "--executors", "dask", "--trials", "2", "--warmup", "0",
                       "--performance-report", str(report),
                       "--summary-json", str(tmp_path / "b.json"))) == 0
    html = report.read_text(encoding="utf-8")
    assert "Dask Performance Report" in html
    assert re.findall(r"number of tasks: (\d+)", html) == ["8"]
    value, unit = re.search(r"Duration: ([\d.]+) (s|ms)", html).groups()
    duration = float(value) / (1000 if unit == "ms" else 1)
    rounds = json.loads((tmp_path / "b.json").read_text())["rounds"]
    assert duration >= 0.99 * sum(r["dask_s"] for r in rounds)


def test_bands_and_images_per_core_reach_the_round_line_summary_json_and_csv(tmp_path: Path):
    """A workload's scores travel as a dict through one formatter; the CSV keeps the recall by
    height band and both legs' images per core."""
    from parablur.benchmark import format_figures
    from parablur.workloads.face_quality import score_image
    from parablur.workloads.face_quality import summarize as summarize_quality

    truths = [(0, 0, 18, 18), (100, 0, 25, 25), (200, 0, 40, 40), (300, 0, 60, 60)]
    detections = [{"box": list(truths[i]), "score": 0.9} for i in (1, 2, 3)]
    quality = summarize_quality([score_image(detections, truths)]).to_dict()
    rounds = [replace(rnd(i, 10.0, 5.0), quality=quality) for i in (1, 2)]
    rows = rows_of(rounds)
    summary = BenchSummary("id", 8, rounds, {"dask": summarize("dask", rounds, rows)})
    line, text = format_round(rounds[0]), format_summary(summary)
    for shown in (line, text):
        assert "recall 0.750" in shown and "false positives per image 0.000" in shown
        assert "recall by height (16 to 20px 0.000, 20 to 30px 1.000, 30 to 45px 1.000, " \
               "45px up 1.000)" in shown
    # 8 images in 10 s on one core; in 5 s on the two workers: 0.8 img/s per core either way.
    assert "per core             0.80 img/s sequential (1 core), 0.80 img/s parallel (2 cores)" in text
    stats = summary.to_dict()["executors"]["dask"]
    assert stats["sequential_per_core"] == pytest.approx(0.8) and stats["parallel_per_core"] == 0.8
    assert summary.to_dict()["detection_quality"]["recall_by_height"]["16_to_20px"] == 0.0
    results.append_rows(tmp_path / "r.csv", rows)
    row = results.read_rows(tmp_path / "r.csv")[0]
    assert (row["recall"], row["recall_by_height_16_to_20px"], row["recall_by_height_45px_up"]) == (
        "0.75", "0", "1")
    assert row["recall_by_height_20_to_30px"] == row["recall_by_height_30_to_45px"] == "1"
    assert (row["seq_img_per_core"], row["par_img_per_core"]) == ("0.8", "0.8")
    # Whatever else a workload scores goes through the same formatter (a clip's face-frames).
    assert format_figures({"clips": 2, "exposed_face_frames": 0.0125, "exposed_off_edge": None}) == \
        "clips 2, exposed face frames 0.013, exposed off edge n/a"


def test_every_band_of_the_face_scores_has_a_results_column():
    from parablur.workloads.face_quality import BANDS

    assert [c.removeprefix("recall_by_height_") for c in results.QUALITY_COLUMNS
            if c.startswith("recall_by_height_")] == [name for name, _, _ in BANDS]
    assert set(results.QUALITY_COLUMNS) <= set(results.COLUMNS)
