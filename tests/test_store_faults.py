"""Faults on a store run: an interrupted `parablur run` resumed, a worker killed mid-run.

Against the real SeaweedFS of conftest (``seaweed``): the CLI as a subprocess on a local
Dask cluster, stopped by Ctrl-C (SIGINT to its process group) or SIGKILL of the group;
and `dask scheduler`/`dask worker` subprocesses, one of which is SIGKILLed while it
holds a batch. Afterwards every object under a final key is a complete image, identical
to a local sequential run's, and nothing is lost or written twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
from conftest import make_images, user_package
from dask_cluster import child_env, start_cluster
from seaweed import BUCKET, FlakyProxy

from parablur import cli
from parablur.config import BlurParams, RunConfig
from parablur.files import LOCK_NAME, OUTPUT_MARKER
from parablur.pipeline import anonymize, plan_tasks
from parablur.records import RecordLog
from parablur.storage import LocalStore, open_store
from parablur.storage.base import PROBE_PREFIX
from parablur.worker import Job, process_image

pytestmark = [pytest.mark.timeout(240)]

PASSES = 10  # ~0.05-0.2 s per image here (noisy machine): a run of a few seconds to interrupt
N = 30


@pytest.fixture(scope="module")
def dataset(seaweed, tmp_path_factory) -> tuple[str, dict[str, bytes]]:
    """N images uploaded under a fresh input prefix, and their local sequential outputs by key."""
    root = tmp_path_factory.mktemp("faults")
    make_images(root / "in", N, size=(200, 300), seed=21)
    prefix = f"faults-{uuid.uuid4().hex[:10]}/in"
    seaweed.client().pipe({f"{BUCKET}/{prefix}/{p.name}": p.read_bytes()
                           for p in sorted((root / "in").iterdir())})
    anonymize(RunConfig(input_dir=root / "in", output_dir=root / "ref",
                        blur=BlurParams(passes=PASSES)))
    ref = {p.name: p.read_bytes() for p in (root / "ref" / "sequential").iterdir()
           if not p.name.startswith(".")}
    assert len(ref) == N
    return prefix, ref


def _options_file(path: Path, options: dict) -> str:
    path.write_text(json.dumps(options))
    return f"@{path}"


def _default_signals() -> None:
    """In the child: SIGINT as a foreground terminal program has it (not inherited-ignored),
    and a process group of its own, as a shell gives a command it runs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setpgid(0, 0)


def _outputs(seaweed, out: str) -> dict[str, bytes]:
    """Every object below ``out`` (hidden ones too), by key relative to it, with its bytes."""
    client = seaweed.client()
    return {key[len(out) + 1:]: client.cat_file(f"{BUCKET}/{key}") for key in seaweed.keys(out)}


def _assert_complete_and_identical(objects: dict[str, bytes], ref: dict[str, bytes]) -> None:
    """Only the output marker and finished images, each one decodable and equal to the reference."""
    images = {k: v for k, v in objects.items() if k != OUTPUT_MARKER}
    assert set(images) <= set(ref), sorted(set(images) - set(ref))  # no probe, no temporary name
    for key, data in images.items():
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        want = cv2.imdecode(np.frombuffer(ref[key], np.uint8), cv2.IMREAD_UNCHANGED)
        assert decoded is not None and np.array_equal(decoded, want), key
        assert data == ref[key], key


def _family(pid: int) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).children(recursive=True)
    return []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_store_run_leaves_whole_outputs_and_resumes(seaweed, dataset, tmp_path,
                                                                request, sig) -> None:
    prefix, ref = dataset
    out = f"{prefix.rsplit('/', 1)[0]}/out-{sig.name.lower()}"
    # The first output's upload stalls half-way (and stays so until its worker dies): the
    # interrupt then finds a PUT in flight, as a slow network or a large image would.
    proxy = FlakyProxy(seaweed.s3_port, hold=lambda line: line.startswith(
        f"PUT /{BUCKET}/{out}/dask/img_"))
    request.addfinalizer(proxy.close)
    options = _options_file(tmp_path / "s3.json", seaweed.options(endpoint=proxy.endpoint))
    argv = ["run", "--input-dir", f"s3://{BUCKET}/{prefix}", "--output-dir",
            f"s3://{BUCKET}/{out}", "--executor", "dask", "--workers", "2",
            "--storage-options", options, "--passes", str(PASSES), "--batch-size", "1",
            "--quiet", "--no-dashboard"]
    proc = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)
    family: list[psutil.Process] = []
    client = seaweed.client()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            family = _family(proc.pid) or family
            listed = client.call_s3("list_objects_v2", Bucket=BUCKET, Prefix=f"{out}/dask/img_",
                                    MaxKeys=1)
            if listed.get("Contents") and proxy.held.is_set():
                break  # a worker has written an output, another is uploading one
            time.sleep(0.05)
        family = _family(proc.pid) or family
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, sig)  # Ctrl-C reaches the whole foreground group, as does `kill -9 -PGID`
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    if sig == signal.SIGINT:
        lines = err.decode().strip().splitlines()
        assert proc.returncode == 130, err.decode()[-2000:]
        assert len(lines) == 1 and "interrupted by SIGINT" in lines[0], lines
    else:
        assert proc.returncode == -signal.SIGKILL
    assert len(family) >= 2  # the workers were running
    _, alive = psutil.wait_procs(family, timeout=15)
    assert not alive, f"stray processes: {alive}"  # nothing can write after this point

    objects = _outputs(seaweed, f"{out}/dask")
    # A killed run's lock stays (nothing ran to remove it); the next run takes it over.
    assert (objects.pop(LOCK_NAME, None) is not None) == (sig == signal.SIGKILL)
    _assert_complete_and_identical(objects, ref)
    assert proxy.held_request is not None
    cut = proxy.held_request[0].rsplit("/", 1)[1]
    assert cut not in objects  # the upload cut short left nothing under its final key
    done = sorted(k for k in objects if k != OUTPUT_MARKER)
    assert 0 < len(done) < N, len(done)

    summary = tmp_path / "second.json"
    rest = subprocess.run([sys.executable, "-m", "parablur", *argv, "--summary-json", str(summary)],
                          env=child_env(), capture_output=True, timeout=180)
    assert rest.returncode == 0, rest.stderr.decode()[-2000:]
    assert ("taking over the lock of parablur run" in rest.stderr.decode()) == (sig == signal.SIGKILL)
    second = json.loads(summary.read_text())
    assert (second["images"], second["skipped"], second["ok"], second["failed"]) == \
        (N, len(done), N - len(done), 0), second["failures"]
    final = _outputs(seaweed, f"{out}/dask")
    _assert_complete_and_identical(final, ref)
    assert sorted(final) == sorted([OUTPUT_MARKER, *ref])
    assert all(final[k] == objects[k] for k in done)


@pytest.mark.slow
def test_ctrl_c_during_the_write_probe_does_not_block_the_next_run(seaweed, dataset, tmp_path,
                                                                    request) -> None:
    prefix, ref = dataset
    out = f"{prefix.rsplit('/', 1)[0]}/out-probe"
    # The probe object's removal never reaches the store: Ctrl-C lands while it is on its way.
    proxy = FlakyProxy(seaweed.s3_port, hold=lambda line: line.startswith(
        f"DELETE /{BUCKET}/{out}/dask/{PROBE_PREFIX}"))
    request.addfinalizer(proxy.close)
    options = _options_file(tmp_path / "s3.json", seaweed.options(endpoint=proxy.endpoint))
    argv = ["run", "--input-dir", f"s3://{BUCKET}/{prefix}", "--output-dir",
            f"s3://{BUCKET}/{out}", "--executor", "dask", "--workers", "2",
            "--storage-options", options, "--passes", str(PASSES), "--batch-size", "4",
            "--quiet", "--no-dashboard"]
    proc = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_default_signals)
    try:
        assert proxy.held.wait(120), "the probe was never removed"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert len(lines) == 1 and "interrupted by SIGINT" in lines[0], lines
    left = _outputs(seaweed, f"{out}/dask")
    assert not [k for k in left if not k.startswith((PROBE_PREFIX, OUTPUT_MARKER))], left

    summary = tmp_path / "second.json"
    rest = subprocess.run([sys.executable, "-m", "parablur", *argv, "--summary-json", str(summary)],
                          env=child_env(), capture_output=True, timeout=180)
    assert rest.returncode == 0, rest.stderr.decode()[-2000:]
    second = json.loads(summary.read_text())
    assert (second["images"], second["ok"], second["skipped"], second["failed"]) == (N, N, 0, 0)
    final = _outputs(seaweed, f"{out}/dask")
    # The interrupted probe's object is left, hidden in ParaBlur's own prefix: never an input,
    # an output or a reason to refuse; the second run's own probe was removed.
    assert proxy.held_request is not None
    stale = proxy.held_request[0].rsplit("/", 1)[1]
    assert stale in final
    del final[stale]
    _assert_complete_and_identical(final, ref)
    assert sorted(final) == sorted([OUTPUT_MARKER, *ref])


def _owner_of(peer: tuple[str, int], pids: list[int]) -> int:
    """The process among ``pids`` whose TCP connection has the local address ``peer``."""
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            if any(c.laddr and tuple(c.laddr)[:2] == peer
                   for c in psutil.Process(pid).net_connections(kind="tcp")):
                return pid
    raise AssertionError(f"no worker holds the connection from {peer}")


@pytest.mark.slow
def test_worker_killed_holding_a_batch_loses_and_repeats_nothing(seaweed, dataset, tmp_path,
                                                                  tmp_path_factory, request) -> None:
    prefix, ref = dataset
    out = f"{prefix.rsplit('/', 1)[0]}/out-worker"
    first = sorted(ref)[:3]  # the first batch
    # The first batch's worker has written its first output when the read of the second one
    # stalls: it is SIGKILLed there, holding a half-done batch.
    proxy = FlakyProxy(seaweed.s3_port,
                       hold=lambda line: line == f"GET /{BUCKET}/{prefix}/{first[1]}")
    request.addfinalizer(proxy.close)
    # Its own folders, apart from the client's: nothing can pass through a shared disk.
    cluster = start_cluster(tmp_path_factory.mktemp("faults-cluster"), workers=2)
    request.addfinalizer(cluster.stop)
    pids = cluster.worker_pids()
    killed: dict[str, object] = {}

    def kill_the_holder() -> None:
        if proxy.held.wait(120) and proxy.held_request is not None:
            victim = _owner_of(proxy.held_request[1], list(pids.values()))
            killed["written"] = sorted(seaweed.keys(f"{out}/dask"))
            os.kill(victim, signal.SIGKILL)
            killed["pid"] = victim

    killer = threading.Thread(target=kill_the_holder, daemon=True)
    killer.start()
    code = cli.main(["run", "--input-dir", f"s3://{BUCKET}/{prefix}", "--output-dir",
                     f"s3://{BUCKET}/{out}", "--executor", "dask", "--scheduler", cluster.address,
                     "--storage-options", _options_file(tmp_path / "s3.json",
                                                        seaweed.options(endpoint=proxy.endpoint)),
                     "--passes", str(PASSES), "--batch-size", "3", "--quiet",
                     "--summary-json", str(tmp_path / "s.json")])
    killer.join(timeout=30)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert "pid" in killed, "no worker was killed"
    # It died after its first output and before its second.
    assert f"{out}/dask/{first[0]}" in killed["written"]
    assert f"{out}/dask/{first[1]}" not in killed["written"]
    assert code == 0, summary["failures"]
    assert (summary["images"], summary["ok"], summary["skipped"], summary["failed"]) == (N, N, 0, 0)
    final = _outputs(seaweed, f"{out}/dask")
    _assert_complete_and_identical(final, ref)
    assert sorted(final) == sorted([OUTPUT_MARKER, *ref])
    puts = [line.rsplit("/", 1)[1] for line in proxy.settled()
            if line.startswith(f"PUT /{BUCKET}/{out}/dask/img_")]
    assert sorted(puts) == sorted(ref)  # each output written once, the killed batch's too
    with cluster.client() as c:  # the nanny replaced the killed worker process
        c.wait_for_workers(2, timeout=30)
        assert killed["pid"] not in c.run(os.getpid).values()


STEPS = textwrap.dedent('''
    def count_dark(image):
        """An output and a record."""
        return 255 - image, {"dark_pixels": int((image < 64).sum())}
''')


@pytest.fixture
def record_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with user_package(tmp_path, "faultsteps", STEPS, monkeypatch):
        yield "faultsteps.steps:count_dark"


def test_a_retried_attempt_of_the_same_run_counts_as_done_not_skipped(tmp_path, record_module) -> None:
    """What a batch retried after its worker died finds: its first attempt's outputs."""
    make_images(tmp_path / "in", 1, size=(40, 56), seed=8)
    inp = open_store(f"file://{tmp_path / 'in'}")
    for workload in ("blur", record_module):
        job = Job.for_run(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "o",
                                    workload=workload))
        out = open_store(f"file://{tmp_path / 'out' / workload.split('.')[0]}")
        task = next(plan_tasks(inp, out, job, inp.scan_images()))
        first = process_image(task, job)
        assert first.ok and not first.skipped, first
        again = process_image(task, job)  # the same run's second attempt
        assert again.ok and not again.skipped, (workload, again)
        # An output with a record line is made again, so that the line reaches the client.
        assert again.line == first.line
        log = RecordLog(LocalStore(tmp_path / "records"), f"{workload}.jsonl", keep_existing=False)
        if again.line is not None:  # what the client noted from the second attempt
            log.add(again.name, again.line)
        # the next run
        later = process_image(next(plan_tasks(inp, out, job, inp.scan_images(), log=log)), job)
        assert later.ok and later.skipped, (workload, later)
