"""A Dask start-up that fails part-way leaks nothing and says, on one line, what to do.

Real `dask scheduler` / `dask worker` subprocesses: a worker whose process cannot
import parablur (a ``--preload`` hides it, as on a machine where it was never
installed), and a scheduler no worker ever joins.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import make_images
from dask_cluster import DaskCluster, child_env, start_cluster

from parablur import __version__
from parablur.config import ClusterConfig
from parablur.errors import ClusterError
from parablur.executors.dask_executor import DaskExecutor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]


def _clients(cluster: DaskCluster) -> set[str]:
    """The clients the scheduler knows, other than the one asking."""
    with cluster.client() as c:
        mine = c.id
        return set(c.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.clients))) - {mine}


def _settles(read, expected, timeout: float = 30.0):
    """``read()`` once it equals ``expected`` (bounded wait), else its last value."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def _threads() -> set[int]:
    return {t.ident for t in threading.enumerate()}


@pytest.fixture(scope="module")
def no_parablur(tmp_path_factory) -> DaskCluster:
    """A scheduler and one worker whose process cannot import parablur."""
    c = start_cluster(tmp_path_factory.mktemp("noparablur"), workers=1,
                      worker_flags=("--preload", "without_parablur"))
    try:
        yield c
    finally:
        c.stop()


def _worker_address(cluster: DaskCluster) -> str:
    with cluster.client() as c:
        (address,) = c.scheduler_info()["workers"]
        return address


def test_workers_without_parablur_one_line_exit_2(no_parablur: DaskCluster,
                                                  tmp_path: Path) -> None:
    make_images(tmp_path / "in", 2, size=(64, 64))
    worker = _worker_address(no_parablur)
    argv = ["run", "--executor", "dask", "--scheduler", no_parablur.address, "--quiet",
            "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]
    env = {**child_env(), "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "parablur", *argv], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"parablur run: error: the workers at {worker} cannot import parablur {__version__}: "
        "install it on the workers"], proc.stderr[-2000:]
    assert not list((tmp_path / "out" / "dask").glob("*.jpg"))


def test_workers_without_parablur_leave_no_client_behind(no_parablur: DaskCluster) -> None:
    clients, threads = _clients(no_parablur), _threads()
    ex = DaskExecutor(1, 1, ClusterConfig(scheduler=no_parablur.address))
    with pytest.raises(ClusterError, match="cannot import parablur") as info:
        ex.start()
    assert "No module named 'parablur'" in str(info.value.__cause__)  # the cause is kept
    assert _settles(lambda: _clients(no_parablur), clients) == clients  # the client went
    assert _settles(_threads, threads) <= threads  # its event loop stopped
    assert ex._conn is None


def test_no_worker_joins_timeout_closes_the_client(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path / "cluster", workers=0)
    try:
        clients, threads = _clients(cluster), _threads()
        ex = DaskExecutor(1, 1, ClusterConfig(scheduler=cluster.address, wait_workers_s=2))
        t0 = time.monotonic()
        with pytest.raises(ClusterError) as info:
            ex.start()
        assert time.monotonic() - t0 < 30
        assert str(info.value) == (f"no worker joined the Dask scheduler {cluster.address} "
                                   "within 2 s: start `dask worker` processes that connect to it")
        assert isinstance(info.value.__cause__, TimeoutError)
        assert _settles(lambda: _clients(cluster), clients) == clients
        assert _settles(_threads, threads) <= threads
    finally:
        cluster.stop()


def _children() -> set[int]:
    """This process's children, but multiprocessing's resource tracker (started once, kept)."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "resource_tracker" not in " ".join(child.cmdline()):
                found.add(child.pid)
    return found


def test_local_cluster_whose_workers_cannot_import_parablur_is_closed(tmp_path: Path) -> None:
    """A LocalCluster's workers told (by the user's Dask config) to preload a module that
    hides parablur: one line, exit 2, and neither its processes nor its threads remain."""
    import dask

    make_images(tmp_path / "in", 2, size=(64, 64))
    argv = ["run", "--executor", "dask", "--workers", "2", "--no-dashboard", "--quiet",
            "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out")]
    env = {**child_env(), "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
           "DASK_DISTRIBUTED__WORKER__PRELOAD": '["without_parablur"]'}
    proc = subprocess.run([sys.executable, "-m", "parablur", *argv], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = proc.stderr.splitlines()
    assert re.fullmatch(r"parablur run: error: the workers at tcp://127\.0\.0\.1:\d+, "
                        rf"tcp://127\.0\.0\.1:\d+ cannot import parablur {__version__}: "
                        "install it on the workers", line), line

    children, threads = _children(), _threads()
    ex = DaskExecutor(2, 1, ClusterConfig(dashboard=False))
    with dask.config.set({"distributed.worker.preload": ["without_parablur"]}):
        with pytest.raises(ClusterError, match="cannot import parablur") as info:
            ex.start()
    assert "No module named 'parablur'" in str(info.value.__cause__)
    assert _settles(_children, children) == children  # the workers and nannies are gone
    assert _settles(_threads, threads) <= threads
