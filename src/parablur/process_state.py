"""What ParaBlur's work changes in the caller's own process, and how it is undone.

The executors that run in the caller's process (sequential, threads, in-process
Dask workers) pin OpenCV and BLAS to one thread there, and the nannies of a
LocalCluster set environment variables there before they spawn workers. Each of
them holds the process while it runs; the first change to each setting records
how to undo it, and the last holder to let go undoes them all, whatever the order
in which holders close (a benchmark holds several at once).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

_lock = threading.RLock()
_holders = 0
_undo: dict[str, Callable[[], None]] = {}


def hold() -> None:
    """Start changing the caller's process; pair with ``release``."""
    global _holders
    with _lock:
        _holders += 1


def remember(key: str, undo: Callable[[], None]) -> None:
    """Record how to undo the change named ``key``, unless its first change is recorded already.

    Only while held: a change made with no holder is not ParaBlur's to undo.
    """
    with _lock:
        if _holders and key not in _undo:
            _undo[key] = undo


def remember_environ(before: Mapping[str, str]) -> None:
    """Record how to undo every environment variable changed since ``before``."""
    with _lock:
        for name in set(before) | set(os.environ):
            if before.get(name) != os.environ.get(name):
                remember(f"environ:{name}", lambda name=name, value=before.get(name):
                         _set_environ(name, value))


def release() -> None:
    """Stop holding; the last holder undoes every recorded change."""
    global _holders
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders:
            return
        undo = list(_undo.values())
        _undo.clear()
    for step in reversed(undo):
        step()


def _set_environ(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
