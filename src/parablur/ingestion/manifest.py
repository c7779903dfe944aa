"""The dataset's manifest.json: what each image (or clip) is, where it came from, and its checksum.

The manifest is also ParaBlur's mark of ownership: only a folder whose manifest.json
carries ParaBlur's format marker and a version this code reads is ever written to.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import CLIP_FALLBACK, FALLBACKS
from ..errors import DatasetError
from ..files import sha256_file, write_atomic

if TYPE_CHECKING:
    from ..storage import Store

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "parablur-manifest"
MANIFEST_VERSION = 1
# The only file names ParaBlur writes into a dataset: img_<index, 4+ digits>.<stored suffix>,
# and clip_<index>.mp4 for a generated clip (an entry with ``video``).
_OWN_NAME = re.compile(r"^img_(\d{4,})\.(jpg|png|webp|bmp)$")
_OWN_CLIP = re.compile(r"^clip_(\d{4,})\.(mp4)$")
# An array of numbers, or of such arrays, that json.dumps(indent=...) spread over lines: raw
# newlines occur only between JSON tokens, never inside a string, so these match structure only.
_NUMBERS = re.compile(r"\[\n\s*(-?[\d.eE+-]+(?:,\n\s*-?[\d.eE+-]+)*)\n\s*\]")
_ROWS = re.compile(r"\[\n\s*(\[[^\n\]]*\](?:,\n\s*\[[^\n\]]*\])*)\n\s*\]")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ForeignManifest(DatasetError):
    """manifest.json exists but is not a ParaBlur manifest this version reads: the folder is
    the user's, to be used read-only."""


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
    seed: int | None = None  # of a generated image (absent from older manifests)
    faces: list[list[int]] | None = None  # true face boxes [x, y, w, h] of a generated face image
    # A generated clip's truth: {"fps", "frames", "seconds", "faces": per frame, its boxes [x, y, w, h]}.
    video: dict | None = None


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


def _entry(item: object) -> ManifestEntry:
    """One manifest image entry, checked as strictly as ParaBlur writes it (else ValueError)."""
    names = {f.name for f in fields(ManifestEntry)}
    if not isinstance(item, dict) or not set(item) <= names:
        raise ValueError(f"unexpected image entry {str(item)[:80]!r}")
    entry = ManifestEntry(**item)  # TypeError for a missing field
    ints = (entry.index, entry.bytes, entry.width, entry.height, entry.attempts)
    if not all(type(v) is int and v >= 0 for v in ints):
        raise ValueError(f"image entry {entry.index!r} has a non-integer count")
    pattern, stem = (_OWN_NAME, "img") if entry.video is None else (_OWN_CLIP, "clip")
    name = pattern.match(entry.file) if isinstance(entry.file, str) else None
    if name is None or entry.file != f"{stem}_{entry.index:04d}.{name.group(2)}":
        raise ValueError(f"image entry {entry.index} names {entry.file!r}, not a file ParaBlur "
                         "writes")
    if entry.video is not None:
        _check_video(entry)
    if not isinstance(entry.sha256, str) or not _SHA256.match(entry.sha256) \
            or not isinstance(entry.source, str):
        raise ValueError(f"image entry {entry.index} has no valid sha256 or source")
    return entry


def _check_video(entry: ManifestEntry) -> None:
    """A clip's truth as ParaBlur writes it: a box list for each of its frames (else ValueError)."""
    video = entry.video
    frames = video.get("frames") if isinstance(video, dict) else None
    faces = video.get("faces") if isinstance(video, dict) else None
    if type(frames) is not int or frames < 1 or not isinstance(faces, list) or len(faces) != frames \
            or not all(isinstance(boxes, list) for boxes in faces):
        raise ValueError(f"clip entry {entry.index} has no box list for each of its frames")


def load_manifest(folder: Path) -> tuple[dict, dict[int, ManifestEntry]] | None:
    """The metadata and entries (by index) of ``folder``'s manifest; None if it has none.

    Raises ForeignManifest when manifest.json exists but cannot be read, was not written
    by ParaBlur, is of another version, or lists files ParaBlur would not have written.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.exists() and not path.is_symlink():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ForeignManifest(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ForeignManifest(f"{path} is not valid JSON") from exc
    return parse_manifest(text, str(path))


def store_manifest(store: Store) -> tuple[dict, dict[int, ManifestEntry]] | None:
    """The manifest beside a dataset's images in a store (as ``load_manifest``); None if none.

    ``StorageError`` or ``ObjectError`` when the store cannot be read.
    """
    if store.info(MANIFEST_NAME) is None:
        return None
    return parse_manifest(store.read(MANIFEST_NAME), store.location(MANIFEST_NAME))


def parse_manifest(text: str | bytes, where: str) -> tuple[dict, dict[int, ManifestEntry]]:
    """The metadata and entries of a manifest's text, read from ``where`` (named in errors)."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ForeignManifest(f"{where} is not valid JSON") from exc
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise ForeignManifest(f"{where} was not written by ParaBlur "
                              f"(no \"format\": \"{MANIFEST_FORMAT}\")")
    if raw.get("version") != MANIFEST_VERSION:
        raise ForeignManifest(f"{where} is a ParaBlur manifest of version "
                              f"{raw.get('version')!r}; this ParaBlur reads version "
                              f"{MANIFEST_VERSION}")
    meta, items = raw.get("meta", {}), raw.get("images")
    try:
        if not isinstance(meta, dict) or not isinstance(items, list):
            raise ValueError("no \"meta\" object or \"images\" list")
        entries: dict[int, ManifestEntry] = {}
        for item in items:
            entry = _entry(item)
            if entry.index in entries:
                raise ValueError(f"image {entry.index} is listed twice")
            entries[entry.index] = entry
    except (TypeError, ValueError) as exc:
        raise ForeignManifest(f"{where} is damaged: {exc}") from exc
    return meta, entries


def reused_meta(old: dict, wanted: dict) -> dict:
    """The metadata of a dataset a fetch reuses: what it was made with, never this fetch's request.

    ``old`` is the dataset's recorded metadata and ``wanted`` what this fetch would record
    for a new dataset. Every recorded key stays as it was (the source, the image size, the
    seed, the fallback kind, ...): the images a fetch adds record their own source and size
    in their entries. Only ``num_images`` grows, when this fetch made the dataset larger.
    """
    meta = dict(old)
    asked, had = wanted.get("num_images"), old.get("num_images")
    if type(asked) is int and type(had) is int and asked > had:
        meta["num_images"] = asked
    return meta


def _manifest_of(where: Path | Store) -> tuple[dict, dict[int, ManifestEntry]] | None:
    return load_manifest(where) if isinstance(where, Path) else store_manifest(where)


def dataset_settings(folder: Path | Store) -> dict:
    """The image count and fallback kind of a dataset ParaBlur made in ``folder`` or a store
    (an empty dict for any other), and for a faces-video dataset its clips' width, height,
    clip_seconds and clip_fps: what a command pointed at it uses unless told otherwise.

    A store that cannot be used raises ``StorageError`` (the same first request ``fetch``
    makes, so the same one line).
    """
    try:
        loaded = _manifest_of(folder)
    except (ForeignManifest, OSError):
        return {}
    if not loaded:
        return {}
    meta, entries = loaded
    out = {}
    asked = meta.get("num_images")
    if isinstance(asked, int) and asked >= 1:
        out["num_images"] = asked  # as made, or as a fetch grew it (``reused_meta``)
    elif entries:
        out["num_images"] = len(entries)
    if meta.get("fallback") in FALLBACKS:
        out["fallback"] = meta["fallback"]
    if out.get("fallback") == CLIP_FALLBACK:  # the size, length and rate its clips were made at
        for key, low in (("width", 16), ("height", 16), ("clip_seconds", 0), ("clip_fps", 1)):
            value = meta.get(key)
            if type(value) in (int, float) and value > low:
                out[key] = value
    return out


def check_kind(fallback: str, entries: Iterable[ManifestEntry], where: str) -> None:
    """Refuse to add images to a dataset of clips, or clips to a dataset of images (DatasetError)."""
    clips = fallback == CLIP_FALLBACK
    for entry in entries:
        if (entry.video is not None) != clips:
            have, want = ("faces-video clips", f"--fallback {fallback} makes images") if not clips \
                else ("images", "--fallback faces-video makes clips")
            raise DatasetError(f"{where} is a dataset of {have}: {want}; fetch them into another "
                               "--input-dir")


def clip_truth(folder: Path | Store) -> dict[str, dict]:
    """The truth of every generated clip of a dataset (a folder, or a store's prefix), by file:
    {"fps", "frames", "seconds", "faces": each frame's boxes}; empty for any other dataset."""
    return {e.file: e.video for e in _own_entries(folder) if e.video is not None}


def true_faces(folder: Path | Store) -> dict[str, list[list[int]]]:
    """The true face boxes of a generated face dataset (a folder, or a store's prefix), by
    image file; empty for any other."""
    return {e.file: e.faces for e in _own_entries(folder) if e.faces is not None}


def _own_entries(folder: Path | Store) -> list[ManifestEntry]:
    """The entries of a dataset ParaBlur made (a folder, or a store's prefix); none otherwise."""
    try:
        loaded = _manifest_of(folder)
    except ForeignManifest:
        return []
    return list(loaded[1].values()) if loaded is not None else []


def compact_json(doc: object) -> str:
    """``doc`` as indented JSON, but each box (an array of numbers) on one line, and each list of
    boxes too: a clip's truth takes a line per frame, not a line per number."""
    text = json.dumps(doc, indent=1)
    text = _NUMBERS.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
    return _ROWS.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",\n")) + "]", text)


class Manifest:
    """The manifest being built by a fetch; thread-safe, rewritten atomically on every change.

    It always describes exactly the valid images on disk: an entry is dropped before its
    file is replaced and recorded once the new file is written.
    """

    def __init__(self, folder: Path, meta: dict, entries: Iterable[ManifestEntry] = ()) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self.meta = dict(meta)
        self._entries: dict[int, ManifestEntry] = {e.index: e for e in entries}
        self._lock = threading.Lock()

    def get(self, index: int) -> ManifestEntry | None:
        """The entry of image ``index``, if it is recorded."""
        with self._lock:
            return self._entries.get(index)

    def record(self, entry: ManifestEntry) -> None:
        """Add or replace one image's entry and save, so a killed run keeps its progress."""
        with self._lock:
            self._entries[entry.index] = entry
            self._save()

    def drop(self, index: int) -> None:
        """Forget image ``index`` (and save) before its file is replaced."""
        with self._lock:
            if self._entries.pop(index, None) is not None:
                self._save()

    def save(self) -> None:
        """Write the manifest as it stands."""
        with self._lock:
            self._save()

    def entries(self) -> list[ManifestEntry]:
        """Every entry, in index order."""
        with self._lock:
            return [self._entries[i] for i in sorted(self._entries)]

    def _save(self) -> None:
        entries = [asdict(self._entries[i]) for i in sorted(self._entries)]
        doc = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "meta": self.meta,
            "dataset_checksum": dataset_checksum([e["sha256"] for e in entries]),
            "images": entries,
        }
        try:
            write_atomic(self.path, (compact_json(doc) + "\n").encode("utf-8"))
        except OSError as exc:
            raise DatasetError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
