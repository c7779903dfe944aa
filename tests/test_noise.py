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
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from dask_cluster import start_cluster
from test_cli import closed_port_url

from parablur import results
from parablur.benchmark import RoundResult
from parablur.cli import main
from parablur.noise import NOISY_LOAD_CORES, Load, LoadSampler, dask_local_pids
from parablur.pipeline import RunSummary
from parablur.verify import Verification

MARK = "parablur-noise-test-busy-loop"


def busy_code(seconds: float) -> str:
    return (f"import time  # {MARK}\nend = time.time() + {seconds}\n"
            "while time.time() < end:\n    pass\n")


@contextlib.contextmanager
def outside_busy_loops(count: int = 1, seconds: float = 60.0) -> Iterator[list[psutil.Process]]:
    """Busy loops that are NOT in this process's tree: started by a launcher that exits at once."""
    launcher = ("import subprocess, sys\n"
                f"for _ in range({count}):\n"
                f"    p = subprocess.Popen([sys.executable, '-c', {busy_code(seconds)!r}],"
                " start_new_session=True, stdin=subprocess.DEVNULL,"
                " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                "    print(p.pid)\n")
    out = subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True,
                         timeout=30, check=True)
    procs = [psutil.Process(int(pid)) for pid in out.stdout.split()]
    try:
        ours = {c.pid for c in psutil.Process().children(recursive=True)}
        assert len(procs) == count and not ours & {p.pid for p in procs}, "still our children"
        time.sleep(0.2)  # let the interpreters start and the loops begin
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                if MARK in " ".join(proc.cmdline()):
                    proc.kill()
                    proc.wait(5)


def cpu_s(procs: list[psutil.Process]) -> float:
    return sum(t.user + t.system for t in (p.cpu_times() for p in procs))


def wait_for_cpu(procs: list[psutil.Process], seconds: float, timeout: float = 30.0) -> None:
    """Sleep until ``procs`` have burnt ``seconds`` more CPU: on a shared machine a busy loop
    may get well under a core, so the window is as long as it takes, not a fixed time."""
    target = cpu_s(procs) + seconds
    deadline = time.monotonic() + timeout
    while cpu_s(procs) < target and time.monotonic() < deadline:
        time.sleep(0.1)


def kill_tree(proc: subprocess.Popen) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    proc.wait(10)


@pytest.mark.slow
def test_a_busy_process_outside_the_tree_is_outside_load():
    with outside_busy_loops() as (busy,):
        before = cpu_s([busy])
        with LoadSampler(busy_cores=2) as sampler:
            time.sleep(1.0)
            wait_for_cpu([busy], 0.6)
        took = cpu_s([busy]) - before
        load = sampler.load
        assert load is not None and took >= 0.59  # cpu_times ticks and float sums
        # every second of the loop shows as outside load, none of it as ours
        assert load.outside_cores * load.wall_s >= 0.8 * took
        assert load.own_cores * load.wall_s < 0.3 * took
        if took / load.wall_s >= 0.6:  # it had most of a core: that alone is >= 0.5 cores
            assert load.outside_cores >= 0.5
        assert load.noisy and load.taken_cores > NOISY_LOAD_CORES
        assert "outside load" in load.describe() and "other programs" in load.describe()

        # named as the benchmark's own (as a remote cluster's local workers are), it is not outside
        before = cpu_s([busy])
        with LoadSampler(busy_cores=2, own=[busy.pid]) as sampler:
            wait_for_cpu([busy], 0.6)
        took = cpu_s([busy]) - before
        assert took >= 0.59 and sampler.load.own_cores * sampler.load.wall_s >= 0.8 * took


@pytest.mark.slow
def test_busy_children_and_grandchildren_are_the_benchmarks_own():
    child = subprocess.Popen([sys.executable, "-c", busy_code(60)])
    # a grandchild: a child that starts the busy loop and waits for it (a nanny and its worker)
    nanny = subprocess.Popen([sys.executable, "-c",
                              f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', "
                              f"{busy_code(60)!r}])\n"])
    try:
        deadline = time.monotonic() + 30
        while not psutil.Process(nanny.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        procs = [psutil.Process(child.pid), *psutil.Process(nanny.pid).children()]
        assert len(procs) == 2
        before = cpu_s(procs)
        with LoadSampler(busy_cores=2) as sampler:
            wait_for_cpu(procs, 0.6)
            took = cpu_s(procs) - before
        assert took >= 0.59  # cpu_times ticks and float sums
        assert sampler.load.own_cores * sampler.load.wall_s >= 0.8 * took
    finally:
        kill_tree(nanny)
        kill_tree(child)


@pytest.mark.slow
def test_a_child_that_ends_inside_the_window_is_still_counted_as_ours():
    # A pool process that exits (and is reaped) mid-round: its CPU moves to its parent's
    # record of reaped children, and must not turn into outside load.
    work = f"# {MARK}\nx = 0\nfor i in range(8_000_000):\n    x += i\n"
    with LoadSampler(busy_cores=2) as sampler:
        child = subprocess.Popen([sys.executable, "-c", work])
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    took = usage.ru_utime + usage.ru_stime
    assert child.returncode == 0 and took >= 0.2
    assert sampler.load.own_cores * sampler.load.wall_s >= 0.8 * took


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


@pytest.mark.slow
def test_bench_flags_rounds_run_while_another_program_takes_a_core(tmp_path: Path, capsys):
    summary_json = tmp_path / "s.json"
    # A worker on every core (2 on the development machine), so that the busy loop competes.
    workers = str(psutil.cpu_count() or 2)
    argv = ["bench", "--num-images", "8", "--width", "200", "--height", "200", "--workers", workers,
            "--batch-size", "2", "--trials", "2", "--warmup", "0", "--quiet", "--no-dashboard",
            "--source-url", closed_port_url(), "--input-dir", str(tmp_path / "data"),
            "--output-dir", str(tmp_path / "out"), "--report-csv", str(tmp_path / "r.csv"),
            "--no-report", "--summary-json", str(summary_json)]
    with outside_busy_loops(seconds=300):
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
    assert "2 of 2 rounds noisy, none quiet and clean" in out and "no quiet round" in out
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


def _round(index: int, workers: int, speedup: float, outside: float) -> RoundResult:
    def run(name: str, p: int, wall: float) -> RunSummary:
        return RunSummary(executor=name, workers=p, batch_size=4, images=8, ok=8, failed=0,
                          failures=(), wall_s=wall, startup_s=0.0, task_s=wall)

    load = Load(wall_s=20.0, cores=2, busy_cores=2, own_cores=1.5, outside_cores=outside,
                steal_cores=0.0)
    return RoundResult(index, False, run("sequential", 1, 10.0),
                       {"dask": run("dask", workers, 10.0 / speedup)},
                       {"dask": Verification(8, 8)}, load=load)


def _scale(rounds: list[RoundResult]):
    """The sweep ``scale`` reports for these rounds: from their CSV rows, as the report sees them."""
    from parablur import figures
    from parablur.benchmark import csv_row
    from parablur.config import RunConfig
    from parablur.scaling import ScaleSummary

    env = {"timestamp": "2026-01-01T00:00:00+00:00", "hostname": "h"}
    rows = [csv_row(r, "dask", RunConfig(executor="dask"), (64, 64), env, "id", "scale-strong",
                    None, None) for r in rounds]
    return ScaleSummary("id", [], figures.sweeps(figures.from_rows(rows)), "r.csv")


def test_scale_fits_amdahl_over_quiet_rounds_and_says_when_there_were_none():
    quiet = [_round(1, 1, 0.98, 0.05), _round(1, 2, 1.90, 0.05), _round(2, 2, 1.88, 0.05)]
    noisy = _round(3, 2, 1.05, 0.90)  # another program took a core
    summary = _scale([*quiet, noisy])
    fit = summary.fits["dask, batch size 4"]
    assert fit.f < 0.1  # 1.05x would have pulled it towards 0.9
    (warning,) = summary.warnings
    assert warning.endswith(": 1 noisy round (other programs took cores) left out of the Amdahl fit")
    assert summary.to_dict()["amdahl"]["dask, batch size 4"]["noisy_left_out"] == 1
    # no quiet round at two worker counts: fitted over the noisy ones, and the warning says so
    summary = _scale([quiet[0], noisy])
    assert "dask, batch size 4" in summary.fits
    assert "its f measures other programs' load, not a serial fraction" in summary.warnings[0]
    assert summary.to_dict()["amdahl"]["dask, batch size 4"]["over_noisy_rounds"] is True
