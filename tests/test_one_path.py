"""One data path: a folder, a file:// URL and an s3:// prefix behave alike, records survive a
SIGKILL, a record that is not JSON fails its image alone, and the outputs of different commands
never collide."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import cv2
import pytest
from conftest import make_images, user_package
from dask_cluster import child_env
from seaweed import BUCKET

from parablur import cli

STEPS = textwrap.dedent('''
    import os
    import time

    import numpy as np

    def count_dark(image):
        """An output and a JSON record."""
        time.sleep(float(os.environ.get("PARABLUR_TEST_STEP_S", "0")))
        return 255 - image, {"dark_pixels": int((image < 64).sum())}

    def numpy_count(image):
        """A record holding a numpy integer for every other image: not JSON."""
        dark = (image < 64).sum()
        return 255 - image, {"n": dark if image[0, 0, 0] % 2 else int(dark)}
''')


@pytest.fixture
def steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user's module (importable here and in subprocesses); its package's folder."""
    with user_package(tmp_path, "pathsteps", STEPS, monkeypatch) as folder:
        yield str(folder)


def _run(*argv: str, summary: Path) -> dict:
    code = cli.main(["run", *argv, "--quiet", "--summary-json", str(summary)])
    data = json.loads(summary.read_text())
    data["rc"] = code
    return data


def _lines(text: str) -> dict[str, dict]:
    return {item["image"]: item for item in map(json.loads, text.splitlines())}


# -- a record that is not JSON ----------------------------------------------------------------

def test_a_record_that_is_not_json_fails_its_image_alone_and_is_never_skipped(tmp_path, steps):
    images = make_images(tmp_path / "in", 6, size=(24, 32), seed=3)
    odd = sorted(p.name for p in images if cv2.imread(str(p))[0, 0, 0] % 2)
    assert 0 < len(odd) < 6  # some images give numpy records, the others plain ints
    argv = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
            "--workload", "pathsteps.steps:numpy_count"]
    for attempt in range(2):  # the rerun redoes the failed images, and fails them again
        first = _run(*argv, summary=tmp_path / f"s{attempt}.json")
        assert first["rc"] == 1
        assert sorted(f["image"] for f in first["failures"]) == odd
        assert all(f["reason"].startswith("record: TypeError") and "JSON serializable" in f["reason"]
                   for f in first["failures"]), first["failures"]
        assert (first["ok"], first["skipped"]) == ((6 - len(odd), 0) if attempt == 0
                                                   else (0, 6 - len(odd)))
        lines = _lines((tmp_path / "out" / "sequential" / "records.jsonl").read_text())
        assert sorted(lines) == sorted(p.name for p in images if p.name not in odd)
        # no output under a final name for an image that failed
        assert not [n for n in odd if (tmp_path / "out" / "sequential" / n).exists()]


# -- the same images as a folder, file:// and s3:// ---------------------------------------------

def _outputs_of(location: str, seaweed) -> dict[str, bytes]:
    """Every visible object below an output location, by key, with its bytes."""
    if location.startswith("s3://"):
        prefix = location[len(f"s3://{BUCKET}/"):]
        client = seaweed.client()
        return {k[len(prefix) + 1:]: client.cat_file(f"{BUCKET}/{k}") for k in seaweed.keys(prefix)
                if not k.rsplit("/", 1)[-1].startswith(".")}
    root = Path(location.removeprefix("file://"))
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


@pytest.mark.slow
def test_a_folder_a_file_url_and_an_s3_prefix_give_the_same_outputs_skips_records_and_force(
        tmp_path, steps, seaweed):
    make_images(tmp_path / "in" / "sub", 3, size=(40, 56), seed=11)
    make_images(tmp_path / "in", 2, size=(40, 56), seed=12)
    prefix = f"paths-{uuid.uuid4().hex[:10]}"
    seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{p.relative_to(tmp_path / 'in').as_posix()}":
                           p.read_bytes() for p in (tmp_path / "in").rglob("*.jpg")})
    options = tmp_path / "s3.json"
    options.write_text(json.dumps(seaweed.options()))
    where = {
        "folder": (str(tmp_path / "in"), str(tmp_path / "out-folder")),
        "file": (f"file://{tmp_path / 'in'}", f"file://{tmp_path / 'out-file'}"),
        "s3": (f"s3://{BUCKET}/{prefix}/in", f"s3://{BUCKET}/{prefix}/out"),
    }
    seen: dict[str, dict] = {}
    for kind, (src, dst) in where.items():
        argv = ["--input-dir", src, "--output-dir", dst, "--workload", "pathsteps.steps:count_dark",
                "--storage-options", f"@{options}"]
        first = _run(*argv, summary=tmp_path / f"{kind}-1.json")
        again = _run(*argv, summary=tmp_path / f"{kind}-2.json")
        outputs = _outputs_of(f"{dst}/sequential", seaweed)
        forced = _run(*argv, "--force", summary=tmp_path / f"{kind}-3.json")
        after = _outputs_of(f"{dst}/sequential", seaweed)
        seen[kind] = {
            "counts": [(s["rc"], s["ok"], s["skipped"], s["failed"]) for s in (first, again, forced)],
            "outputs": {k: v for k, v in outputs.items() if k != "records.jsonl"},
            "records": _lines(outputs["records.jsonl"].decode()),
            "after force": sorted(after) == sorted(outputs)
            and all(after[k] == v for k, v in outputs.items()),
        }
    assert seen["folder"]["counts"] == [(0, 5, 0, 0), (0, 0, 5, 0), (0, 5, 0, 0)]
    assert len(seen["folder"]["outputs"]) == 5 and len(seen["folder"]["records"]) == 5
    assert "sub/img_000.jpg" in seen["folder"]["outputs"]
    assert seen["folder"]["after force"]  # --force rewrote the same outputs, deleted nothing
    for kind in ("file", "s3"):
        assert seen[kind] == seen["folder"], kind


# -- records after a SIGKILL --------------------------------------------------------------------

def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgid(0, 0)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_a_sigkilled_run_with_records_is_resumed_with_one_line_per_output(tmp_path, steps, kind,
                                                                           request):
    n = 16
    make_images(tmp_path / "in", n, size=(48, 64), seed=5)
    if kind == "s3":
        seaweed = request.getfixturevalue("seaweed")
        prefix = f"kill-{uuid.uuid4().hex[:10]}"
        seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{p.name}": p.read_bytes()
                               for p in (tmp_path / "in").iterdir()})
        (tmp_path / "s3.json").write_text(json.dumps(seaweed.options()))
        src, dst = f"s3://{BUCKET}/{prefix}/in", f"s3://{BUCKET}/{prefix}/out"
        extra = ["--storage-options", f"@{tmp_path / 's3.json'}"]
    else:
        seaweed, src, dst, extra = None, str(tmp_path / "in"), str(tmp_path / "out"), []
    argv = ["run", "--input-dir", src, "--output-dir", dst, "--executor", "dask", "--workers", "2",
            "--batch-size", "1", "--workload", "pathsteps.steps:count_dark", "--quiet",
            "--no-dashboard", *extra]
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([steps, env["PYTHONPATH"]])
    env["PARABLUR_TEST_STEP_S"] = "0.3"  # ~2.4 s of work on two workers: time to kill it
    proc = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(_outputs_of(f"{dst}/dask", seaweed)) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the client, its cluster and workers, at once
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    left = _outputs_of(f"{dst}/dask", seaweed)
    made = sorted(k for k in left if k.endswith(".jpg"))
    assert 3 <= len(made) < n, made
    env["PARABLUR_TEST_STEP_S"] = "0"
    rerun = subprocess.run([sys.executable, "-m", "parablur", *argv, "--summary-json",
                            str(tmp_path / "rerun.json")], env=env, capture_output=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    summary = json.loads((tmp_path / "rerun.json").read_text())
    assert summary["ok"] + summary["skipped"] == n and summary["failed"] == 0
    final = _outputs_of(f"{dst}/dask", seaweed)
    outputs = sorted(k for k in final if k.endswith(".jpg"))
    lines = _lines(final["records.jsonl"].decode())
    assert sorted(lines) == outputs == sorted(p.name for p in (tmp_path / "in").iterdir())
    # Every line is its image's: the same as a run that was never killed.
    ref = _run("--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "ref"),
               "--workload", "pathsteps.steps:count_dark", summary=tmp_path / "ref.json")
    assert ref["ok"] == n
    assert lines == _lines((tmp_path / "ref" / "sequential" / "records.jsonl").read_text())
    assert {k: final[k] for k in outputs} == {
        k: v for k, v in _outputs_of(str(tmp_path / "ref" / "sequential"), None).items()
        if k.endswith(".jpg")}


# -- outputs of different commands never collide --------------------------------------------

def test_bench_after_run_leaves_the_runs_outputs_alone(tmp_path, capsys):
    make_images(tmp_path / "extra", 3, size=(24, 32), seed=2)
    assert cli.main(["run", "--input-dir", str(tmp_path / "extra"), "--output-dir",
                     str(tmp_path / "out"), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    capsys.readouterr()
    code = cli.main(["bench", "--input-dir", str(tmp_path / "data"), "--output-dir",
                     str(tmp_path / "out"), "--executors", "dask", "--num-images", "2",
                     "--width", "32", "--height", "24", "--source-url", "http://127.0.0.1:9/x",
                     "--report-csv", str(tmp_path / "r.csv"), "--no-report", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "parablur run" in err and "Traceback" not in err, err
    after = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert after == before  # nothing deleted, rewritten or added
    assert not (tmp_path / "data").exists()  # refused before the dataset was fetched
    assert not (tmp_path / "r.csv").exists()


def test_a_run_never_writes_into_a_benchmarks_outputs(tmp_path, capsys):
    from parablur.files import OUTPUT_MARKER, marker_text

    legs = tmp_path / "out" / "sequential"
    legs.mkdir(parents=True)
    (legs / OUTPUT_MARKER).write_text(marker_text("bench"))
    (legs / "img_000.jpg").write_bytes(b"a bench output")
    make_images(tmp_path / "in", 2, size=(24, 32))
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "parablur bench" in err, err
    assert (legs / "img_000.jpg").read_bytes() == b"a bench output"
    assert sorted(p.name for p in legs.iterdir()) == [OUTPUT_MARKER, "img_000.jpg"]


# -- one writer per output ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_second_run_on_the_same_output_is_refused_while_the_first_runs(tmp_path, steps):
    make_images(tmp_path / "in", 8, size=(24, 32))
    argv = ["run", "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
            "--workload", "pathsteps.steps:count_dark", "--quiet"]
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([steps, env["PYTHONPATH"]])
    env["PARABLUR_TEST_STEP_S"] = "0.5"  # ~4 s of work
    first = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lock = tmp_path / "out" / "sequential" / ".parablur-lock"
        deadline = time.monotonic() + 60
        while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        assert lock.exists() and first.poll() is None
        for extra in ([], ["--force"]):
            second = subprocess.run([sys.executable, "-m", "parablur", *argv, *extra], env=env,
                                    capture_output=True, timeout=60)
            err = second.stderr.decode()
            assert second.returncode == 2, err
            assert err.count("\n") == 1 and "is in use by parablur run" in err, err
            assert f"pid {first.pid} " in err
        assert first.wait(timeout=90) == 0, first.stderr.read().decode()[-2000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=10)
    assert not lock.exists()  # released when the run ended
    assert len(list((tmp_path / "out" / "sequential").glob("*.jpg"))) == 8


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_line_that_says_so(tmp_path, capsys):
    from parablur.storage import LockInfo

    make_images(tmp_path / "in", 2, size=(24, 32))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(timeout=30)  # its pid is now free: a run that was killed
    out = tmp_path / "out" / "sequential"
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--quiet"]) == 0
    stale = LockInfo(os.uname().nodename, gone.pid, "parablur run", "2026-01-01T00:00:00+00:00",
                     uuid.uuid4().hex)
    (out / ".parablur-lock").write_bytes(stale.to_bytes())
    capsys.readouterr()
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--quiet", "--force"]) == 0
    err = capsys.readouterr().err
    assert f"taking over the lock of parablur run (pid {gone.pid} on host" in err, err
    assert "that process is gone" in err
    assert not (out / ".parablur-lock").exists()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_writes_its_legs_into_a_store_and_verifies_them_there(tmp_path, seaweed, capsys):
    prefix = f"bench-{uuid.uuid4().hex[:10]}"
    (tmp_path / "s3.json").write_text(json.dumps(seaweed.options()))
    code = cli.main(["bench", "--input-dir", str(tmp_path / "data"), "--output-dir",
                     f"s3://{BUCKET}/{prefix}/out", "--storage-options", f"@{tmp_path / 's3.json'}",
                     "--executors", "dask", "--workers", "2", "--num-images", "5", "--width", "64",
                     "--height", "48", "--source-url", "http://127.0.0.1:9/x", "--warmup", "0",
                     "--trials", "1", "--no-ceiling", "--no-report", "--quiet",
                     "--report-csv", str(tmp_path / "r.csv"), "--summary-json",
                     str(tmp_path / "s.json")])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert code == 0, capsys.readouterr()
    assert summary["ok"] and summary["rounds"][0]["dask_identical"]
    seq = _outputs_of(f"s3://{BUCKET}/{prefix}/out/sequential", seaweed)
    par = _outputs_of(f"s3://{BUCKET}/{prefix}/out/dask", seaweed)
    assert sorted(seq) == sorted(par) == [f"img_{i:04d}.jpg" for i in range(5)]
    keys = seaweed.keys(f"{prefix}/out/dask")
    assert f"{prefix}/out/dask/.parablur-output" in keys
    assert f"{prefix}/out/dask/.parablur-lock" not in keys  # released at the end


# -- a refused run leaves nothing -----------------------------------------------------------

def test_a_run_refused_after_its_output_was_claimed_leaves_nothing(tmp_path):
    from parablur.config import RunConfig
    from parablur.errors import ConfigError
    from parablur.pipeline import anonymize

    make_images(tmp_path / "in", 2, size=(24, 32))
    # A workload the workers cannot import is found by the preflight, after the output was
    # claimed, locked and probed (the library does not import it on the client first).
    with pytest.raises(ConfigError, match="cannot import"):
        anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "new" / "out",
                            workload="no_such_module_here:step"))
    assert not (tmp_path / "new").exists()
    # An output folder that was already ParaBlur's keeps what it had, its marker too.
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--quiet"]) == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*"))
    with pytest.raises(ConfigError, match="cannot import"):
        anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                            workload="no_such_module_here:step"))
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "out").rglob("*")) == before


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_run_whose_scheduler_cannot_be_reached_leaves_nothing(tmp_path, capsys):
    make_images(tmp_path / "in", 2, size=(24, 32))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--executor", "dask", "--scheduler",
                     f"tcp://127.0.0.1:{port}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot use Dask scheduler" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_killed_runs_pool_workers_stop_at_once_and_write_nothing_after(tmp_path, steps):
    """A process pool's workers outlived a client killed outright and went on writing its
    queued batches, behind the back of the next run (which takes over the dead run's lock)."""
    import psutil

    make_images(tmp_path / "in", 12, size=(24, 32))
    out = tmp_path / "out" / "processes"
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([steps, env["PYTHONPATH"]])
    env["PARABLUR_TEST_STEP_S"] = "0.4"
    proc = subprocess.Popen([sys.executable, "-m", "parablur", "run", "--input-dir",
                             str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                             "--executor", "processes", "--workers", "2", "--batch-size", "4",
                             "--workload", "pathsteps.steps:count_dark", "--quiet"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            workers = psutil.Process(proc.pid).children(recursive=True) or workers
            if list(out.glob("*.jpg")):
                break
            time.sleep(0.02)
        assert proc.poll() is None and len(workers) >= 2
        proc.kill()  # the client alone: its pool's workers are not signalled
        proc.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=5)
    finally:
        for p in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    assert not alive, f"pool workers still running after their client was killed: {alive}"
    made = sorted(p.name for p in out.glob("*.jpg"))
    time.sleep(1.0)
    assert sorted(p.name for p in out.glob("*.jpg")) == made  # nothing written since
    assert len(made) < 12


# -- what a review found --------------------------------------------------------------------

def _bench_argv(tmp_path: Path, out: Path) -> list[str]:
    return ["bench", "--input-dir", str(tmp_path / "data"), "--output-dir", str(out),
            "--executors", "threads", "--workers", "2", "--num-images", "2", "--width", "32",
            "--height", "24", "--source-url", "http://127.0.0.1:9/x", "--warmup", "0",
            "--trials", "1", "--no-ceiling", "--no-report", "--report-csv",
            str(tmp_path / "r.csv"), "--quiet"]


def test_bench_never_empties_outputs_of_a_parablur_that_did_not_name_their_command(tmp_path,
                                                                                  capsys):
    legs = tmp_path / "out" / "sequential"
    legs.mkdir(parents=True)
    # the marker as ParaBlur wrote it before it recorded which command made a folder
    (legs / ".parablur-output").write_text(
        "Made by ParaBlur: this folder's contents are outputs it may replace.\n")
    (legs / "old.jpg").write_bytes(b"an output of an earlier run")
    assert cli.main(_bench_argv(tmp_path, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "earlier ParaBlur" in err, err
    assert (legs / "old.jpg").read_bytes() == b"an output of an earlier run"
    assert not (tmp_path / "data").exists()  # before the dataset was fetched


def test_a_held_lock_refuses_a_bench_before_it_fetches_its_dataset(tmp_path, capsys):
    from parablur.storage import LockInfo

    legs = tmp_path / "out" / "sequential"
    legs.mkdir(parents=True)
    (legs / ".parablur-output").write_text("Made by ParaBlur (parablur bench): outputs.\n")
    me = LockInfo.mine("parablur bench")  # this very process: alive
    (legs / ".parablur-lock").write_bytes(me.to_bytes())
    assert cli.main(_bench_argv(tmp_path, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "is in use by parablur bench" in err and err.count("\n") == 1, err
    assert not (tmp_path / "data").exists()
    assert (legs / ".parablur-lock").read_bytes() == me.to_bytes()


def test_a_report_never_goes_into_a_runs_outputs_nor_a_run_into_a_report(tmp_path, capsys):
    make_images(tmp_path / "in", 2, size=(24, 32))
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--quiet"]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    csv = tmp_path / "r.csv"
    code = cli.main([*_bench_argv(tmp_path, tmp_path / "bench"), "--report-csv", str(csv)])
    assert code == 0 and csv.is_file()
    capsys.readouterr()
    assert cli.main(["report", str(csv), "--out", str(tmp_path / "out" / "sequential"),
                     "--quiet"]) == 2
    assert "parablur run" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "out").rglob("*") if p.is_file()} == before
    assert cli.main(["report", str(csv), "--out", str(tmp_path / "charts"), "--quiet"]) == 0
    charts = sorted(p.name for p in (tmp_path / "charts").iterdir())
    capsys.readouterr()
    make_images(tmp_path / "more", 1, size=(24, 32))
    # a run whose output location is the report's folder
    (tmp_path / "runout").mkdir()
    os.symlink(tmp_path / "charts", tmp_path / "runout" / "sequential")
    assert cli.main(["run", "--input-dir", str(tmp_path / "more"), "--output-dir",
                     str(tmp_path / "runout"), "--quiet"]) == 2
    assert "parablur report" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == charts


def test_a_refused_run_leaves_an_empty_folder_of_the_users_as_it_was(tmp_path, capsys):
    make_images(tmp_path / "in", 2, size=(24, 32))
    (tmp_path / "o" / "sequential").mkdir(parents=True)  # the user's, empty
    theirs = tmp_path / "o" / "sequential-boxes"
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine")
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "o"), "--workload", "faces", "--draw-boxes", "--quiet"]) == 2
    assert "did not make" in capsys.readouterr().err
    assert list((tmp_path / "o" / "sequential").iterdir()) == []  # no marker left behind
    assert [p.name for p in theirs.iterdir()] == ["notes.txt"]


def test_a_file_name_with_a_backslash_is_an_image_like_any_other(tmp_path):
    images = make_images(tmp_path / "in", 2, size=(24, 32))
    os.replace(images[0], tmp_path / "in" / "a\\b.jpg")  # sorts first
    assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--quiet", "--summary-json",
                     str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["ok"] == 2
    assert (tmp_path / "out" / "sequential" / "a\\b.jpg").is_file()


def test_a_function_that_returns_no_records_leaves_no_record_file(tmp_path, monkeypatch):
    source = "def invert(image):\n    return 255 - image\n"
    make_images(tmp_path / "in", 2, size=(24, 32))
    with user_package(tmp_path, "plainsteps", source, monkeypatch):
        for extra in ([], ["--force"]):
            assert cli.main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                             str(tmp_path / "out"), "--workload", "plainsteps.steps:invert",
                             "--quiet", *extra]) == 0
    assert not (tmp_path / "out" / "sequential" / "records.jsonl").exists()


def test_outputs_the_workers_cannot_reach_are_checked_for_resume_by_the_client(tmp_path):
    """--transfer bytes (workers on other hosts): the client, which alone reaches the output
    folder, finds what is up to date, and ships nothing for it."""
    from parablur.config import RunConfig
    from parablur.executors import create_executor
    from parablur.pipeline import run_images
    from parablur.storage import LocalStore

    make_images(tmp_path / "in", 5, size=(24, 32))
    config = RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out", executor="threads",
                       workers=2, transfer="bytes", batch_size=2)
    inp, out = LocalStore(tmp_path / "in"), LocalStore(tmp_path / "out" / "threads")
    with create_executor("threads", config) as executor:
        first = run_images(executor, config, inp, out)
        assert (first.ok, first.skipped) == (5, 0)
        (tmp_path / "in" / "img_001.jpg").write_bytes(
            (tmp_path / "in" / "img_002.jpg").read_bytes())  # one input changed
        again = run_images(executor, config, inp, out)
        assert (again.ok, again.skipped) == (1, 4)
        forced = run_images(executor, config, inp, out, force=True)
        assert (forced.ok, forced.skipped) == (5, 0)
        skipped = run_images(executor, config, inp, out)
    assert (skipped.ok, skipped.skipped) == (0, 5)
    assert skipped.stages["read_s"] == 0.0  # decided on the client: the workers read nothing


def test_bench_fast_with_an_empty_image_names_it_and_measures_the_rest(tmp_path, capsys):
    make_images(tmp_path / "ds", 3, size=(48, 64))
    (tmp_path / "ds" / "img_001.jpg").write_bytes(b"")  # a user's broken file
    code = cli.main(["bench", "--input-dir", str(tmp_path / "ds"), "--output-dir",
                     str(tmp_path / "out"), "--engine", "fast", "--executors", "threads",
                     "--workers", "2", "--trials", "1", "--warmup", "0", "--no-ceiling",
                     "--no-report", "--report-csv", str(tmp_path / "r.csv"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1  # an image failed; the benchmark itself ran to its end
    assert "failed: [sequential] img_001.jpg: decode: empty file" in out
    assert "accuracy: fast against exact on 2 sampled images" in out
