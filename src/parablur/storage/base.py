"""The store interface: where a run's bytes come from and go, by key, with errors sorted by what they mean."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from ..dataset import MEDIA_SUFFIXES
from ..errors import ConfigError, DatasetError, ObjectError, ParaBlurError, StorageError
from ..files import LOCK_NAME, OUTPUT_MARKER
from ._retry import Kind, RetryPolicy, classify, describe
from .options import redact

if TYPE_CHECKING:
    from .lock import LockInfo

T = TypeVar("T")

# Hidden names: never listed as images, so a probe or a sidecar never becomes an input.
PROBE_PREFIX = ".parablur-probe-"
SIDECAR_SUFFIX = ".parablur-meta.json"
SIDECAR_FORMAT = 1
# ``Store.upload``: an object store's upload is split in parts of this size from twice this size.
MULTIPART_CHUNK_BYTES = 16 * 2**20
# ``Store.open``: bytes per ranged read (a segment of a 1080p clip is a few MB).
OPEN_BLOCK_BYTES = 4 * 2**20
# Bytes a read probe fetches from the first image: enough to prove the read, cheap for any size.
PROBE_READ_BYTES = 64 * 1024
# Object metadata as S3 allows it everywhere: lower-case ASCII names, printable ASCII values,
# at most 2 KB in all.
_META_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_META_LIMIT = 2000


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key below the store's root, size, content tag and ParaBlur's metadata.

    ``etag`` changes whenever the content changes: the S3 ETag (quotes removed), or the
    SHA-256 of the content where the store has no tag of its own (local files).
    """

    key: str
    size: int
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def is_image_key(key: str) -> bool:
    """True for a key with an image or video suffix and no hidden part (temporary names, probes
    and a clip's segments are hidden)."""
    parts = key.split("/")
    if any(not part or part.startswith(".") for part in parts):
        return False
    name = parts[-1]
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in MEDIA_SUFFIXES


def check_key(key: str) -> str:
    """``key`` if it names an object below the root ('a/b.jpg'); a key that could escape it is refused."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\0" in key \
            or (os.sep != "/" and os.sep in key):  # a backslash is a name's own character on POSIX
        raise ConfigError(f"a storage key must be a relative 'a/b' path, got {key!r}")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ConfigError(f"a storage key must not contain empty, '.' or '..' parts, got {key!r}")
    return key


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """``metadata`` as a plain dict if every store can keep it: lower-case names, ASCII values, <= 2 KB."""
    meta = dict(metadata or {})
    total = 0
    for name, value in meta.items():
        if not isinstance(name, str) or not _META_NAME.match(name):
            raise ConfigError(f"metadata names must be lower-case letters, digits and '-', got {name!r}")
        if not isinstance(value, str) or not all(" " <= ch <= "~" for ch in value):
            raise ConfigError(f"metadata values must be printable ASCII strings, got {name}={value!r}")
        total += len(name) + len(value)
    if total > _META_LIMIT:
        raise ConfigError(f"metadata must be at most {_META_LIMIT} bytes in all, got {total}")
    return meta


def sidecar_key(key: str) -> str:
    """The hidden object beside ``key`` that holds its metadata on stores without native metadata."""
    folder, _, name = key.rpartition("/")
    return f"{folder}/.{name}{SIDECAR_SUFFIX}" if folder else f".{name}{SIDECAR_SUFFIX}"


def sidecar_bytes(size: int, etag: str | None, metadata: Mapping[str, str]) -> bytes:
    """A sidecar's content: the metadata, and the size and tag of the body it describes."""
    doc = {"format": SIDECAR_FORMAT, "size": size, "etag": etag, "metadata": dict(metadata)}
    return json.dumps(doc, sort_keys=True).encode()


def sidecar_metadata(data: bytes, body: ObjectInfo) -> dict[str, str]:
    """The metadata in a sidecar, if it describes ``body`` as it is now; {} if stale or unreadable.

    The body is written before its sidecar, so a run killed between the two leaves a body
    whose (old or missing) sidecar does not match it: its metadata then reads as absent.
    """
    try:
        doc = json.loads(data)
    except ValueError:
        return {}
    if (not isinstance(doc, dict) or doc.get("format") != SIDECAR_FORMAT
            or doc.get("size") != body.size or doc.get("etag") != body.etag
            or not isinstance(doc.get("metadata"), dict)):
        return {}
    return {str(k): str(v) for k, v in doc["metadata"].items()}


class Store(ABC):
    """Where bytes come from and go, by key below a root: a local folder or an fsspec URL.

    Every call retries transient errors (``RetryPolicy``) and then raises
    ``StorageError`` (exit 2) when the store cannot be used at all - missing bucket,
    refused credentials, denied listing or probe - or ``ObjectError`` (an ``ImageError``
    and ``OSError``) when only the object at hand failed. Messages never hold credentials.
    """

    #: Shown in messages, reprs and results: the location with any credential masked.
    url: str
    retry: RetryPolicy
    #: True when every worker reaches the store by its URL (an object store). A folder on the
    #: client's disk is reached by remote workers only through the client (``--transfer bytes``).
    shared: bool = True

    # -- primitives of one implementation: one attempt each, raising the backend's errors --

    @abstractmethod
    def _pages(self, page_size: int) -> Iterator[list[ObjectInfo]]:
        """Every object below the root in key order, a page at a time (each page fetch retried)."""

    @abstractmethod
    def _read(self, key: str, length: int | None) -> bytes: ...

    @abstractmethod
    def _write(self, key: str, data: bytes, metadata: dict[str, str], durable: bool) -> None: ...

    @abstractmethod
    def _info(self, key: str) -> ObjectInfo | None:
        """The object's size, tag and metadata; None if there is no such object."""

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _open(self, key: str) -> IO[bytes]: ...

    @abstractmethod
    def _upload(self, key: str, path: Path, metadata: dict[str, str]) -> None: ...

    @abstractmethod
    def _secrets(self) -> frozenset[str]: ...

    # -- exclusive writes, for the lock (``storage.lock``); stores override them where atomic --

    def _atomic_exclusive(self) -> bool:
        """True if ``_create_new`` and ``_replace_if`` are each one atomic operation on this store.

        Here: no, they look, then write (best effort; see ``storage.lock``).
        """
        return False

    def _create_new(self, key: str, data: bytes) -> bool:
        """Put ``data`` at ``key`` unless an object is there: True if put, False if one is there."""
        if self._info(key) is not None:
            return False
        self._write(key, data, {}, True)
        return True

    def _replace_if(self, key: str, data: bytes, etag: str | None) -> bool:
        """Replace the object at ``key`` by ``data`` if its tag is still ``etag``: False if it
        changed or is gone."""
        info = self._info(key)
        if info is None or info.etag != etag:
            return False
        self._write(key, data, {}, True)
        return True

    # -- the interface --

    @abstractmethod
    def child(self, name: str) -> Store:
        """The store of the folder or prefix ``name`` below this one's root, with its options."""

    def holds_anything(self) -> bool:
        """True when anything but hidden names (ParaBlur's marker, lock, probes, sidecars) is
        below the root."""
        try:
            for page in self._pages(100):
                if any(not item.key.rsplit("/", 1)[-1].startswith(".") for item in page):
                    return True
        except (OSError, ParaBlurError):
            return True  # cannot tell: keep what is there
        return False

    def location(self, key: str = "") -> str:
        """``key``'s location for a message, credentials masked."""
        return f"{self.url.rstrip('/')}/{key}" if key else self.url

    def local_folder(self) -> Path | None:
        """The folder whose files are this store's objects, when work may be done in it in
        place and its objects named by their paths (a dataset built there); None otherwise:
        work is staged in a temporary folder and its objects are uploaded, named by key."""
        return None

    def scan_images(self, page_size: int = 1000) -> Iterator[ObjectInfo]:
        """Every image below the root, in key order, as the listing's pages arrive.

        Only one page is held at a time, so the first images come before the listing
        ends and memory stays flat however many objects there are.
        """
        for page in self._pages(page_size):
            for item in page:
                if is_image_key(item.key):
                    yield item

    def list_images(self, page_size: int = 1000) -> Iterator[str]:
        """The keys of ``scan_images``."""
        for item in self.scan_images(page_size):
            yield item.key

    def read(self, key: str, *, length: int | None = None) -> bytes:
        """The object's bytes (only the first ``length`` when given)."""
        key = check_key(key)
        return self._call("read", key, lambda: self._read(key, length), per_object=True)

    def write(self, key: str, data: bytes, *, metadata: Mapping[str, str] | None = None,
              durable: bool = False) -> None:
        """Put ``data`` at ``key`` whole or not at all, with ``metadata`` to read back with ``info``.

        On an object store this is one PUT to the final key (a PUT is atomic: no
        temporary name, no rename); in a folder, a temporary file renamed over the
        final name. ``durable`` also flushes a local file to disk.
        """
        key = check_key(key)
        meta = check_metadata(metadata)
        self._call("write", key, lambda: self._write(key, bytes(data), meta, durable), per_object=True)

    def open(self, key: str) -> IO[bytes]:
        """The object as a seekable binary file that reads only the ranges asked for (ranged GETs
        on an object store): a worker decodes one segment of a long clip without the rest."""
        key = check_key(key)
        return self._call("open", key, lambda: self._open(key), per_object=True)

    def upload(self, key: str, path: Path, *, metadata: Mapping[str, str] | None = None) -> None:
        """Put the local file ``path`` at ``key`` whole or not at all, with ``metadata``: ``write``
        for an output too big to hold in memory (a multipart upload on S3 past
        ``MULTIPART_CHUNK_BYTES`` * 2; in a folder, a temporary copy renamed over the final name)."""
        key = check_key(key)
        meta = check_metadata(metadata)
        self._call("write", key, lambda: self._upload(key, Path(path), meta), per_object=True)

    def delete_tree(self, prefix: str) -> None:
        """Remove every object below ``prefix``, which must be one of ParaBlur's hidden prefixes
        (a clip's segments: ``clips.PARTS``), below a root this command holds."""
        prefix = check_key(prefix)
        if not prefix.startswith(".parablur-"):
            raise ValueError(f"delete_tree removes only ParaBlur's hidden prefixes, not {prefix!r}")
        self._call("delete", prefix, lambda: self._delete_tree(prefix), per_object=False)

    @abstractmethod
    def _delete_tree(self, prefix: str) -> None: ...

    def info(self, key: str) -> ObjectInfo | None:
        """The object's size, tag and metadata, or None if there is no object at ``key``.

        One HEAD on S3 (which cannot tell a missing bucket from a missing key: both give
        None; ``probe_read``/``probe_write`` name the bucket). Where the store has no tag
        of its own (folders, memory://) the tag is the SHA-256 of the content, read for it.
        """
        key = check_key(key)
        return self._call("inspect", key, lambda: self._info(key), per_object=True)

    def lock(self, command: str, *,
             echo: Callable[[str], None] | None = None) -> AbstractContextManager[LockInfo]:
        """Hold the lock of this output location while the ``with`` block runs (``storage.lock.hold_lock``).

        ``command`` names the holder in other runs' messages ("parablur run"). Raises
        ``StorageError`` (exit 2) while another live process holds it; a lock left by a
        process that is gone on this host is taken over, and ``echo`` gets a line saying so.
        """
        from .lock import hold_lock

        return hold_lock(self, command, echo=echo)

    @abstractmethod
    def claim_output(self, command: str | None = None) -> bool:
        """Make the root an output location of ParaBlur's (new or empty, then marked with
        ``command``), or refuse with ``DatasetError`` if it holds anything ParaBlur did not make
        or another command's outputs; True when this call made the location."""

    @abstractmethod
    def check_output(self, command: str | None = None) -> object:
        """Refuse, writing nothing, a root that ``claim_output`` would refuse."""

    def tidy(self) -> None:  # noqa: B027 - a hook most stores need not fill
        """Remove what killed writers left below a root this command holds (an object store's
        PUT leaves nothing)."""

    @abstractmethod
    def unclaim(self) -> None:
        """Undo this object's ``claim_output`` that marked the location, for a command refused
        before it wrote any output: its marker goes, and what it created once empty (called
        again after the lock is released, it removes what the lock kept)."""

    def clear_outputs(self) -> None:
        """Delete every object below a root this command claimed, but its marker and lock
        (a benchmark leg: its outputs are redone every round and verified afresh)."""
        for page in self._pages(1000):
            for item in page:
                if item.key.rsplit("/", 1)[-1] not in (OUTPUT_MARKER, LOCK_NAME):
                    self._call("delete", item.key, lambda k=item.key: self._delete(k), per_object=False)

    def probe_read(self) -> str:
        """Prove the input can be listed and read: the first image's key (its first 64 KB are read).

        Raises ``StorageError`` for a store that cannot be used and ``DatasetError`` for
        one that holds no image, before any cluster is started.
        """
        first = next(self.list_images(), None)
        if first is None:
            raise DatasetError(f"no images found in {self.location()}")
        self._guard(lambda: self.read(first, length=PROBE_READ_BYTES))
        return first

    def probe_write(self) -> None:
        """Prove the output can be written: put a hidden probe object, read it back, remove it."""
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        payload = f"ParaBlur write probe {key}\n".encode()
        self._guard(lambda: self.write(key, payload))
        try:
            back = self._guard(lambda: self.read(key))
            if back != payload:
                raise StorageError(f"cannot use {self.location()}: a probe object read back "
                                   "different bytes than were written")
        finally:
            self._call("remove the probe object", key, lambda: self._delete(key), per_object=False)

    # -- errors --

    @staticmethod
    def _guard(fn: Callable[[], T]) -> T:
        """``fn()`` where any failure means the store cannot be used: ObjectError becomes StorageError."""
        try:
            return fn()
        except ObjectError as exc:
            raise StorageError(str(exc)) from None

    def _call(self, what: str, key: str, fn: Callable[[], T], *, per_object: bool) -> T:
        """``fn()`` with transient errors retried, and any error turned into a one-line ParaBlurError."""
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            return fn()

        try:
            try:  # the first attempt bare: tenacity's bookkeeping costs ~20 us a call
                return attempt()
            except ParaBlurError:
                raise
            except Exception as exc:
                if classify(exc) is not Kind.TRANSIENT or self.retry.attempts == 1:
                    raise
            time.sleep(self.retry.wait_s(1))
            return self.retry.retrying(spent=1)(attempt)
        except ParaBlurError:
            raise
        except Exception as exc:
            raise self._error(what, key, exc, attempts, per_object) from None

    def _error(self, what: str, key: str, exc: Exception, attempts: int,
               per_object: bool) -> ParaBlurError:
        kind = classify(exc)
        reason = redact(describe(exc), self._secrets())
        where = self.location(key)
        if kind is Kind.CREDENTIALS:
            return StorageError(f"cannot {what} {where}: the credentials were refused ({reason})")
        if kind is Kind.NO_BUCKET:
            return StorageError(f"cannot {what} {where}: the bucket does not exist ({reason})")
        if kind is Kind.DENIED:
            message = f"cannot {what} {where}: access denied ({reason})"
        elif kind is Kind.NOT_FOUND:
            message = f"cannot {what} {where}: not found"
        elif kind is Kind.TRANSIENT:
            message = f"cannot {what} {where}: gave up after {attempts} attempts ({reason})"
        else:
            message = f"cannot {what} {where}: {reason}"
        return ObjectError(message) if per_object else StorageError(message)
