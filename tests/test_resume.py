"""Resume: up-to-date outputs are skipped; Ctrl-C / SIGTERM stop a run cleanly and it finishes later."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import psutil
import pytest
from conftest import make_images
from dask_cluster import child_env

from parablur import cli
from parablur.config import BlurParams, RunConfig
from parablur.pipeline import anonymize
from parablur.verify import compare_dirs


def _run(src: Path, out: Path, *extra: str) -> dict:
    summary = out.parent / f"summary-{time.monotonic_ns()}.json"
    rc = cli.main(["run", "--input-dir", str(src), "--output-dir", str(out), "--quiet",
                   "--summary-json", str(summary), *extra])
    data = json.loads(summary.read_text())
    data["rc"] = rc
    return data


def test_run_skips_up_to_date_outputs_and_redoes_changed_ones(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "in", 5, size=(48, 64))
    out = tmp_path / "out"
    first = _run(tmp_path / "in", out)
    assert (first["rc"], first["ok"], first["skipped"]) == (0, 5, 0)
    # Each output's resume record beside it (a hidden sidecar in a folder).
    assert (out / "sequential" / ".img_000.jpg.parablur-meta.json").is_file()
    stale = out / "sequential" / ".img_000.jpg.0123abcd.part"  # as a killed writer leaves it
    stale.write_bytes(b"half an image")
    again = _run(tmp_path / "in", out)
    assert (again["rc"], again["ok"], again["skipped"]) == (0, 0, 5)
    assert not stale.exists()
    # Touched but unchanged input: still up to date (its sha256 matches).
    os.utime(paths[0], ns=(time.time_ns(), time.time_ns()))
    # A changed input, a deleted output and a corrupted output are redone.
    make_images(tmp_path / "other", 1, size=(48, 64), seed=9)
    os.replace(tmp_path / "other" / "img_000.jpg", paths[1])
    (out / "sequential" / "img_002.jpg").unlink()
    (out / "sequential" / "img_003.jpg").write_bytes(b"torn")
    third = _run(tmp_path / "in", out)
    assert (third["rc"], third["ok"], third["skipped"]) == (0, 3, 2)
    # Other blur parameters: everything redone; --force too.
    assert _run(tmp_path / "in", out, "--passes", "2")["ok"] == 5
    assert _run(tmp_path / "in", out, "--passes", "2", "--force")["ok"] == 5
    ref = tmp_path / "ref"
    anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=ref, blur=BlurParams(passes=2)))
    assert compare_dirs(ref / "sequential", out / "sequential").ok


def test_force_redoes_every_image_and_deletes_nothing(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 2, size=(32, 32))
    _run(tmp_path / "in", tmp_path / "out")
    # An output left in ParaBlur's own output folder by an earlier run of other inputs.
    stale = tmp_path / "out" / "sequential" / "stale.jpg"
    stale.write_bytes(b"old")
    assert _run(tmp_path / "in", tmp_path / "out")["skipped"] == 2
    assert stale.read_bytes() == b"old"  # a plain run never wipes
    forced = _run(tmp_path / "in", tmp_path / "out", "--force")
    assert (forced["ok"], forced["skipped"]) == (2, 0)  # every image redone
    assert stale.read_bytes() == b"old"  # and nothing deleted


def _default_signals() -> None:
    """In the child: SIGINT and SIGTERM as a foreground terminal program has them.

    A test run started in the background (CI scripts, `cmd &`) inherits an ignored
    SIGINT, which Python keeps; a user's Ctrl-C reaches a foreground process instead.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_cleanly_and_the_next_run_finishes(tmp_path: Path, sig, code) -> None:
    # ~3 s of work on two workers: the output record is saved about once a second, and
    # the interrupt must land while images are still being processed.
    make_images(tmp_path / "in", 16, size=(384, 384), seed=4)
    out = tmp_path / "out"
    argv = ["run", "--executor", "dask", "--workers", "2", "--input-dir", str(tmp_path / "in"),
            "--output-dir", str(out), "--passes", "100", "--batch-size", "1", "--quiet",
            "--no-dashboard"]
    proc = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)
    children: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            children = _children(proc.pid) or children
            # Interrupt once a worker has written a finished output.
            if list((out / "dask").glob("*.jpg")):
                break
            time.sleep(0.02)
        children = _children(proc.pid) or children
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == code, err.decode()[-2000:]
    assert len(lines) == 1 and "interrupted by" in lines[0], lines
    assert len(children) >= 2  # the workers were running
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"stray processes: {alive}"
    done = list((out / "dask").glob("*.jpg"))
    assert not list(out.rglob("*.part"))
    assert 0 < len(done) < 16
    for p in done:  # whatever has a final name is a complete image
        assert cv2.imread(str(p)) is not None
    rest = _run(tmp_path / "in", out, "--executor", "dask", "--workers", "2", "--passes", "100",
                "--no-dashboard")
    assert rest["rc"] == 0 and rest["skipped"] >= 1 and rest["skipped"] + rest["ok"] == 16
    anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "ref",
                        blur=BlurParams(passes=100)))
    assert compare_dirs(tmp_path / "ref" / "sequential", out / "dask").ok
