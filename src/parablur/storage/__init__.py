"""Where a run's bytes come from and go: a local folder or an object store (S3, GCS, Azure, ...), by key.

How the pipeline uses it
------------------------
On the client: ``store = open_store(args.input_dir, parse_storage_options(args.storage_options))``
for the input and the output (plain paths give a ``LocalStore``, URLs an ``FsspecStore``);
``inp.probe_read()``, ``out.claim_output()`` and ``out.probe_write()`` before any
cluster starts, so that a wrong setup is one line and exit 2 (``StorageError``,
``DatasetError``); the claim comes first, so that a probe object left by a run killed
during the probe lies in a prefix already marked as ParaBlur's. Then ``inp.list_images()``
is a generator that lists one page at a time (S3: ``ListObjectsV2``, <= 1,000 keys a
request): the bounded window is fed as keys arrive, the first tasks start before the
listing ends, and the client never holds the whole listing.

Tasks carry keys, not bytes: ``(input store, output store, [keys])``. A store pickles
to its URL, storage options and retry policy only (a few hundred bytes); each worker
process opens the filesystem itself on first use and keeps it (one per process and
configuration). A worker calls ``inp.read(key)``, blurs, and ``out.write(key, data,
metadata=...)``, then returns only its results. ``write`` is one PUT to the final key on
an object store (atomic: no temporary name, no rename) and ``files.write_atomic`` in a
folder, so an interrupted run leaves no partial object under a final key.

Resume records travel with each output as object metadata: ``write(key, data,
metadata={"parablur-input": ..., "parablur-params": ..., "parablur-run": ...})`` and ``info(key)`` gives
them back with the size and ETag. On S3 the metadata is part of the same PutObject
(``x-amz-meta-*``; SeaweedFS keeps and returns it), so record and body can never
disagree, the check is one HEAD on the worker that owns the image, and the client holds
no record at all, whatever the number of images (a sidecar record per output folder
would have to be read whole and rewritten by the client: megabytes per million images).
Stores without native metadata (folders, memory://, other fsspec backends here) keep it
in a hidden sidecar ``.<name>.parablur-meta.json`` written after the body and holding
the body's size and tag, so a sidecar that no longer matches its body reads as absent.
(s3fs's ``setxattr`` was not used: it is a second request, a CopyObject.)

Errors: every call retries transient failures (5xx, SlowDown, throttling, resets,
timeouts) with capped exponential backoff (``RetryPolicy``, tenacity; botocore's and
s3fs's own retries are turned off so that this is the one bound), then raises
``StorageError`` (exit 2) when the store cannot be used at all - unknown scheme, missing
extra (``install parablur[s3]``), missing bucket, refused credentials, denied listing
or probe - or ``ObjectError`` (an ``ImageError`` and ``OSError``, so the workload records
it for that image and goes on) for one object: not found, access denied, corrupt, or
still failing after the retries. Messages, reprs and ``redacted_options`` mask every
credential: storage options whose names hold key/secret/token/password/..., URL
passwords, and the usual AWS/Azure environment secrets.

One writer per output: ``with out.lock("parablur run", echo=print):`` (``storage.lock``,
``docs/locks.md``) holds the hidden object ``.parablur-lock`` at the output's root while a run
writes there, taken right after the claim (``claim_output(command)``: a new or empty
location marked, exclusively, with the command that made it; a user's or another command's
refused); a second run is refused with one line (``StorageError``), and
the lock of a process that is gone on this host is taken over. It is created atomically in
folders and on S3 stores that honour conditional PUTs (``If-None-Match: *``; SeaweedFS 4.48
does), and best effort (look, write, read back) on other stores.

Listing API: fsspec has no public paged listing (``find``/``ls``/``walk`` return whole
lists; s3fs's ``_iterdir`` is private and async). S3 is listed with s3fs's public
``call_s3("list_objects_v2", ..., MaxKeys, ContinuationToken)``, one request per page;
other backends depth first over ``ls``, one folder at a time, in the same key order.

Measured here (2 cores shared with other engineers' test runs, load average 10-16;
SeaweedFS 4.48 ``weed mini`` on 127.0.0.1, s3fs 2026.9; 2,500 objects of 2 KB, median of
3 rounds, two runs; ``python benchmarks/storage_rates.py``):

- SeaweedFS start: S3 port open after 0.8 s; first listing answered 2.5-2.8 s after launch
  (the s3fs import of the test process included); SIGTERM stop 1.1-1.3 s with
  ``-volume.preStopSeconds=0`` (3.5 s with the default).
- PUT (``Store.write``): 160-220 objects/s from one thread, 290-315/s from 8 threads.
- GET (``Store.read``): 170-210 objects/s from one thread, 325-355/s from 8 threads.
- Listing (``Store.list_images``, pages of 1,000): 1,900-3,800 keys/s; the first key
  after 0.32-0.56 s, i.e. after one page, not after the listing.
- A pickled ``FsspecStore`` is 319 bytes and unpickles in 54 us (``pickle.loads`` in a
  ``timeit`` loop), the filesystem being made once per process.
"""

from __future__ import annotations

from ._open import is_url, open_store
from ._retry import RetryPolicy
from .base import ObjectInfo, Store, is_image_key
from .fsspec_store import FsspecStore
from .local import LocalStore
from .lock import LOCK_NAME, LockInfo, hold_lock
from .options import parse_storage_options, redact, redacted_options, secrets_in

__all__ = [
    "LOCK_NAME",
    "FsspecStore",
    "LocalStore",
    "LockInfo",
    "ObjectInfo",
    "RetryPolicy",
    "Store",
    "hold_lock",
    "is_image_key",
    "is_url",
    "open_store",
    "parse_storage_options",
    "redact",
    "redacted_options",
    "secrets_in",
]
