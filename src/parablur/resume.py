"""Resuming a run: which outputs are up to date, recorded beside the outputs.

``OUTPUT_DIR/<executor>/.parablur-outputs.json`` maps each image (its path
relative to the input folder) to the input it was made from (size, mtime_ns,
sha256), the blur parameters, ParaBlur's version and the output (size,
sha256). The record is replaced atomically (temp file + rename), so a run
killed at any moment leaves either the old or the new record, never a torn
one; an image finished after the last save is simply redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .files import sha256_file, write_atomic
from .worker import ImageResult, ImageTask, Job

RECORD_NAME = ".parablur-outputs.json"
RECORD_FORMAT = 1


def params_key(job: Job) -> dict:
    """The parameters an output depends on (not limits such as max_pixels)."""
    return job.describe()


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime_ns: int


class OutputRecord:
    """The record of finished outputs of one output folder, saved at most every ``every_s``."""

    def __init__(self, out_dir: Path, job: Job, *, every_s: float = 1.0) -> None:
        self.path = Path(out_dir) / RECORD_NAME
        self.params = params_key(job)
        self.every_s = every_s
        self.entries: dict[str, dict] = {}
        self._stats: dict[str, _Stat] = {}
        self._dirty = False
        self._saved_at = time.monotonic()
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") == RECORD_FORMAT and isinstance(data.get("images"), dict):
                self.entries = data["images"]

    def split(self, tasks: list[ImageTask]) -> tuple[list[ImageTask], list[ImageTask]]:
        """(tasks to do, tasks whose output is up to date); remembers each input's stat."""
        todo, done = [], []
        for task in tasks:
            with contextlib.suppress(OSError):
                st = os.stat(task.src)
                self._stats[task.name] = _Stat(st.st_size, st.st_mtime_ns)
            (done if self._up_to_date(task) else todo).append(task)
        return todo, done

    def _up_to_date(self, task: ImageTask) -> bool:
        entry = self.entries.get(task.name)
        stat = self._stats.get(task.name)
        if not entry or stat is None:
            return False
        if entry.get("params") != self.params or entry.get("version") != __version__:
            return False
        out = entry.get("output", {})
        try:
            if os.stat(task.dst).st_size != out.get("size"):
                return False
            if sha256_file(Path(task.dst)) != out.get("sha256"):
                return False
            inp = entry.get("input", {})
            if stat.size != inp.get("size"):
                return False
            if stat.mtime_ns != inp.get("mtime_ns"):
                # Touched or copied: same content is still up to date.
                if sha256_file(Path(task.src)) != inp.get("sha256"):
                    return False
                inp["mtime_ns"] = stat.mtime_ns
                self._dirty = True
        except OSError:
            return False
        return True

    def add(self, task: ImageTask, result: ImageResult) -> None:
        """Record a finished output; saved with the next ``save``."""
        stat = self._stats.get(task.name)
        if not result.ok or stat is None or not result.output_sha256:
            return
        self.entries[task.name] = {
            "input": {"size": stat.size, "mtime_ns": stat.mtime_ns,
                      "sha256": result.input_sha256},
            "params": self.params, "version": __version__,
            "output": {"size": result.output_size, "sha256": result.output_sha256},
        }
        self._dirty = True
        if time.monotonic() - self._saved_at >= self.every_s:
            self.save()

    def forget(self, name: str) -> None:
        if self.entries.pop(name, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Replace the record atomically with the current entries."""
        if not self._dirty:
            return
        data = {"format": RECORD_FORMAT, "parablur": __version__, "images": self.entries}
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode())
        self._dirty = False
        self._saved_at = time.monotonic()
