"""A local folder as a store: today's atomic writes and sorted recursive listing, as a store."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import DatasetError, ObjectError
from ..files import (
    check_output_dir,
    claim_output_dir,
    clear_output_dir,
    remove_stale_temps,
    sha256_file,
    unclaim_output_dir,
    write_atomic,
)
from ._retry import RetryPolicy
from .base import ObjectInfo, Store, check_key, sidecar_bytes, sidecar_key, sidecar_metadata


class LocalStore(Store):
    """The files below a folder, keyed by their '/'-separated paths relative to it.

    ``by_url``: opened from a ``file://`` URL, which a command addresses by keys like any
    URL's objects, so the folder is not offered for work in place (``local_folder``).
    """

    shared = False  # on the client's disk: remote workers reach it through the client

    def __init__(self, root: Path | str, retry: RetryPolicy | None = None, *,
                 by_url: bool = False) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.retry = retry or RetryPolicy()
        self.by_url = by_url
        self._made: list[Path] = []

    def __reduce__(self):
        return (LocalStore, (str(self.root), self.retry), {"by_url": self.by_url})

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def local_folder(self) -> Path | None:
        """The root, where a dataset is built in place; None when opened from a ``file://`` URL."""
        return None if self.by_url else self.root

    def path(self, key: str) -> Path:
        """The file that holds ``key``."""
        return self.root / check_key(key)

    def claim_output(self, command: str | None = None) -> bool:
        """Make the root an output folder of ParaBlur's (``files.claim_output_dir``), or refuse."""
        made = claim_output_dir(self.root, command)
        self._made = made or self._made
        return bool(made)

    def check_output(self, command: str | None = None) -> None:
        check_output_dir(self.root, command)

    def tidy(self) -> None:
        """Remove the temporary files that killed writers left below the root (it is ours)."""
        remove_stale_temps(self.root)

    def unclaim(self) -> None:
        unclaim_output_dir(self.root, self._made)
        self._made = []

    def clear_outputs(self) -> None:
        clear_output_dir(self.root)

    def _secrets(self) -> frozenset[str]:
        return frozenset()

    def _pages(self, page_size: int) -> Iterator[list[ObjectInfo]]:
        # Depth first, each folder's entries sorted by name with '/' after a folder's name:
        # the same order as sorting every relative path (parablur.dataset.list_images), with
        # only the folders on the current path in memory. Hidden names are skipped, symlinked
        # folders are not followed and unreadable subfolders are passed over, as rglob does.
        if not self.root.exists():
            raise DatasetError(f"input folder not found: {self.root}")
        if not self.root.is_dir():
            raise DatasetError(f"input path is not a folder: {self.root}")
        try:
            stack = [iter(self._entries(self.root, ""))]
        except PermissionError:
            raise DatasetError(f"input folder cannot be read: {self.root}") from None
        page: list[ObjectInfo] = []
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            rel, entry, is_dir = item
            if is_dir:
                try:
                    stack.append(iter(self._entries(Path(entry.path), rel + "/")))
                except PermissionError:
                    pass
                continue
            try:
                if not entry.is_file():
                    continue
                size = entry.stat().st_size
            except OSError:  # vanished or a broken link
                continue
            page.append(ObjectInfo(rel, size))
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page

    @staticmethod
    def _entries(folder: Path, prefix: str) -> list[tuple[str, os.DirEntry, bool]]:
        with os.scandir(folder) as it:
            entries = []
            for entry in it:
                if entry.name.startswith("."):
                    continue
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                entries.append((prefix + entry.name, entry, is_dir))
        entries.sort(key=lambda item: item[0] + "/" if item[2] else item[0])
        return entries

    def _read(self, key: str, length: int | None) -> bytes:
        with open(self.root / key, "rb") as handle:
            return handle.read(-1 if length is None else length)

    def _write(self, key: str, data: bytes, metadata: dict[str, str], durable: bool) -> None:
        path = self.root / key
        if self.root.resolve() not in path.resolve().parents:  # a symlink planted below the root
            raise ObjectError(f"refusing to write outside the output folder: {key}")
        write_atomic(path, data, durable=durable)
        if metadata:
            record = sidecar_bytes(len(data), hashlib.sha256(data).hexdigest(), metadata)
            write_atomic(self.root / sidecar_key(key), record, durable=durable)

    def _info(self, key: str) -> ObjectInfo | None:
        path = self.root / key
        try:
            if not path.is_file():
                return None
            size = path.stat().st_size
            body = ObjectInfo(key, size, sha256_file(path))
        except FileNotFoundError:
            return None
        try:
            record = (self.root / sidecar_key(key)).read_bytes()
        except FileNotFoundError:
            return body
        return ObjectInfo(key, body.size, body.etag, sidecar_metadata(record, body))

    def _delete(self, key: str) -> None:
        (self.root / key).unlink()
