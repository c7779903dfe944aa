"""The machine's own noise: CPU that other programs take is outside load, the benchmark's own tree is not.

Real busy-loop processes: one detached from this process's tree (its parent exits,
so it is reparented), one a child, one a grandchild, one a child that ends inside
the window. The CPU each one really took (read from the process itself) is the
reference; bounds are generous because the machine is shared.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from dask_cluster import start_cluster

from parablur import results
from parablur.cli import main
from parablur.noise import NOISY_LOAD_CORES, Load, LoadSampler, dask_local_pids

MARK = "parablur-noise-test-busy-loop"


def busy_code(seconds: float) -> str:
    return (f"import time  # {MARK}\nend = time.time() + {seconds}\n"
            "while time.time() < end:\n    pass\n")


@contextlib.contextmanager
def outside_busy_loop(seconds: float = 60.0) -> Iterator[psutil.Process]:
    """A busy loop that is NOT in this process's tree: started by a launcher that exits at once."""
    launcher = ("import subprocess, sys\n"
                f"p = subprocess.Popen([sys.executable, '-c', {busy_code(seconds)!r}],"
                " start_new_session=True, stdin=subprocess.DEVNULL,"
                " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                "print(p.pid)\n")
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True,
                         timeout=30, check=True)
    proc = psutil.Process(int(out.stdout))
    try:
        me = psutil.Process()
        assert proc.pid not in {c.pid for c in me.children(recursive=True)}, "still our child"
        time.sleep(0.2)  # let the interpreter start and the loop begin
        yield proc
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            if MARK in " ".join(proc.cmdline()):
                proc.kill()
                proc.wait(5)


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def test_a_busy_process_outside_the_tree_is_outside_load():
    with outside_busy_loop() as busy:
        before = cpu_s(busy)
        with LoadSampler(busy_cores=2) as sampler:
            time.sleep(1.5)
        took = cpu_s(busy) - before
        load = sampler.load
        assert load is not None and load.wall_s >= 1.4
        # the loop really ran (at least a third of a core, on a shared machine) ...
        assert took >= 0.5
        # ... and every second of it shows as outside load, none as ours
        assert load.outside_cores * load.wall_s >= 0.8 * took
        assert load.own_cores * load.wall_s < 0.3 * took
        if took / load.wall_s >= 0.6:  # it had most of a core: that alone is >= 0.5 cores
            assert load.outside_cores >= 0.5
        assert load.noisy and load.taken_cores > NOISY_LOAD_CORES
        assert "outside load" in load.describe() and "other programs" in load.describe()

        # named as the benchmark's own (as a remote cluster's local workers are), it is not outside
        before = cpu_s(busy)
        with LoadSampler(busy_cores=2, own=[busy.pid]) as sampler:
            time.sleep(1.5)
        took = cpu_s(busy) - before
        assert sampler.load.own_cores * sampler.load.wall_s >= 0.8 * took


def test_busy_children_and_grandchildren_are_the_benchmarks_own():
    child = subprocess.Popen([sys.executable, "-c", busy_code(1.5)])
    # a grandchild: a child that starts the busy loop and waits for it (a nanny and its worker)
    nanny = subprocess.Popen([sys.executable, "-c",
                              f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
                              f"{busy_code(1.5)!r}])\n"])
    try:
        time.sleep(0.3)
        procs = [psutil.Process(child.pid), *psutil.Process(nanny.pid).children()]
        assert len(procs) == 2
        before = sum(cpu_s(p) for p in procs)
        with LoadSampler(busy_cores=2) as sampler:
            time.sleep(0.8)
            took = sum(cpu_s(p) for p in procs) - before
        assert took >= 0.4
        assert sampler.load.own_cores * sampler.load.wall_s >= 0.8 * took
    finally:
        for p in (child, nanny):
            p.kill()
            p.wait(10)


def test_a_child_that_ends_inside_the_window_is_still_counted_as_ours():
    # A pool process that exits (and is reaped) mid-round: its CPU moves to its parent's
    # record of reaped children, and must not turn into outside load.
    child = subprocess.Popen([sys.executable, "-c", busy_code(1.2)])
    with LoadSampler(busy_cores=2) as sampler:
        child.wait(30)
    own_s = sampler.load.own_cores * sampler.load.wall_s
    assert own_s >= 0.4  # the child ran most of its 1.2 s busy loop inside the window


@pytest.mark.parametrize("outside, steal, cores, busy, noisy", [
    (0.10, 0.0, 2, 2, False),  # daemons and shells: quiet
    (0.85, 0.0, 2, 2, True),  # the study's case: another program took a core
    (0.10, 0.2, 2, 2, True),  # the hypervisor took the rest
    (1.50, 0.0, 8, 2, False),  # six idle cores: other programs compete with nobody
    (6.50, 0.0, 8, 2, True),
])
def test_a_round_is_noisy_when_others_take_cores_the_benchmark_uses(outside, steal, cores, busy,
                                                                      noisy):
    load = Load(wall_s=10.0, cores=cores, busy_cores=busy, own_cores=busy, outside_cores=outside,
                steal_cores=steal)
    assert load.noisy is noisy


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens: the dataset is generated offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/200/200"


@pytest.mark.slow
def test_bench_flags_rounds_run_while_another_program_takes_a_core(tmp_path: Path, capsys):
    summary_json = tmp_path / "s.json"
    argv = ["bench", "--num-images", "8", "--width", "200", "--height", "200", "--workers", "2",
            "--batch-size", "2", "--trials", "2", "--warmup", "0", "--quiet", "--no-dashboard",
            "--source-url", closed_port_url(), "--input-dir", str(tmp_path / "data"),
            "--output-dir", str(tmp_path / "out"), "--report-csv", str(tmp_path / "r.csv"),
            "--no-report", "--summary-json", str(summary_json)]
    with outside_busy_loop(seconds=300):
        assert main(argv) == 0
    out = capsys.readouterr().out
    data = json.loads(summary_json.read_text())

    # every round: its outside load recorded and flagged, with the reason in its printed line
    assert [r["noisy"] for r in data["rounds"]] == [True, True]
    assert all(r["load"]["outside_cores"] >= 0.3 for r in data["rounds"])
    assert all(r["ceiling"] > 0 for r in data["rounds"])  # a ceiling measured with each round
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("round ")]
    assert len(lines) == 2
    assert all("NOISY: outside load" in line and "other programs" in line for line in lines)

    # the headline says the rounds were noisy and does not report their Karp-Flatt
    assert "noise: 2 of 2 rounds ran while other programs took cores" in out
    assert "all 2 rounds noisy" in out and "no quiet round" in out
    serial = next(line for line in out.splitlines() if "serial fraction" in line)
    assert "n/a (no quiet round" in serial and "%" not in serial
    dask = data["executors"]["dask"]
    assert dask["noisy_rounds"] == 2 and dask["headline_noisy"] is True

    rows = results.read_rows(tmp_path / "r.csv")
    assert [r["noisy"] for r in rows] == ["true", "true"]
    assert all(float(r["outside_load_cores"]) >= 0.3 and r["steal_cores"] for r in rows)
    assert all(float(r["ceiling"]) > 0 for r in rows)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_remote_clusters_processes_on_this_machine_are_found(tmp_path: Path):
    # `parablur bench --scheduler ...` with `dask worker`s started elsewhere on this machine:
    # their CPU is the benchmark's, not other programs'. Each is found by pid and start time.
    cluster = start_cluster(tmp_path / "cluster", workers=1)
    try:
        with cluster.client() as client:
            pids = dask_local_pids(client)
        worker = next(iter(cluster.worker_pids().values()))
        nanny = psutil.Process(worker).ppid()
        assert {cluster.procs[0].pid, nanny, worker} <= pids  # scheduler, nanny, worker
        assert os.getpid() not in pids
    finally:
        cluster.stop()
