"""parablur scale end to end on a tiny dataset, and parablur report from a committed fixture."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_cli import closed_port_url

from parablur import results
from parablur.cli import main

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.slow
def test_scale_sweeps_workers_and_batch_sizes_and_writes_a_report(tmp_path: Path, capsys):
    code = main([
        "scale", "--workers-list", "1,2", "--batch-sizes", "1,4", "--trials", "1", "--warmup", "0",
        "--num-images", "6", "--width", "160", "--height", "160", "--executors", "processes",
        "--quiet", "--source-url", closed_port_url(), "--input-dir", str(tmp_path / "d"),
        "--output-dir", str(tmp_path / "p"), "--report-csv", str(tmp_path / "s.csv"),
        "--report-dir", str(tmp_path / "rep"), "--summary-json", str(tmp_path / "s.json"),
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "Amdahl fit (processes, batch size 1)" in out and "Amdahl fit (processes, batch size 4)" in out
    rows = results.read_rows(tmp_path / "s.csv")
    assert sorted((r["workers"], r["batch_size"]) for r in rows) == [
        ("1", "1"), ("1", "4"), ("2", "1"), ("2", "4")]
    assert {r["mode"] for r in rows} == {"scale-strong"} and all(r["identical"] == "true" for r in rows)
    assert all(float(r["ceiling"]) > 0 for r in rows)  # measured with every round
    data = json.loads((tmp_path / "s.json").read_text())
    fit = data["amdahl"]["processes, batch size 4"]
    assert 0.0 <= fit["f"] <= 1.0 and 0.0 <= fit["ci_low"] <= fit["ci_high"] <= 1.0
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000
    assert (tmp_path / "rep" / "speedup_vs_workers.png").stat().st_size > 0


@pytest.mark.slow
def test_weak_scaling_grows_the_dataset_with_the_pool(tmp_path: Path):
    code = main([
        "scale", "--weak", "--images-per-worker", "2", "--workers-list", "1,2", "--batch-sizes", "1",
        "--trials", "1", "--warmup", "0", "--width", "128", "--height", "128",
        "--executors", "threads", "--quiet", "--no-ceiling", "--source-url", closed_port_url(),
        "--input-dir", str(tmp_path / "d"), "--output-dir", str(tmp_path / "p"),
        "--report-csv", str(tmp_path / "w.csv"), "--report-dir", str(tmp_path / "rep"),
    ])
    assert code == 0
    rows = results.read_rows(tmp_path / "w.csv")
    assert [(r["workers"], r["num_images"], r["mode"]) for r in rows] == [
        ("1", "2", "scale-weak"), ("2", "4", "scale-weak")]
    assert (tmp_path / "rep" / "weak_scaling.png").is_file()


def test_report_command_from_the_fixture(tmp_path: Path, capsys):
    assert main(["report", str(FIXTURES / "results_v1.csv"), str(FIXTURES / "results_old.csv"),
                 "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "Amdahl serial fraction f =" in out
    html = (tmp_path / "r" / "report.html").read_text()
    assert "<table" in html and "data:image/png;base64," in html


def test_report_of_a_missing_csv_is_a_clean_error(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "results file not found" in capsys.readouterr().err


def _fit(d: dict) -> dict:
    return {k: d[k] for k in ("f", "ci_low", "ci_high", "t1", "ceiling", "n_points", "rss")}


@pytest.mark.slow
def test_scale_prints_and_saves_the_fit_its_report_shows(tmp_path: Path, capsys):
    """One fit, one function: scale fitted its own rounds, the report the CSV's rows again."""
    csv_path = tmp_path / "s.csv"
    assert main([
        "scale", "--workers-list", "1,2", "--batch-sizes", "2", "--trials", "1", "--warmup", "0",
        "--num-images", "4", "--width", "64", "--height", "64", "--blur-radius", "2",
        "--executors", "processes", "--no-ceiling", "--quiet", "--source-url", closed_port_url(),
        "--input-dir", str(tmp_path / "d"), "--output-dir", str(tmp_path / "p"),
        "--report-csv", str(csv_path), "--no-report", "--summary-json", str(tmp_path / "s.json"),
    ]) == 0
    scale_out = capsys.readouterr().out
    assert main(["report", str(csv_path), "--out", str(tmp_path / "r"), "--quiet",
                 "--summary-json", str(tmp_path / "r.json")]) == 0
    report_out = capsys.readouterr().out
    scale = json.loads((tmp_path / "s.json").read_text())["amdahl"]["processes, batch size 2"]
    report = json.loads((tmp_path / "r.json").read_text())
    assert _fit(scale) == _fit(report["fits"][scale["sweep"]]) == _fit(report["amdahl"])
    assert report["amdahl"]["sweep"] == scale["sweep"]
    printed = re.search(r"serial fraction f = (\S+) \(95% CI (\S+) to (\S+)\)", scale_out)
    assert printed and printed.groups() == re.search(
        r"serial fraction f = (\S+) \(95% CI (\S+) to (\S+)\)", report_out).groups()
    assert float(printed.group(1)) == pytest.approx(scale["f"], abs=5e-4)


def test_report_summary_json_lists_files_fit_groups_and_warnings(tmp_path: Path, capsys):
    out_json = tmp_path / "r.json"
    assert main(["report", str(FIXTURES / "results_v1.csv"), "--out", str(tmp_path / "r"),
                 "--quiet", "--summary-json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    assert str(tmp_path / "r" / "report.html") in data["files"]
    assert all(Path(f).is_file() for f in data["files"])
    assert data["amdahl"]["n_points"] == 9 and 0 < data["amdahl"]["f"] < 1
    assert data["amdahl"]["sweep"] in data["fits"] and len(data["fits"]) == 3
    assert any("grows with the pool" in w for w in data["warnings"])
    assert data["rows"] == 33 and data["unclean_left_out"] == 0
    assert data["skipped_figures"] == {
        "weak_scaling": "no scale-weak rows",
        "worker_timeline": "no task timeline (the -tasks.csv a benchmark writes beside its "
                           "results CSV)"}
    assert all(g["clean_trials"] >= 1 for g in data["groups"])
    assert "warning: " in capsys.readouterr().out
