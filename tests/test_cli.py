"""The command line end to end: bench on a real LocalCluster, run, fetch, errors and exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_images

import parablur
from parablur import results
from parablur.cli import main

ROOT = Path(__file__).resolve().parents[1]


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/2000/2000"


def small_bench_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "bench", "--num-images", "8", "--width", "256", "--height", "256", "--workers", "2",
        "--batch-size", "3", "--trials", "1", "--warmup", "1", "--quiet", "--no-dashboard",
        "--source-url", closed_port_url(), "--input-dir", str(tmp_path / "data"),
        "--output-dir", str(tmp_path / "processed"), "--report-csv", str(tmp_path / "r.csv"),
        "--report-dir", str(tmp_path / "report"), *extra,
    ]


@pytest.mark.slow
def test_bench_end_to_end_offline_with_csv_rows_accumulating(tmp_path: Path, capsys):
    summary_json = tmp_path / "summary.json"
    assert main(small_bench_args(tmp_path, "--summary-json", str(summary_json))) == 0
    out = capsys.readouterr().out
    assert "round 1" in out and "(identical)" in out and "speedup" in out
    assert "serial fraction" in out and "all outputs pixel-identical" in out
    # outputs in processed/sequential and processed/dask, one per input
    assert len(list((tmp_path / "processed" / "sequential").glob("*.jpg"))) == 8
    assert len(list((tmp_path / "processed" / "dask").glob("*.jpg"))) == 8
    data = json.loads(summary_json.read_text())
    assert data["ok"] is True and data["images"] == 8 and data["failures"] == []
    assert data["fetch"]["generated"] == 8  # offline: every image generated
    assert data["rounds"][1]["dask_identical"] is True
    rows = results.read_rows(tmp_path / "r.csv")
    assert len(rows) == 1 and rows[0]["executor"] == "dask" and rows[0]["identical"] == "true"
    assert float(rows[0]["speedup"]) > 0 and rows[0]["cpu_model"] and rows[0]["opencv_version"]
    assert float(rows[0]["ceiling"]) > 0  # the hardware ceiling, measured by default
    assert "vs ceiling" in out
    assert (tmp_path / "report" / "report.html").is_file()
    # a second run reuses the dataset and appends; the header stays single
    assert main(small_bench_args(tmp_path, "--executors", "dask,threads", "--no-ceiling")) == 0
    rows = results.read_rows(tmp_path / "r.csv")
    assert [r["executor"] for r in rows] == ["dask", "dask", "threads"]
    assert (tmp_path / "r.csv").read_text().count("schema_version") == 1


def test_run_reports_a_corrupt_image_and_processes_the_rest(tmp_path: Path, capsys):
    make_images(tmp_path / "in", 4)
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0not a jpeg at all")
    summary_json = tmp_path / "s.json"
    code = main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                 "--blur-radius", "3", "--quiet", "--summary-json", str(summary_json)])
    assert code == 1
    out = capsys.readouterr().out
    assert "4/5 images anonymized" in out and "broken.jpg" in out
    data = json.loads(summary_json.read_text())
    assert data["ok"] == 4 and data["failed"] == 1
    assert data["failures"][0]["image"] == "broken.jpg" and "decode" in data["failures"][0]["reason"]
    assert sorted(p.name for p in (tmp_path / "out" / "sequential").glob("*.jpg")) == [
        f"img_{i:03d}.jpg" for i in range(4)]


def test_fetch_offline_fails_fast_and_completes_the_dataset(tmp_path: Path, capsys):
    code = main(["fetch", "--num-images", "6", "--width", "128", "--height", "128", "--quiet",
                 "--source-url", closed_port_url(), "--input-dir", str(tmp_path / "d"),
                 "--summary-json", str(tmp_path / "f.json")])
    assert code == 0
    data = json.loads((tmp_path / "f.json").read_text())
    assert data["generated"] == 6 and data["downloaded"] == 0 and data["failed"] == 0
    assert data["unreachable_hosts"]  # the circuit breaker gave up on the host
    assert len(list((tmp_path / "d").glob("img_*.jpg"))) == 6


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--workers", "0"], "workers must be >= 1, got 0"),
        (["run", "--batch-size", "lots"], "batch-size must be a positive integer or 'auto'"),
        (["run", "--blur-radius", "-1"], "must be > 0, got -1"),
        (["run", "--input-dir", "/nonexistent/folder"], "input folder not found"),
        (["bench", "--executors", "sequential"], "at least one parallel executor"),
        (["bench", "--executors", "dask,gpu"], "executors must be among"),
        (["run", "--executor", "gpu"], "invalid choice"),
        (["bench", "--num-images", "ten"], "invalid int value"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        sys.exit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_original_script_and_module_entry_points(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    help_text = subprocess.run([sys.executable, str(ROOT / "ParaBlur.py"), "--help"], env=env,
                               capture_output=True, text=True, timeout=60, check=True).stdout
    for flag in ("--num-images", "--batch-size", "--workers", "--trials", "--warmup",
                 "--source-url", "--input-dir", "--output-dir", "--blur-radius", "--timeout-s",
                 "--retries", "--force-download", "--width", "--height", "--threads-per-worker",
                 "--passes", "--open-dashboard", "--report-csv", "--include-dask-startup"):
        assert flag in help_text
    proc = subprocess.run([sys.executable, "-m", "parablur", "--version"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and parablur.__version__ in proc.stdout


@pytest.mark.slow
def test_original_script_runs_the_benchmark(tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    args = small_bench_args(tmp_path, "--no-ceiling")[1:]
    proc = subprocess.run([sys.executable, str(ROOT / "ParaBlur.py"), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "all outputs pixel-identical" in proc.stdout
    # quiet: none of distributed's INFO lines or shutdown tracebacks
    assert "distributed." not in proc.stderr and "Traceback" not in proc.stderr
    assert len(results.read_rows(tmp_path / "r.csv")) == 1


def test_public_api_is_listed_and_importable():
    for name in parablur.__all__:
        assert hasattr(parablur, name), name
    for name in ("fetch_dataset", "anonymize", "run_benchmark", "FetchConfig", "RunConfig",
                 "BenchConfig", "ParaBlurError"):
        assert name in parablur.__all__


@pytest.mark.slow
def test_run_with_dask_auto_batches_and_a_performance_report(tmp_path: Path, capsys):
    make_images(tmp_path / "in", 9, size=(64, 80))
    report = tmp_path / "perf.html"
    code = main(["run", "--executor", "dask", "--workers", "2", "--batch-size", "auto",
                 "--blur-radius", "2", "--no-dashboard", "--quiet",
                 "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                 "--performance-report", str(report), "--summary-json", str(tmp_path / "s.json")])
    assert code == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["ok"] == 9 and data["workers"] == 2 and data["batch_size"] >= 1
    assert report.is_file() and "Dask Performance Report" in report.read_text()
    assert len(list((tmp_path / "out" / "dask").glob("*.jpg"))) == 9
