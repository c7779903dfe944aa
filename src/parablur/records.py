"""The workload's per-image records (faces: the detections) as JSON lines beside the outputs.

One line per image, ``{"image": NAME, ...record}``, sorted by image name, in
``OUTPUT_DIR/<executor>/<the workload's record file>``. A resumed run keeps
the lines of the images it skipped and replaces those it redoes; the file is
rewritten atomically, so a killed run leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from .files import write_atomic


class RecordLog:
    """The records of one output folder, written whole by ``save``."""

    def __init__(self, path: Path, *, keep_existing: bool = True) -> None:
        self.path = Path(path)
        self.lines: dict[str, dict] = {}
        self._dirty = not keep_existing
        if keep_existing:
            with contextlib.suppress(OSError, ValueError):
                for line in self.path.read_text(encoding="utf-8").splitlines():
                    item = json.loads(line)
                    if isinstance(item, dict) and isinstance(item.get("image"), str):
                        self.lines[item["image"]] = item

    def add(self, name: str, record: dict) -> None:
        self.lines[name] = {"image": name, **record}
        self._dirty = True

    def drop(self, name: str) -> None:
        if self.lines.pop(name, None) is not None:
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        text = "".join(json.dumps(self.lines[n], sort_keys=True) + "\n" for n in sorted(self.lines))
        write_atomic(self.path, text.encode("utf-8"), durable=False)
        self._dirty = False
