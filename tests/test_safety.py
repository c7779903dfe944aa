"""Safe defaults: local clusters listen on loopback only; outputs stay inside --output-dir."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import psutil
import pytest
from conftest import make_images

from parablur.config import ClusterConfig, RunConfig
from parablur.errors import ConfigError
from parablur.executors.dask_executor import DaskExecutor
from parablur.files import remove_stale_temps
from parablur.pipeline import anonymize
from parablur.storage import LocalStore


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    found = set()
    for pid in pids:
        try:
            for conn in psutil.Process(pid).net_connections("inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster_and_dashboard_listen_on_loopback_only(processes: bool) -> None:
    me = os.getpid()
    before = _listening([me])
    ex = DaskExecutor(2, 1, ClusterConfig(), processes=processes)
    with ex:
        pids = [me] + [p.pid for p in psutil.Process(me).children(recursive=True)]
        opened = _listening(pids) - before
        assert ex.dashboard_link and ex.dashboard_link.startswith("http://127.0.0.1:")
    assert opened, "the dashboard at least should be listening"
    for ip, port in opened:
        assert ipaddress.ip_address(ip).is_loopback, f"{ip}:{port} is not loopback"


def test_outputs_never_leave_the_output_folder(tmp_path: Path) -> None:
    src = tmp_path / "in"
    make_images(src / "sub", 1, size=(32, 32))
    outside = tmp_path / "outside"
    outside.mkdir()
    config = RunConfig(input_dir=src, output_dir=tmp_path / "out")
    out_dir = tmp_path / "out" / "sequential"
    # A key that climbs out of the output folder is refused.
    with pytest.raises(ConfigError, match=r"'\.\.' parts"):
        LocalStore(out_dir).write("sub/../../escape.jpg", b"x")
    # A symlink planted in ParaBlur's output folder that points elsewhere: that image fails, alone.
    assert anonymize(config).ok == 1
    shutil.rmtree(out_dir / "sub")
    (out_dir / "sub").symlink_to(outside, target_is_directory=True)
    summary = anonymize(replace(config, force=True))
    assert summary.failed == 1 and "outside the output folder" in summary.failures[0]["reason"]
    assert list(outside.iterdir()) == []
    # An input that is a symlink to a file elsewhere is read, and written inside.
    (out_dir / "sub").unlink()
    make_images(tmp_path / "elsewhere", 1, size=(32, 32), seed=2)
    (src / "linked.jpg").symlink_to(tmp_path / "elsewhere" / "img_000.jpg")
    summary = anonymize(config)
    assert summary.ok == 2 and (out_dir / "linked.jpg").is_file()
    assert not (out_dir / "linked.jpg").is_symlink()
    assert (tmp_path / "elsewhere" / "img_000.jpg").stat().st_size > 0


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    stale = [tmp_path / ".img.jpg.0123abcd.part", tmp_path / "a" / ".x y.png.deadbeef.part"]
    keep = [tmp_path / "img.jpg", tmp_path / ".parablur-outputs.json", tmp_path / "notes.part"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in keep)


def _digests(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its sha256 and mtime, to show nothing was touched."""
    import hashlib

    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                               p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv", [
    # A benchmark whose dataset is a previous run's output folder: round 1 would delete it.
    ["bench", "--input-dir", "processed/sequential", "--trials", "1", "--warmup", "0",
     "--no-ceiling", "--no-report"],
    ["scale", "--input-dir", "processed/sequential", "--workers-list", "1", "--batch-sizes", "1",
     "--trials", "1", "--warmup", "0", "--no-ceiling", "--no-report"],
    # Outputs written over their own inputs, or fed back in as inputs on the next run.
    ["run", "--input-dir", "processed/sequential", "--output-dir", "processed/sequential"],
    ["run", "--input-dir", "photos", "--output-dir", "photos/out"],
    ["run", "--input-dir", "photos/sub", "--output-dir", "photos", "--force"],
    ["bench", "--input-dir", "photos", "--output-dir", "photos/processed", "--no-ceiling"],
])
def test_overlapping_input_and_output_folders_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        argv: list[str]) -> None:
    from parablur.cli import main

    monkeypatch.chdir(tmp_path)
    make_images(tmp_path / "processed" / "sequential", 3, size=(32, 32))
    make_images(tmp_path / "photos" / "sub", 2, size=(32, 32), seed=1)
    before = _digests(tmp_path)
    assert main([*argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "must not contain one another" in err[0], err
    assert _digests(tmp_path) == before


def test_overlap_is_refused_by_the_api_and_through_symlinks(tmp_path: Path) -> None:
    from parablur.config import BenchConfig, FetchConfig
    from parablur.errors import ConfigError

    (tmp_path / "data").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "data", target_is_directory=True)
    with pytest.raises(ConfigError, match="must not contain one another"):
        RunConfig(input_dir=tmp_path / "data", output_dir=tmp_path / "alias" / "out")
    with pytest.raises(ConfigError, match="must not contain one another"):
        BenchConfig(fetch=FetchConfig(input_dir=tmp_path / "out" / "dask"),
                    run=RunConfig(output_dir=tmp_path / "out"))
    # Siblings with a common prefix do not overlap.
    RunConfig(input_dir=tmp_path / "data", output_dir=tmp_path / "data2")


def test_an_output_folder_parablur_did_not_make_is_never_written_or_cleared(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from parablur.cli import main

    src = tmp_path / "in"
    make_images(src, 2, size=(32, 32))
    # The user's own folder happens to sit where the outputs would go, with a same-named file.
    theirs = tmp_path / "out" / "sequential"
    make_images(theirs, 1, size=(16, 16), seed=5)
    (theirs / "notes.txt").write_text("mine")
    before = _digests(tmp_path / "out")
    for argv in (["run", "--input-dir", str(src), "--output-dir", str(tmp_path / "out")],
                 ["run", "--input-dir", str(src), "--output-dir", str(tmp_path / "out"), "--force"],
                 ["bench", "--input-dir", str(src), "--output-dir", str(tmp_path / "out"),
                  "--executors", "threads", "--workers", "2", "--trials", "1", "--warmup", "0",
                  "--no-ceiling", "--no-report", "--report-csv", str(tmp_path / "r.csv")]):
        assert main([*argv, "--quiet"]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "ParaBlur did not make" in err[-1], err
    assert _digests(tmp_path / "out") == before
    # A folder ParaBlur made is its own to redo: a second forced run clears and rewrites it.
    out2 = tmp_path / "out2"
    assert main(["run", "--input-dir", str(src), "--output-dir", str(out2), "--quiet"]) == 0
    assert main(["run", "--input-dir", str(src), "--output-dir", str(out2), "--force",
                 "--quiet"]) == 0
    assert sorted(p.name for p in (out2 / "sequential").iterdir() if p.suffix == ".jpg") == [
        "img_000.jpg", "img_001.jpg"]


def test_report_and_results_files_never_overwrite_or_land_among_the_users_files(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from parablur.cli import main

    src = tmp_path / "in"
    make_images(src, 2, size=(32, 32))
    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    (mydocs / "summary.md").write_text("my notes")
    base = ["bench", "--input-dir", str(src), "--output-dir", str(tmp_path / "out"),
            "--executors", "threads", "--workers", "2", "--trials", "1", "--warmup", "0",
            "--no-ceiling", "--quiet", "--report-csv", str(tmp_path / "r.csv")]
    # A report folder holding the user's files is refused before any round runs.
    assert main([*base, "--report-dir", str(mydocs)]) == 2
    assert "ParaBlur did not make" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists() and (mydocs / "summary.md").read_text() == "my notes"
    # ... and by `report` itself.
    assert main([*base, "--no-report"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "r.csv"), "--out", str(mydocs)]) == 2
    assert "ParaBlur did not make" in capsys.readouterr().err
    assert (mydocs / "summary.md").read_text() == "my notes"
    assert sorted(p.name for p in mydocs.iterdir()) == ["summary.md"]
    # The results CSV, the summary or the report inside the output (cleared every round) or
    # input folder is refused up front.
    for extra in (["--report-csv", str(tmp_path / "out" / "sequential" / "r.csv")],
                  ["--summary-json", str(src / "s.json")],
                  ["--report-dir", str(tmp_path / "out" / "rep")]):
        assert main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "must not be inside" in err[0], err
    assert sorted(p.name for p in src.iterdir()) == ["img_000.jpg", "img_001.jpg"]
    # A results CSV or a task timeline that is not ParaBlur's is refused before round 1.
    (tmp_path / "mine.csv").write_text("a,b\n1,2\n")
    assert main([*base[:-1], str(tmp_path / "mine.csv"), "--no-report"]) == 2
    assert (tmp_path / "mine.csv").read_text() == "a,b\n1,2\n"
    (tmp_path / "r2-tasks.csv").write_text("my,own,data\n")
    assert main([*base[:-1], str(tmp_path / "r2.csv"), "--no-report"]) == 2
    assert not (tmp_path / "r2.csv").exists()
    assert (tmp_path / "r2-tasks.csv").read_text() == "my,own,data\n"


def test_a_summary_or_performance_report_never_overwrites_a_users_file(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from parablur.cli import main

    make_images(tmp_path / "in", 2, size=(32, 32))
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "data"}')
    page = tmp_path / "page.html"
    page.write_text("<html>mine</html>")
    run = ["run", "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
           "--quiet"]
    for extra in (["--summary-json", str(mine)], ["--performance-report", str(page)]):
        assert main([*run, *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "refusing to overwrite" in err[0], err
    assert mine.read_text() == '{"my": "data"}' and page.read_text() == "<html>mine</html>"
    assert not (tmp_path / "out").exists()
    # A summary ParaBlur wrote is its own to write again.
    ours = tmp_path / "s.json"
    assert main([*run, "--summary-json", str(ours)]) == 0
    assert main([*run, "--summary-json", str(ours)]) == 0
    assert json.loads(ours.read_text())["skipped"] == 2
