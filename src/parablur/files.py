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
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DatasetError

# Temporary names: ".<final name>.<8 hex>.part".
_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")

# Left in every output folder ParaBlur makes: only such a folder is ever cleared or written over.
OUTPUT_MARKER = ".parablur-output"
# The lock of the run or benchmark writing into a location (``parablur.storage.lock``): it may
# be taken before the location is claimed, so it neither makes a folder "not empty" nor is cleared.
LOCK_NAME = ".parablur-lock"
# The folder ledger of runs made before the marker existed (ParaBlur 0.1 before one data path).
_LEGACY_MARKERS = (".parablur-outputs.json",)
_MARKER_COMMAND = re.compile(r"Made by ParaBlur \(parablur ([a-z]+)\)")


def write_atomic(path: Path, data: bytes | Path, *, durable: bool = True) -> None:
    """Write ``data`` (bytes, or a file's content: a copy) to ``path`` through a temporary
    file and a rename.

    ``durable`` also flushes the file and its folder to disk, so that it survives a
    power cut; outputs that can be recomputed skip that cost.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with open(tmp, "xb") as handle:
            if isinstance(data, Path):
                with open(data, "rb") as source:
                    shutil.copyfileobj(source, handle, 1 << 20)
            else:
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


def derived_path(path: Path, tag: str) -> Path:
    """``NAME-<tag>.SUFFIX`` beside ``path``: the file one of several executors, or one point
    of a sweep, writes in place of ``path`` (Dask performance reports)."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{tag}{path.suffix}")


def unwritable(path: Path, *, folder: bool) -> str | None:
    """Why ``path`` cannot be made as a folder (``folder``) or written as a file, or None.

    Looks only at what is on disk: the path itself (a file where a folder is wanted, or
    the other way round) and its nearest existing parent (a file, or a broken link).
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            return f"{path} is a file, not a folder"
        if not folder and path.is_dir():
            return f"{path} is a folder, not a file"
        return None
    if path.is_symlink():
        return f"{path} is a broken link"
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else f"{parent} is a file, not a folder"
        if parent.is_symlink():
            return f"{parent} is a broken link"
    return None


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


def marker_text(command: str | None) -> str:
    """The marker ParaBlur leaves in an output location it claims, naming the command that made it."""
    who = f" (parablur {command})" if command else ""
    return f"Made by ParaBlur{who}: this location's contents are outputs it may replace.\n"


def marker_command(text: bytes | str) -> str | None:
    """The command a marker names (``marker_text``), or None for a marker that names none."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    found = _MARKER_COMMAND.search(text)
    return found.group(1) if found else None


def check_owner(location: str, owner: str | None, command: str | None) -> None:
    """Refuse to let ``command`` write where another command's outputs are (outputs never collide).

    A marker that names no command (ParaBlur before it named them, or a report folder) is
    never a benchmark's: a benchmark empties its leg locations every round, so it uses only
    those that say they are its own.
    """
    if command and owner != command and (owner or command == "bench"):
        who = f"the outputs of 'parablur {owner}'" if owner else (
            "outputs of an earlier ParaBlur that did not record which command made them")
        raise DatasetError(f"refusing to write into {location}: it holds {who}, and 'parablur "
                           f"{command}' writes only into locations it made (choose another "
                           "--output-dir)")


def check_output_dir(folder: Path, command: str | None = None) -> None:
    """Refuse, before anything is written, a folder that ``claim_output_dir`` would refuse."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"output path is not a folder: {folder}")
    marker = folder / OUTPUT_MARKER
    if folder.is_dir() and not marker.is_file():
        legacy = any((folder / name).is_file() for name in _LEGACY_MARKERS)
        if legacy:
            check_owner(str(folder), None, command)
        elif any(path.name != LOCK_NAME for path in folder.iterdir()):
            raise DatasetError(f"refusing to write into {folder}: it holds files ParaBlur did not "
                               "make (choose a new or empty folder)")
    elif marker.is_file():
        try:
            owner = marker_command(marker.read_bytes())
        except OSError as exc:
            raise DatasetError(f"cannot read {marker}: {exc.strerror or exc}") from None
        check_owner(str(folder), owner, command)


@dataclass
class Claim:
    """What ``claim_output_dir`` made: the folders it created (outermost first) and whether it
    wrote the marker; ``unclaim_output_dir`` undoes exactly that."""

    folders: list[Path] = field(default_factory=list)
    marked: bool = False

    def __bool__(self) -> bool:
        return self.marked


def claim_output_dir(folder: Path, command: str | None = None) -> Claim:
    """Make ``folder`` an output folder of ParaBlur's: new or empty (then marked), or already ours
    (and made by ``command``, when one is named).

    A folder holding files ParaBlur did not make, or the outputs of another command, is
    refused before anything is written, so that outputs never replace a user's files of
    the same names and the outputs of different commands never mix. The marker is created
    exclusively: of two commands claiming a new folder at once, the second one reads the
    first one's marker and is refused if it is another command's.
    """
    folder = Path(folder)
    marker = folder / OUTPUT_MARKER
    check_output_dir(folder, command)
    made = [p for p in [folder, *folder.parents] if not p.exists()][::-1]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise DatasetError(f"output path is under a file, not a folder: {folder}") from None
    except OSError as exc:
        raise DatasetError(f"cannot create the output folder {folder}: {exc.strerror or exc}") from None
    if marker.is_file():
        return Claim(made, False)
    try:
        with open(marker, "x", encoding="utf-8") as handle:
            handle.write(marker_text(command))
    except FileExistsError:  # another command claimed it in between
        check_output_dir(folder, command)
        return Claim(made, False)
    return Claim(made, True)


def unclaim_output_dir(folder: Path, claim: Claim) -> None:
    """Undo ``claim_output_dir`` for a command refused before it wrote anything: the marker it
    wrote goes, and the folders it created, once they hold nothing else (call it again after
    the lock is released to remove those)."""
    folder = Path(folder)
    if claim.marked:
        with contextlib.suppress(OSError):
            (folder / OUTPUT_MARKER).unlink()
        claim.marked = False
    for path in reversed(claim.folders):
        with contextlib.suppress(OSError):
            path.rmdir()  # only an empty folder: anything written since stays


def clear_output_dir(folder: Path, command: str | None = None) -> Path:
    """Empty an output folder of ParaBlur's (``claim_output_dir`` checks it is one, made by
    ``command``) and re-mark it."""
    folder = Path(folder)
    claim_output_dir(folder, command)
    for path in folder.iterdir():
        if path.name in (OUTPUT_MARKER, LOCK_NAME):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return folder
