"""An fsspec URL as a store: S3 (listed page by page, metadata on the PUT), or any other fsspec backend."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, DatasetError, StorageError
from ..files import LOCK_NAME, OUTPUT_MARKER, check_owner, marker_command, marker_text
from ._retry import RetryPolicy, describe, service_code
from .base import (
    MULTIPART_CHUNK_BYTES,
    OPEN_BLOCK_BYTES,
    PROBE_PREFIX,
    SIDECAR_SUFFIX,
    ObjectInfo,
    Store,
    check_key,
    sidecar_bytes,
    sidecar_key,
    sidecar_metadata,
)
from .options import redact, redacted_options, secrets_in

# The extra that brings each cloud scheme's fsspec backend.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
          "abfss": "azure", "adl": "azure"}
_S3 = ("s3", "s3a")
# Tags other backends put in their info dicts, in order of preference.
_TAG_FIELDS = ("ETag", "etag", "md5Hash", "content_md5", "crc32c")
# Schemes whose objects live on the client (its disk, its memory): remote workers cannot reach them.
_CLIENT_ONLY = frozenset({"file", "local", "memory"})
# S3 answers to a conditional request: the condition did not hold (412), or another
# conditional write of the key is in flight (409); or the store does not know the header.
_CONDITION_FAILED = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_CONDITION_UNSUPPORTED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest"})

# One filesystem per process and configuration: a store unpickled on a worker for each task
# reuses the connection pool of the ones before it. fsspec's own instance cache is skipped
# (it keys on the thread too, and would make one client per worker thread).
_FILESYSTEMS: dict[tuple, Any] = {}
_FILESYSTEMS_LOCK = threading.Lock()


def filesystem_class(url: str) -> type:
    """The fsspec class for ``url``'s scheme; StorageError for an unknown scheme or a missing extra."""
    import fsspec

    protocol = url.split("://", 1)[0].lower()
    try:
        return fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise StorageError(f"unknown storage scheme '{protocol}://' in {redact(url)} "
                           "(use a folder, s3://, gs://, az://, file:// or memory://)") from None
    except ImportError as exc:
        extra = EXTRAS.get(protocol)
        hint = (f"install parablur[{extra}]" if extra
                else "install the fsspec backend for it")
        raise StorageError(f"{protocol}:// needs a package that is not installed: {hint} "
                           f"({describe(exc)})") from None


class FsspecStore(Store):
    """The objects below an fsspec URL; the filesystem is opened lazily, once per process.

    Only the URL, the storage options and the retry policy are pickled, so the store
    is cheap to send to workers with every task.
    """

    #: S3 only: whether the store honours conditional PUTs (``If-None-Match: *`` and ``If-Match``).
    #: None: probed on the first exclusive write (``_atomic_exclusive``); set it to skip the probe.
    conditional_writes: bool | None = None

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self._setup(url, copy.deepcopy(dict(storage_options or {})), retry or RetryPolicy())

    def _setup(self, url: str, options: dict[str, Any], retry: RetryPolicy) -> None:
        self._raw_url = url
        self.options = options
        self.retry = retry
        self.protocol = url.split("://", 1)[0].lower()
        self._cls = filesystem_class(url)
        if self.protocol in EXTRAS and "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise ConfigError(f"credentials in a {self.protocol}:// URL are not supported: pass them "
                              f"in --storage-options or the environment ({self.url})")
        self.root = self._cls._strip_protocol(url).rstrip("/")
        self.is_s3 = self.protocol in _S3 and hasattr(self._cls, "call_s3")
        if self.is_s3:
            self.bucket, _, prefix = self.root.partition("/")
            if not self.bucket:
                raise ConfigError(f"an S3 location needs a bucket: s3://BUCKET/PREFIX, got {self.url}")
            self._prefix = f"{prefix}/" if prefix else ""
        try:
            self._token = json.dumps([self.protocol, self.options], sort_keys=True, default=repr)
        except (TypeError, ValueError):
            raise ConfigError("storage options must be JSON-like values") from None

    def __reduce__(self):
        return (_restore, (self._raw_url, self.options, self.retry))

    def child(self, name: str) -> FsspecStore:
        return FsspecStore(f"{self._raw_url.rstrip('/')}/{check_key(name)}", self.options, self.retry)

    def __repr__(self) -> str:
        return f"FsspecStore({self.url!r}, storage_options={redacted_options(self.options)!r})"

    # Worked out on first use: a store unpickled for each task on a worker seldom needs them.
    @functools.cached_property
    def _secret_set(self) -> frozenset[str]:
        return secrets_in(self.options, [self._raw_url])

    @functools.cached_property
    def url(self) -> str:  # type: ignore[override]
        return redact(self._raw_url, self._secret_set)

    def _secrets(self) -> frozenset[str]:
        return self._secret_set

    @property
    def fs(self) -> Any:
        """This process's filesystem for the store's scheme and options, made on first use."""
        cache_key = (os.getpid(), self._token)
        fs = _FILESYSTEMS.get(cache_key)
        if fs is not None:
            return fs
        with _FILESYSTEMS_LOCK:
            fs = _FILESYSTEMS.get(cache_key)
            if fs is None:
                fs = self._open_filesystem()
                _FILESYSTEMS[cache_key] = fs
        return fs

    def _open_filesystem(self) -> Any:
        kwargs = {**self._cls._get_kwargs_from_urls(self._raw_url), **copy.deepcopy(self.options)}
        kwargs["skip_instance_cache"] = True
        if self.is_s3:
            # The store's RetryPolicy is the one retry layer: botocore's own retries are off
            # unless the options set them, and connections fail within seconds, not minutes.
            config = kwargs.setdefault("config_kwargs", {})
            config.setdefault("retries", {"total_max_attempts": 1})
            config.setdefault("connect_timeout", 10)
            config.setdefault("read_timeout", 60)
        try:
            fs = self._cls(**kwargs)
        except Exception as exc:
            raise StorageError(f"cannot open {self.url}: {redact(describe(exc), self._secret_set)}"
                               ) from None
        if self.is_s3:
            fs.retries = 1  # s3fs's own retry loop, likewise
        return fs

    def _full(self, key: str) -> str:
        return f"{self.root}/{key}" if self.root else key

    # -- listing --

    def _pages(self, page_size: int) -> Iterator[list[ObjectInfo]]:
        if self.is_s3:
            yield from self._s3_pages(page_size)
        else:
            yield from self._walk_pages(page_size)

    def _s3_pages(self, page_size: int) -> Iterator[list[ObjectInfo]]:
        # ListObjectsV2 one page at a time (at most 1,000 keys each, in key order), through
        # s3fs's call_s3 so that its client, credentials and endpoint are used; s3fs's
        # find()/ls() would gather the whole listing first.
        request = {"Bucket": self.bucket, "Prefix": self._prefix, "MaxKeys": min(page_size, 1000)}
        skip = len(self._prefix)
        while True:
            out = self._call("list", "", lambda: self.fs.call_s3("list_objects_v2", **request),
                             per_object=False)
            page = []
            for item in out.get("Contents", []):
                key = item["Key"][skip:]
                if key and not key.endswith("/"):  # '/'-ended keys are folder markers
                    page.append(ObjectInfo(key, int(item.get("Size", 0)),
                                           _strip_tag(item.get("ETag"))))
            yield page
            if not out.get("IsTruncated"):
                return
            request["ContinuationToken"] = out["NextContinuationToken"]

    def _walk_pages(self, page_size: int) -> Iterator[list[ObjectInfo]]:
        # Other backends: depth first over ls(), one folder's listing at a time, each
        # folder's entries sorted with '/' after a folder's name (key order, as on S3).
        stack = [iter(self._children(self.root))]
        page: list[ObjectInfo] = []
        while stack:
            entry = next(stack[-1], None)
            if entry is None:
                stack.pop()
                continue
            key, info = entry
            if info.get("type") == "directory":
                stack.append(iter(self._children(info["name"])))
                continue
            page.append(ObjectInfo(key, int(info.get("size") or 0), _tag_of(info)))
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page

    def _children(self, path: str) -> list[tuple[str, dict]]:
        skip = len(self.root) + 1 if self.root else 0
        fs = self.fs

        def listing() -> list[dict]:
            try:
                found = fs.ls(path, detail=True)
            except FileNotFoundError:  # object stores have no folders: an absent prefix is empty
                return []
            fs.invalidate_cache(path)  # hold one folder at a time, not a growing cache
            return found

        rel_prefix = path[skip:] if path.startswith(f"{self.root}/") else ""
        entries = []
        for info in self._call("list", rel_prefix, listing, per_object=False):
            name = info["name"].rstrip("/")
            key = name[skip:]
            base = key.rsplit("/", 1)[-1]
            if not key or base.startswith(".") or name == path.rstrip("/"):
                continue
            entries.append((key, info))
        entries.sort(key=lambda item: item[0] + "/" if item[1].get("type") == "directory"
                     else item[0])
        return entries

    # -- objects --

    def _read(self, key: str, length: int | None) -> bytes:
        if length is None:
            # One GET: s3fs would first HEAD the object to choose a parallel download for
            # large files (max_concurrency > 1), doubling the requests for small images.
            return self.fs.cat_file(self._full(key), **({"max_concurrency": 1} if self.is_s3 else {}))
        try:
            return self.fs.cat_file(self._full(key), start=0, end=length)
        except OSError as exc:
            if service_code(exc)[0] == "InvalidRange":  # an empty object
                return b""
            raise

    def _write(self, key: str, data: bytes, metadata: dict[str, str], durable: bool) -> None:
        path = self._full(key)
        if self.is_s3:
            # One PutObject (s3fs switches to a multipart upload, still to the final key, only
            # past 100 MB); the metadata travels in the same request, so it is never out of step.
            self.fs.pipe_file(path, data, **({"Metadata": metadata} if metadata else {}))
            return
        self.fs.pipe_file(path, data)
        if metadata:
            body = self._body_info(key, path, data)
            self.fs.pipe_file(self._full(sidecar_key(key)), sidecar_bytes(body.size, body.etag, metadata))

    def _info(self, key: str) -> ObjectInfo | None:
        path = self._full(key)
        if self.is_s3:
            try:
                head = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self._prefix + key)
            except FileNotFoundError:
                return None
            return ObjectInfo(key, int(head["ContentLength"]), _strip_tag(head.get("ETag")),
                              dict(head.get("Metadata") or {}))
        try:
            body = self._body_info(key, path, None)
        except FileNotFoundError:
            return None
        if body is None:
            return None
        try:
            record = self.fs.cat_file(self._full(sidecar_key(key)))
        except FileNotFoundError:
            return body
        return ObjectInfo(key, body.size, body.etag, sidecar_metadata(record, body))

    def _body_info(self, key: str, path: str, data: bytes | None) -> ObjectInfo | None:
        info = self.fs.info(path)
        if info.get("type") == "directory":
            return None
        tag = _tag_of(info)
        if tag is None:  # no tag of the backend's own: the content's SHA-256
            tag = hashlib.sha256(self.fs.cat_file(path) if data is None else data).hexdigest()
        return ObjectInfo(key, int(info.get("size") or 0), tag)

    def _delete(self, key: str) -> None:
        self.fs.rm_file(self._full(key))
        if not self.is_s3 and not key.endswith(SIDECAR_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self._full(sidecar_key(key)))

    def _delete_tree(self, prefix: str) -> None:
        # Listed, then removed by name: ``rm`` reads a path holding '*', '?' or '[' as a glob
        # pattern ('photos [2024]/...' matched 'photos 2/...' and not itself).
        files = self.fs.find(self._full(prefix))
        if any(c in f for f in files for c in "*?["):
            for f in files:
                self.fs.rm_file(f)
        elif files:
            self.fs.rm(files)

    def _open(self, key: str) -> IO[bytes]:
        return self.fs.open(self._full(key), "rb", block_size=OPEN_BLOCK_BYTES, cache_type="readahead")

    def _upload(self, key: str, path: Path, metadata: dict[str, str]) -> None:
        full = self._full(key)
        if self.is_s3:
            # One PutObject below twice the chunk, else a multipart upload of it (the metadata
            # goes with the PUT, or with the multipart upload's creation).
            self.fs.put_file(str(path), full, chunksize=MULTIPART_CHUNK_BYTES,
                             **({"Metadata": metadata} if metadata else {}))
            return
        self.fs.put_file(str(path), full)
        if metadata:
            body = self._body_info(key, full, None)
            self.fs.pipe_file(self._full(sidecar_key(key)), sidecar_bytes(body.size, body.etag, metadata))

    @property
    def shared(self) -> bool:  # type: ignore[override]
        """A file:// or memory:// location lives on (or in) the client; any other is the network's."""
        return self.protocol not in _CLIENT_ONLY

    def claim_output(self, command: str | None = None) -> bool:
        """Make the root an output location of ParaBlur's: new or empty (then marked), or already ours.

        A prefix that holds objects ParaBlur did not make, or another command's outputs, is
        refused before anything is written, so that outputs never replace a user's objects of
        the same names and the outputs of different commands never mix. Its lock
        (``LOCK_NAME``) and probe objects do not count.
        """
        if self.check_output(command):
            return False
        text = marker_text(command).encode()
        # Created exclusively where the store allows it (a conditional PUT): of two commands
        # claiming a new prefix at once, the second reads the first one's marker.
        if not self._call("write", OUTPUT_MARKER, lambda: self._create_new(OUTPUT_MARKER, text),
                          per_object=False):
            self.check_output(command)
            return False
        self._made_it = True
        return True

    def check_output(self, command: str | None = None) -> bool:
        """Refuse what ``claim_output`` would refuse, writing nothing; True if it is ParaBlur's."""
        if self._guard(lambda: self.info(OUTPUT_MARKER)) is not None:
            owner = marker_command(self._guard(lambda: self.read(OUTPUT_MARKER)))
            check_owner(self.location(), owner, command)
            return True
        first = next((item for page in self._pages(10) for item in page
                      if item.key != LOCK_NAME and not item.key.startswith(PROBE_PREFIX)), None)
        if first is not None:
            raise DatasetError(f"refusing to write into {self.location()}: it holds objects "
                               "ParaBlur did not make (choose a new or empty output location)")
        return False

    def unclaim(self) -> None:
        if getattr(self, "_made_it", False):  # the marker this object wrote; nothing else
            self._call("remove", OUTPUT_MARKER, lambda: self._delete(OUTPUT_MARKER), per_object=False)
            self._made_it = False


    # -- exclusive writes (the lock): conditional PUTs on S3 where honoured, else best effort --

    def _atomic_exclusive(self) -> bool:
        """True on S3 when the store honours conditional PUTs (probed once: ``_probe_conditional``)."""
        if not self.is_s3:
            return False
        if self.conditional_writes is None:
            self.conditional_writes = self._probe_conditional()
        return self.conditional_writes

    def _probe_conditional(self) -> bool:
        """Whether this S3 store honours ``If-None-Match: *`` and ``If-Match`` on PutObject.

        A hidden probe object is put with ``If-None-Match: *``, then put again the same way
        (honoured: 412, the object exists) and with an ``If-Match`` of a tag it cannot have
        (honoured: 412), and removed: 3 PUTs and a DELETE. A store that ignores either
        header (the PUT succeeds) or rejects it (501 NotImplemented, 400) gets False.
        """
        key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
        body = b"ParaBlur conditional-write probe\n"

        def put(**condition: str) -> str:
            return self._call("probe conditional writes with", key,
                              lambda: self._put_if(key, body, **condition), per_object=False)

        first = put(IfNoneMatch="*")
        if first == "unsupported":
            return False
        try:  # "failed" on the first PUT: an earlier attempt of it did put the object
            return (put(IfNoneMatch="*") == "failed"
                    and put(IfMatch=f'"{"0" * 32}"') == "failed")
        finally:
            self._call("remove the probe object", key, lambda: self._delete(key), per_object=False)

    def _put_if(self, key: str, data: bytes, **condition: str) -> str:
        """One conditional PutObject: "put", "failed" (412/409: the condition did not hold) or
        "unsupported" (the store rejects the header); any other error is raised."""
        try:
            self.fs.call_s3("put_object", Bucket=self.bucket, Key=self._prefix + key, Body=data,
                            **condition)
            return "put"
        except Exception as exc:
            code, status = service_code(exc)
            if code in _CONDITION_FAILED or (code is None and status == 412):
                return "failed"
            if code in _CONDITION_UNSUPPORTED or status == 501:
                return "unsupported"
            raise

    def _create_new(self, key: str, data: bytes) -> bool:
        """S3 honouring conditional PUTs: one PutObject with ``If-None-Match: *``; else look, then put."""
        if not self._atomic_exclusive():
            return super()._create_new(key, data)
        return self._conditional(key, data, IfNoneMatch="*")

    def _replace_if(self, key: str, data: bytes, etag: str | None) -> bool:
        """S3 honouring conditional PUTs: one PutObject with ``If-Match: <etag>``; else look, then put."""
        if not self._atomic_exclusive() or etag is None:
            return super()._replace_if(key, data, etag)
        return self._conditional(key, data, IfMatch=f'"{etag}"')

    def _conditional(self, key: str, data: bytes, **condition: str) -> bool:
        outcome = self._put_if(key, data, **condition)
        if outcome == "unsupported":
            raise StorageError(f"cannot write {self.location(key)}: the store rejected a conditional "
                               f"PUT ({', '.join(condition)}) that its probe accepted")
        return outcome == "put"


def _restore(url: str, options: dict[str, Any], retry: RetryPolicy) -> FsspecStore:
    """Unpickle a store: the options were just made by pickle, so they are not copied again."""
    store = FsspecStore.__new__(FsspecStore)
    store._setup(url, options, retry)
    return store


def _strip_tag(tag: Any) -> str | None:
    return str(tag).strip('"') if tag else None


def _tag_of(info: Mapping[str, Any]) -> str | None:
    for name in _TAG_FIELDS:
        if info.get(name):
            return _strip_tag(info[name])
    return None
