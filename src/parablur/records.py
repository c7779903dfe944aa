"""The workload's per-image records (faces: the detections) as JSON lines beside the outputs.

One line per image, ``{"image": NAME, ...record}`` (a video clip: one per frame with faces,
``{"image": NAME, "frame": N, "pts": SECONDS, ...}``), sorted by image name, in
``OUTPUT_DIR/<executor>/<the workload's record file>``: a file in an output folder, or
one object in an output prefix of a store. A resumed run keeps the lines of the images
it skipped and replaces those it redoes; the record is written whole by ``save`` (a
file replaced atomically, one PUT in a store), so a killed run leaves the old record or
the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ObjectError, StorageError
from .storage import LocalStore, Store


def record_line(name: str, record: dict) -> str:
    """Image ``name``'s line of the record file (without its newline), as written and compared."""
    return json.dumps({"image": name, **record}, sort_keys=True)


def line_tag(line: str) -> str:
    """A short tag of one record line: an output in a store carries its line's tag, so that a
    line and the output it describes can be told apart from a line left by another run."""
    return hashlib.sha256(line.encode("utf-8")).hexdigest()[:16]


class RecordLog:
    """The records of one output location, held by the client and written whole by ``save``.

    Every line is held until ``save`` (the run's end, or its interruption) as its JSON
    text, about 160 bytes over the line's length: measured with ``tracemalloc``, 0.46 KB
    an image for a faces record without a face, 0.61 KB with one, 1.08 KB with four
    (0.5 to 1.1 GB for a million images; as decoded dicts it would be five to seven
    times more). That is the price of writing the record with one PUT: an object
    store cannot append to an object.
    """

    def __init__(self, store: Store, key: str, *, keep_existing: bool = True) -> None:
        self.store = store
        self.key = key
        self._lines: dict[str, str] = {}
        self._dirty = not keep_existing
        if keep_existing:
            self._load()

    @classmethod
    def file(cls, path: Path, *, keep_existing: bool = True) -> RecordLog:
        """The records in the file ``path`` of an output folder."""
        path = Path(path)
        return cls(LocalStore(path.parent), path.name, keep_existing=keep_existing)

    def _load(self) -> None:
        try:
            if self.store.info(self.key) is None:
                return
            text = self.store.read(self.key).decode("utf-8", errors="replace")
        except ObjectError as exc:
            # Starting empty would drop every skipped image's line when the record is saved.
            raise StorageError(f"cannot read the records {self.store.location(self.key)}: {exc}"
                               ) from None
        for line in text.splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue  # a torn or foreign line: that image's record is redone or dropped
            if isinstance(item, dict) and isinstance(item.get("image"), str):
                name, line = item["image"], record_line(item["image"], item)
                # A video clip has a line per frame with faces: its record is all of them.
                self._lines[name] = f"{self._lines[name]}\n{line}" if name in self._lines else line

    def __contains__(self, name: str) -> bool:
        return name in self._lines

    def __len__(self) -> int:
        return len(self._lines)

    def tag(self, name: str) -> str:
        """``line_tag`` of image ``name``'s line, or "" when there is none."""
        line = self._lines.get(name)
        return line_tag(line) if line is not None else ""

    def get(self, name: str) -> dict | None:
        """The record of image ``name`` (with its ``"image"`` key), or None; a video clip's is
        ``{"image": NAME, "frames": [each frame's line]}``."""
        line = self._lines.get(name)
        return _decode(name, line) if line is not None else None

    @property
    def lines(self) -> dict[str, dict]:
        """Every record by image name (decoded: for a dataset's worth, not a million images)."""
        return {name: _decode(name, line) for name, line in self._lines.items()}

    def add(self, name: str, line: str) -> None:
        """Keep ``line`` (``record_line``'s, made on the worker) as image ``name``'s record (a
        clip's: its lines, one per frame with faces, joined by newlines)."""
        self._lines[name] = line
        self._dirty = True

    def drop(self, name: str) -> None:
        if self._lines.pop(name, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the record whole if anything changed since it was read or saved."""
        if not self._dirty:
            return
        if not self._lines and self.store.info(self.key) is None:
            self._dirty = False  # nothing to record, and no older record to replace
            return
        text = "".join(self._lines[n] + "\n" for n in sorted(self._lines))
        self.store.write(self.key, text.encode("utf-8"))
        self._dirty = False


def _decode(name: str, text: str) -> dict:
    items = [json.loads(line) for line in text.split("\n")]
    if len(items) == 1 and "frame" not in items[0]:
        return items[0]
    return {"image": name, "frames": items}
