"""The dataset's manifest.json: what each image is, where it came from, and its checksum."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from ..files import sha256_file, write_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "parablur-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One image of the dataset as recorded in the manifest."""

    index: int
    file: str
    url: str | None
    source: str
    sha256: str
    bytes: int
    width: int
    height: int
    attempts: int
    last_error: str | None


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def dataset_checksum(sha256s: list[str]) -> str:
    """SHA-256 over the sorted per-image SHA-256s: same images, same checksum, any order."""
    return sha256_bytes("\n".join(sorted(sha256s)).encode())


def file_matches(path: Path, entry: ManifestEntry) -> bool:
    """True if ``path`` exists with the size and SHA-256 its manifest entry records."""
    try:
        if path.stat().st_size != entry.bytes:
            return False
        return sha256_file(path) == entry.sha256
    except OSError:
        return False


def load_manifest(folder: Path) -> tuple[dict, dict[int, ManifestEntry]]:
    """The metadata and entries (by index) of ``folder``'s manifest; empty if absent or bad."""
    path = Path(folder) / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = {}
        for item in raw.get("images", []):
            entry = ManifestEntry(**item)
            entries[entry.index] = entry
        return raw.get("meta", {}), entries
    except (OSError, ValueError, TypeError, AttributeError):
        return {}, {}


class Manifest:
    """The manifest being built by a fetch; thread-safe, rewritten atomically on every change."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.meta = dict(meta)
        self._entries: dict[int, ManifestEntry] = {}
        self._lock = threading.Lock()

    def record(self, entry: ManifestEntry) -> None:
        """Add or replace one image's entry and save, so a killed run keeps its progress."""
        with self._lock:
            self._entries[entry.index] = entry
            self._save()

    def save(self) -> None:
        """Write the manifest as it stands."""
        with self._lock:
            self._save()

    def entries(self) -> list[ManifestEntry]:
        """Every entry, in index order."""
        with self._lock:
            return [self._entries[i] for i in sorted(self._entries)]

    def checksum(self) -> str:
        """The dataset checksum of the entries recorded so far."""
        return dataset_checksum([e.sha256 for e in self.entries()])

    def _save(self) -> None:
        entries = [asdict(self._entries[i]) for i in sorted(self._entries)]
        doc = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "meta": self.meta,
            "dataset_checksum": dataset_checksum([e["sha256"] for e in entries]),
            "images": entries,
        }
        write_atomic(self.path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
