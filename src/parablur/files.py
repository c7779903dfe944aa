"""Files that appear whole or not at all, their checksums, and what a killed writer leaves.

A file is written under a hidden temporary name in its own folder, then renamed
over its final name, so a reader (or a crash) sees the old file or the new one,
never a part. Temporary names start with '.', so dataset listings skip them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import uuid
from pathlib import Path

# Temporary names: ".<final name>.<8 hex>.part".
_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    ``durable`` also flushes the file and its folder to disk, so that it survives a
    power cut; outputs that can be recomputed skip that cost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "xb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's contents, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(folder: Path) -> int:
    """Delete the temporary files killed writers left anywhere under ``folder``; how many."""
    removed = 0
    if not Path(folder).is_dir():
        return 0
    for path in Path(folder).rglob(".*.part"):
        if _TEMP.match(path.name) and path.is_file():
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed
