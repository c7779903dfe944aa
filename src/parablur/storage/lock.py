"""One writer per output: the lock a run or benchmark holds on its output location.

``with hold_lock(store, "parablur run", echo=print) as info:`` (or ``store.lock(...)``)
creates the hidden object ``.parablur-lock`` at the store's root, holding JSON
``{host, pid, command, started, token}``, and deletes it when the block ends - normally,
on an exception or on KeyboardInterrupt - if it still holds this lock's token.

While another process holds it, ``StorageError`` (exit 2) is raised with one line:
"OUTPUT is in use by parablur run (pid 1234 on host X since ...): wait for it to finish,
or if that process is gone, delete OUTPUT/.parablur-lock". A lock whose holder ran on
this host and is gone (no such pid, a zombie, or a pid reused by a process started
after the lock) is taken over, and ``echo`` gets a line saying so. A holder on another
host cannot be checked: its lock is refused like a live one. Content that is not such a
lock is refused with one line naming the object.

How atomic it is depends on the store (``docs/locks.md``):

- a folder: the lock is written whole under a temporary name and hard-linked to its
  name (``O_CREAT | O_EXCL`` where the filesystem has no hard links), and a stale lock is
  replaced (``os.replace``) under an ``flock`` of the folder after checking that it has not
  changed: exact on a local filesystem;
- S3 honouring conditional PUTs (probed once per store object: AWS S3, SeaweedFS 4.48):
  ``PutObject`` with ``If-None-Match: *`` creates it, with ``If-Match: <stale ETag>``
  takes it over: exact;
- other stores (S3 ignoring the headers, memory://, gcs, azure here): look, write, wait
  ``SETTLE_S``, read back the token. Best effort: two processes can both pass if the
  second looks (finds no lock) before the first writes and writes more than
  ``SETTLE_S`` after it looked - i.e. when one request takes longer than that.

The library never prints: ``echo`` (default: nothing) gets the takeover line and any
trouble releasing, for the CLI to print.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from ..errors import ParaBlurError, StorageError
from ..files import LOCK_NAME
from .base import Store

# Best-effort stores: the pause between writing the lock and reading it back.
SETTLE_S = 0.5
# Looks at a lock that changes under us (released, taken over) before giving up.
_ROUNDS = 5
# A pid's process started later than the lock (beyond the lock time's rounding) is not its holder.
_START_SLACK_S = 1.0
_FIELDS = {"host": str, "pid": int, "command": str, "started": str, "token": str}


@dataclass(frozen=True)
class LockInfo:
    """Who holds an output location: host, pid, command ("parablur run"), start time and token."""

    host: str
    pid: int
    command: str
    started: str  # ISO 8601, local time with offset, to the second
    token: str

    @classmethod
    def mine(cls, command: str) -> LockInfo:
        """A new lock for this process."""
        started = datetime.now(UTC).astimezone().isoformat(timespec="seconds")
        return cls(socket.gethostname(), os.getpid(), " ".join(str(command).split())[:200] or "parablur",
                   started, uuid.uuid4().hex)

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), indent=1) + "\n").encode()

    @classmethod
    def parse(cls, data: bytes) -> LockInfo | None:
        """The lock in ``data``, or None if it is not one."""
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        if not isinstance(doc, dict) or any(type(doc.get(name)) is not kind
                                            for name, kind in _FIELDS.items()):
            return None
        return cls(**{name: doc[name] for name in _FIELDS})

    def who(self, when: str = "since") -> str:
        """'parablur run (pid 1234 on host X since 2026-...)', or with 'started' for ``when``."""
        sep = " " if when == "since" else ", "
        return f"{self.command} (pid {self.pid} on host {self.host}{sep}{when} {self.started})"

    def is_gone(self) -> bool:
        """True if the holder surely no longer runs: on this host, and its pid is gone, a zombie
        or a later process's. A holder on another host cannot be checked: False."""
        if self.host != socket.gethostname():
            return False
        if self.pid <= 0:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process: it exists
            pass
        return _not_the_holder(self.pid, self.started)


def _not_the_holder(pid: int, started: str) -> bool:
    """True if ``pid`` is a zombie, or a process started after ``started`` (a reused pid)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        created = process.create_time()
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False
    try:
        locked = datetime.fromisoformat(started).timestamp()
    except ValueError:
        return False
    return created > locked + _START_SLACK_S


@contextlib.contextmanager
def hold_lock(store: Store, command: str, *,
              echo: Callable[[str], None] | None = None) -> Iterator[LockInfo]:
    """Hold ``store``'s lock while the block runs; yields this holder's ``LockInfo``.

    Raises ``StorageError`` (exit 2, one line) if another live process holds it, if its
    holder's host is not this one, if the object is not a lock, or if the store cannot
    be used. ``echo`` gets one line when a gone process's lock is taken over, and one if
    the lock could not be released (the block's own exception, if any, goes on).
    """
    say = echo or (lambda line: None)
    mine = LockInfo.mine(command)
    wrote: list[bool] = []  # non-empty once a write of the lock may have reached the store
    try:
        taken_over = _acquire(store, mine, wrote)
    except BaseException:
        if wrote:  # refused or interrupted after a write: our lock, if it is there, is not left behind
            _release(store, mine, say, quiet=True)
        raise
    try:
        if taken_over:
            say(taken_over)
        yield mine
    finally:
        _release(store, mine, say)


def _acquire(store: Store, mine: LockInfo, wrote: list[bool]) -> str | None:
    """Create or take over the lock: None, or the takeover line to echo."""
    where = store.location(LOCK_NAME)
    data = mine.to_bytes()
    exact = _call(store, "check", store._atomic_exclusive)
    takeover: str | None = None
    for _ in range(_ROUNDS):
        wrote.append(True)
        if _call(store, "create", lambda: store._create_new(LOCK_NAME, data)):
            return _confirm(store, mine, exact, None)
        current = _current(store)
        if current is None:  # released since: look again
            continue
        content, etag = current
        holder = LockInfo.parse(content)
        if holder is None:
            raise StorageError(f"{where} is not a ParaBlur lock: delete it if no parablur process "
                               f"writes to {store.location()}")
        if holder.token == mine.token:  # a write of ours whose answer was lost, then retried
            return _confirm(store, mine, exact, takeover)
        if not holder.is_gone():
            raise _in_use(store, holder)
        takeover = (f"taking over the lock of {holder.who('started')} on {store.location()}: "
                     "that process is gone")
        if _call(store, "replace", lambda etag=etag: store._replace_if(LOCK_NAME, data, etag)):
            return _confirm(store, mine, exact, takeover)
        takeover = None  # changed meanwhile: look again
    raise StorageError(f"cannot lock {store.location()}: {where} kept changing while it was read "
                       "(several runs starting at once?): try again")


def _confirm(store: Store, mine: LockInfo, exact: bool, takeover: str | None) -> str | None:
    """Read the lock back: ours, or refuse naming the process that holds it instead."""
    if not exact:
        time.sleep(SETTLE_S)
    current = _current(store)
    holder = LockInfo.parse(current[0]) if current else None
    if holder is not None and holder.token == mine.token:
        return takeover
    if holder is None:
        raise StorageError(f"cannot lock {store.location()}: {store.location(LOCK_NAME)} was removed or "
                           "replaced while it was being taken: try again")
    raise _in_use(store, holder)


def _in_use(store: Store, holder: LockInfo) -> StorageError:
    return StorageError(f"{store.location()} is in use by {holder.who()}: wait for it to finish, "
                        f"or if that process is gone, delete {store.location(LOCK_NAME)}")


def _release(store: Store, mine: LockInfo, say: Callable[[str], None], quiet: bool = False) -> None:
    """Delete the lock if it still holds ``mine``'s token; report (never raise) any trouble."""
    where = store.location(LOCK_NAME)
    try:
        current = _current(store)
        holder = LockInfo.parse(current[0]) if current else None
        if holder is not None and holder.token == mine.token:
            _call(store, "remove", lambda: store._delete(LOCK_NAME))
        elif not quiet:
            now = (f"it is {holder.who()}'s" if holder else "it is gone" if current is None
                   else "it is not a lock")
            say(f"warning: {where} no longer held this process's lock ({now}): left as it is")
    except (ParaBlurError, OSError) as exc:
        if not quiet:
            say(f"warning: could not remove {where} ({exc}): delete it once no parablur "
                f"process writes to {store.location()}")


def _current(store: Store) -> tuple[bytes, str | None] | None:
    """The lock's content and tag, or None if there is none. The tag is read first: a replace
    conditioned on it fails if the lock changed after it was read, whatever content was judged."""
    def look() -> tuple[bytes, str | None] | None:
        info = store._info(LOCK_NAME)
        if info is None:
            return None
        try:
            return store._read(LOCK_NAME, None), info.etag
        except FileNotFoundError:
            return None

    return _call(store, "read", look)


def _call(store: Store, what: str, fn: Callable[[], object]):
    """``fn()`` retried like every store call; a failure is a StorageError naming the lock."""
    return store._call(f"{what} the lock", LOCK_NAME, fn, per_object=False)
