"""Scale-out against real Dask processes: a `dask scheduler` and two `dask worker`s on 127.0.0.1.

Bench and run on a remote scheduler (address or scheduler file, both transfers),
a worker SIGKILLed mid-run, bounded retries, TLS with certificates made here.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import make_images
from dask_cluster import DaskCluster, make_tls, start_cluster

from parablur import cli
from parablur.config import BlurParams, ClusterConfig, RunConfig
from parablur.pipeline import anonymize
from parablur.storage import LocalStore
from parablur.verify import compare_dirs
from parablur.worker import ImageTask

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PASSES = 40  # ~0.12 s per 256x256 image: slow enough to kill a worker mid-run


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> DaskCluster:
    c = start_cluster(tmp_path_factory.mktemp("cluster"), workers=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def slow_set(tmp_path_factory) -> tuple[Path, Path]:
    """20 images of 256x256 and their sequential outputs with PASSES blur passes."""
    root = tmp_path_factory.mktemp("slow")
    make_images(root / "in", 20, size=(256, 256), seed=3)
    anonymize(RunConfig(input_dir=root / "in", output_dir=root / "ref", executor="sequential",
                        blur=BlurParams(passes=PASSES)))
    return root / "in", root / "ref" / "sequential"


def _bench(argv: list[str], summary: Path) -> int:
    return cli.main(["bench", *argv, "--no-ceiling", "--summary-json", str(summary)])


def test_scale_on_remote_scheduler_uses_subsets_of_its_workers(cluster: DaskCluster,
                                                               tmp_path: Path) -> None:
    make_images(tmp_path / "in", 6, size=(64, 96))
    argv = ["scale", "--scheduler", cluster.address, "--workers-list", "1,2", "--batch-sizes", "2",
            "--trials", "1", "--warmup", "0", "--input-dir", str(tmp_path / "in"),
            "--output-dir", str(tmp_path / "out"), "--report-csv", str(tmp_path / "r.csv"),
            "--no-report", "--quiet"]
    assert cli.main(argv) == 0
    rows = (tmp_path / "r.csv").read_text().splitlines()[1:]
    assert len(rows) == 2
    from parablur.results import read_rows

    assert [r["workers"] for r in read_rows(tmp_path / "r.csv")] == ["1", "2"]
    assert all(r["identical"] == "true" for r in read_rows(tmp_path / "r.csv"))
    # more workers than the cluster has: a clear error, exit 2
    assert cli.main([*argv[:4], "3", *argv[5:]]) == 2


@pytest.mark.parametrize("how", ["address", "scheduler-file"])
def test_bench_on_remote_scheduler(cluster: DaskCluster, tmp_path: Path, how: str) -> None:
    make_images(tmp_path / "in", 6, size=(64, 96))
    where = (["--scheduler", cluster.address] if how == "address"
             else ["--scheduler-file", str(cluster.scheduler_file), "--transfer", "paths"])
    argv = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
            "--trials", "1", "--warmup", "0", "--batch-size", "2", "--quiet",
            "--report-csv", str(tmp_path / "r.csv"), *where]
    assert _bench(argv, tmp_path / "s.json") == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ok"] and summary["rounds"][0]["dask_identical"]
    assert summary["executors"]["dask"]["workers"] == 2  # counted from the scheduler
    csv = (tmp_path / "r.csv").read_text()
    assert ("bytes" if how == "address" else "paths") in csv
    assert len(list((tmp_path / "out" / "dask").glob("*.jpg"))) == 6


@pytest.mark.parametrize("transfer", ["paths", "bytes"])
def test_run_on_remote_scheduler_both_transfers(cluster: DaskCluster, tmp_path: Path,
                                                transfer: str) -> None:
    make_images(tmp_path / "in" / "nested dir", 5, size=(80, 72), suffix=".png")
    make_images(tmp_path / "in", 4, size=(72, 80), seed=1)
    common = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
              "--batch-size", "3", "--quiet"]
    assert cli.main(["run", *common]) == 0
    assert cli.main(["run", *common, "--executor", "dask", "--scheduler", cluster.address,
                     "--transfer", transfer, "--summary-json", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["workers"] == 2
    ver = compare_dirs(tmp_path / "out" / "sequential", tmp_path / "out" / "dask")
    assert ver.ok and ver.compared == 9


def test_worker_sigkill_mid_run_costs_time_not_images(cluster: DaskCluster, slow_set,
                                                      tmp_path: Path) -> None:
    src, ref = slow_set
    out = tmp_path / "out"
    pids = cluster.worker_pids()
    victim = sorted(pids.values())[0]
    killed = {}

    def kill_after_first_output() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = list((out / "dask").glob("*.jpg")) if (out / "dask").exists() else []
            if done:
                killed["outputs_before"] = len(done)
                os.kill(victim, signal.SIGKILL)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_after_first_output, daemon=True)
    killer.start()
    rc = cli.main(["run", "--executor", "dask", "--scheduler", cluster.address,
                   "--transfer", "paths", "--input-dir", str(src), "--output-dir", str(out),
                   "--passes", str(PASSES), "--batch-size", "2", "--quiet",
                   "--summary-json", str(tmp_path / "s.json")])
    killer.join(timeout=10)
    assert "outputs_before" in killed and killed["outputs_before"] < 20, killed
    assert rc == 0, json.loads((tmp_path / "s.json").read_text())["failures"]
    ver = compare_dirs(ref, out / "dask")
    assert ver.ok and ver.compared == 20, ver.mismatches
    assert not list((out / "dask").rglob("*.part"))
    # The nanny replaced the killed worker process.
    with cluster.client() as c:
        c.wait_for_workers(2, timeout=30)
        assert victim not in c.run(os.getpid).values()


def _exit_worker(path: str) -> None:
    """Kill the worker process running this task, and leave a mark that it ran."""
    with open(path, "a") as fh:
        fh.write("x")
    os._exit(1)


def test_retries_are_bounded_on_a_remote_scheduler(cluster: DaskCluster, tmp_path: Path) -> None:
    """A task that keeps killing its worker ends as KilledWorker after max-task-retries + 1 tries."""
    from parablur.executors.dask_executor import DaskExecutor

    ex = DaskExecutor(2, 1, ClusterConfig(scheduler=cluster.address, max_task_retries=0))
    with ex:
        mark = tmp_path / "tries"
        fut = ex.client.submit(_exit_worker, str(mark), pure=False)
        with pytest.raises(Exception, match="KilledWorker|died"):
            fut.result(timeout=90)
        assert len(mark.read_text()) == 1 + 1  # the first try, one retry allowed
        # An exception inside a task (here it has no blur parameters) is retried, then reported
        # for the batch's images; an exception from one image is only that image's failure.
        bad = [ImageTask("bad.jpg", "in.jpg", "bad.jpg", LocalStore(tmp_path), LocalStore(tmp_path))]
        (result,) = list(ex.map([bad], None))  # type: ignore[arg-type]
        assert not result.images[0].ok and "task failed: AttributeError" in result.images[0].error
    with cluster.client() as c:
        c.wait_for_workers(2, timeout=60)


def test_run_over_tls(tmp_path: Path) -> None:
    tls = make_tls(tmp_path / "tls")
    c = start_cluster(tmp_path / "cluster", workers=2, tls=tls)
    try:
        assert c.address.startswith("tls://")
        make_images(tmp_path / "in", 5, size=(64, 64))
        common = ["--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                  "--quiet", "--batch-size", "2"]
        assert cli.main(["run", *common]) == 0
        assert cli.main(["run", *common, "--executor", "dask", "--scheduler", c.address,
                         "--tls-ca-file", str(tls.ca), "--tls-cert", str(tls.cert),
                         "--tls-key", str(tls.key)]) == 0
        assert compare_dirs(tmp_path / "out" / "sequential", tmp_path / "out" / "dask").ok
        # Without the certificates the scheduler cannot be used: a one-line error, exit 2.
        assert cli.main(["run", *common, "--executor", "dask", "--scheduler",
                         c.address.replace("tls://", "tcp://"), "--force"]) == 2
    finally:
        c.stop()


def test_task_whose_workers_keep_dying_is_reported_failed(cluster: DaskCluster,
                                                          tmp_path: Path) -> None:
    """Every worker that runs the task is SIGKILLed: after the retries, a failed image."""
    make_images(tmp_path / "in", 1, size=(256, 256))
    stop = threading.Event()
    kills: list[int] = []

    def kill_whoever_runs_it() -> None:
        with cluster.client() as c:
            while not stop.is_set() and len(kills) < 6:
                for addr, keys in c.processing().items():
                    if any(str(k).startswith("parablur-dask") for k in keys):
                        pid = c.run(os.getpid, workers=[addr]).get(addr)
                        if pid and pid not in kills:
                            os.kill(pid, signal.SIGKILL)
                            kills.append(pid)
                time.sleep(0.05)

    killer = threading.Thread(target=kill_whoever_runs_it, daemon=True)
    killer.start()
    try:
        rc = cli.main(["run", "--executor", "dask", "--scheduler", cluster.address,
                       "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
                       "--passes", "2000", "--max-task-retries", "0", "--quiet",
                       "--summary-json", str(tmp_path / "s.json")])
    finally:
        stop.set()
        killer.join(timeout=30)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert rc == 1 and summary["failed"] == 1, summary
    assert "KilledWorker" in summary["failures"][0]["reason"]
    assert len(kills) == 2  # the first try and the one retry --max-task-retries 0 allows
    assert not list((tmp_path / "out").rglob("*.part"))
    with cluster.client() as c:
        c.wait_for_workers(2, timeout=60)
