"""A process-pool worker that dies costs at most the batch it held; the pool is replaced.

Real ``concurrent.futures`` pools and real deaths: some inputs are named pipes, so a
worker that opens one blocks there until this test decides what happens to it
(SIGKILL the reader, keep it waiting, or serve it the image's bytes).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import make_images

from parablur.config import BlurParams, ClusterConfig, RunConfig
from parablur.executors import create_executor
from parablur.pipeline import run_images
from parablur.storage import LocalStore, ObjectInfo
from parablur.verify import compare_dirs

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PARAMS = BlurParams(sigma=2)
N = 16


def _reader_pid(fifo: Path, deadline: float) -> int:
    """The child process (a pool worker) that has ``fifo`` open."""
    target = str(fifo)
    while time.monotonic() < deadline:
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{child.pid}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{child.pid}/fd/{fd}") == target:
                            return child.pid
        time.sleep(0.01)
    raise TimeoutError(f"no worker opened {fifo}")


def _gone(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} is still alive")


class PipeInput:
    """A named pipe standing in for one image; ``actions[i]`` decides the i-th open.

    An action gets the write end and the reader's pid: ``kill`` SIGKILLs the
    reader, ``hold`` keeps it blocked until someone else ends it, ``serve`` writes
    the image's bytes. ``opened`` is set at each open.
    """

    def __init__(self, path: Path, payload: bytes, actions: list[str],
                 before_kill: threading.Event | None = None) -> None:
        self.path, self.payload, self.actions = path, payload, actions
        self.before_kill = before_kill
        self.opened = threading.Event()
        self.pids: list[int] = []
        self.error: BaseException | None = None
        os.mkfifo(path)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _open_writer(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            try:
                return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:  # ENXIO: no reader yet
                if exc.errno != errno.ENXIO:
                    raise
            time.sleep(0.01)
        raise TimeoutError(f"no reader for {self.path}")

    def _serve(self) -> None:
        try:
            for action in self.actions:
                deadline = time.monotonic() + 90
                fd = self._open_writer(deadline)
                try:
                    pid = _reader_pid(self.path, deadline)
                    self.pids.append(pid)
                    self.opened.set()
                    if action == "kill":
                        if self.before_kill is not None:
                            assert self.before_kill.wait(60), "the other pipe was never opened"
                        os.kill(pid, signal.SIGKILL)
                        _gone(pid, deadline)
                    elif action == "hold":
                        _gone(pid, deadline)
                    else:
                        os.set_blocking(fd, True)
                        os.write(fd, self.payload)
                finally:
                    os.close(fd)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), f"{self.path.name}: actions left undone"
        assert self.error is None, self.error


def _setup(tmp_path: Path) -> tuple[Path, list[str], dict[str, bytes]]:
    """Fourteen regular images and the bytes of two more, to be served through pipes.

    Eight batches of two: more than a window (six), so batches are still being
    submitted after the pool breaks.
    """
    make_images(tmp_path / "ref", N, size=(64, 64), seed=5)
    names = sorted(p.name for p in (tmp_path / "ref").iterdir())
    piped = {names[0]: (tmp_path / "ref" / names[0]).read_bytes(),
             names[2]: (tmp_path / "ref" / names[2]).read_bytes()}
    (tmp_path / "in").mkdir()
    for name in names:
        if name not in piped:
            shutil.copy(tmp_path / "ref" / name, tmp_path / "in" / name)
    seq = create_executor("sequential")
    with seq:
        config = RunConfig(input_dir=tmp_path / "ref", output_dir=tmp_path / "out", blur=PARAMS,
                           batch_size=2)
        out = tmp_path / "out" / "sequential"
        assert run_images(seq, config, LocalStore(tmp_path / "ref"), LocalStore(out)).ok == N
    return tmp_path / "in", names, piped


def _run(executor, src: Path, names: list[str], out: Path):
    config = RunConfig(input_dir=src, output_dir=out.parent, blur=PARAMS, batch_size=2)
    items = [ObjectInfo(n, 0) for n in names]
    return run_images(executor, config, LocalStore(src), LocalStore(out), items=items, force=True)


def _children() -> set[int]:
    """Live multiprocessing workers started by this process (a pool's workers are its children)."""
    found = set()
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                found.add(child.pid)
    return found


@pytest.mark.parametrize(("retries", "first_pipe", "lost"), [
    (0, ["kill"], 2),  # no retry: the dead worker's batch (2 images) fails, nothing else
    (1, ["kill", "serve"], 0),  # one retry: the batch succeeds on the new pool
])
def test_a_dead_worker_costs_at_most_its_batch(tmp_path: Path, retries: int,
                                               first_pipe: list[str], lost: int) -> None:
    src, names, piped = _setup(tmp_path)
    first, second = sorted(piped)  # in batches 1 and 2 (of 2 images each), run at once
    config = RunConfig(input_dir=src, output_dir=tmp_path / "out", executor="processes",
                       workers=2, cluster=ClusterConfig(max_task_retries=retries))
    executor = create_executor("processes", config)
    others = _children()
    with executor:
        before = _children() - others
        # The second pipe's reader is running an innocent batch when the first one's is
        # killed: the pool stops it too, and it must be resubmitted without charge.
        b = PipeInput(src / second, piped[second], ["hold", "serve"])
        a = PipeInput(src / first, piped[first], first_pipe, before_kill=b.opened)
        summary = _run(executor, src, names, tmp_path / "out" / "processes")
        assert summary.images == N and summary.ok == N - lost, summary.failures
        a.join()
        b.join()
        if lost:
            failed = sorted(f["image"] for f in summary.failures)
            assert failed == [names[0], names[1]]  # the batch the dead worker held
            for f in summary.failures:
                assert f["reason"] == ("task failed: worker process died (BrokenProcessPool, "
                                       "killed by SIGKILL) after 1 attempt")
        check = compare_dirs(tmp_path / "out" / "sequential", tmp_path / "out" / "processes")
        assert check.identical == N - lost
        assert {m["reason"] for m in check.mismatches} <= {"missing output"}
        assert len(check.mismatches) == lost
        # The pool was replaced: none of the workers it started with is left.
        now = _children() - others
        assert len(before) == 2 and len(now) == 2 and not before & now

        # A worker killed between two runs (as between two bench rounds) costs nothing.
        for pipe in (a, b):
            pipe.path.unlink()
            shutil.copy(tmp_path / "ref" / pipe.path.name, pipe.path)
        idle = sorted(now)[0]
        os.kill(idle, signal.SIGKILL)
        _gone(idle, time.monotonic() + 30)
        again = _run(executor, src, names, tmp_path / "out" / "again")
        assert (again.ok, again.failed) == (N, 0), again.failures
        assert compare_dirs(tmp_path / "out" / "sequential", tmp_path / "out" / "again").ok


def test_a_batch_that_keeps_killing_its_worker_fails_after_the_allowed_attempts(
        tmp_path: Path) -> None:
    src, names, piped = _setup(tmp_path)
    first, second = sorted(piped)
    shutil.copy(tmp_path / "ref" / second, src / second)
    config = RunConfig(input_dir=src, output_dir=tmp_path / "out", executor="processes",
                       workers=2, cluster=ClusterConfig(max_task_retries=2))
    with create_executor("processes", config) as executor:
        a = PipeInput(src / first, piped[first], ["kill", "kill", "kill"])
        summary = _run(executor, src, names, tmp_path / "out" / "processes")
    assert (summary.ok, summary.failed) == (N - 2, 2), summary.failures
    a.join()
    assert len(set(a.pids)) == 3  # three workers died, one per attempt
    assert {f["reason"] for f in summary.failures} == {
        "task failed: worker process died (BrokenProcessPool, killed by SIGKILL) after 3 attempts"}
