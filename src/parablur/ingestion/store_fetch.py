"""Building the input dataset in an object store: fetch into a staging folder, upload, manifest last.

The store's prefix gets the same layout as a local dataset: ``img_NNNN.<suffix>`` and
``manifest.json`` beside them. The manifest is uploaded after every image it lists, so it
never names a missing object, and its metadata keeps each image's ETag as uploaded: a
second fetch whose images are all there and still carry those ETags reuses the
dataset with one HEAD per image and transfers nothing. Otherwise the valid images
already in the store are downloaded into the staging folder (so that the local fetch
reuses them), the rest are downloaded or generated, and only new or changed images are
uploaded. A prefix that holds images without a ParaBlur manifest is the user's: used
read-only, as a folder would be (clips count as images here). faces-video clips
(``clip_NNNN.mp4``) go the same way as images.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from ..config import CLIP_FALLBACK, FetchConfig
from ..errors import DatasetError
from ..storage import Store
from .folder_fetch import build_folder
from .manifest import (
    MANIFEST_NAME,
    ForeignManifest,
    check_kind,
    dataset_checksum,
    load_manifest,
    sha256_bytes,
)
from .plan import fetch_meta
from .summary import FetchSummary

ETAGS = "object_etags"  # manifest meta: file -> ETag of the uploaded object


def fetch_to_store(config: FetchConfig, store: Store, *, progress: bool = True) -> FetchSummary:
    """Make ``store`` a complete dataset (ParaBlur's, or the user's as it is), built in a
    staging folder; its images are named by key."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parablur-fetch-") as tmp:
        staging = Path(tmp) / "dataset"
        staging.mkdir()
        loaded = None
        if store.info(MANIFEST_NAME) is not None:
            (staging / MANIFEST_NAME).write_bytes(store.read(MANIFEST_NAME))
            try:
                loaded = load_manifest(staging)
            except ForeignManifest as exc:
                return _users_prefix(config, store, str(exc).replace(str(staging), store.url), start)
        elif next(store.list_images(), None) is not None:
            return _users_prefix(config, store, None, start)
        if loaded is not None:
            check_kind(config.fallback, loaded[1].values(), store.url)
        store.probe_write()
        wanted = fetch_meta(config)
        if loaded is not None and not config.force_download:
            reused = _reuse_as_is(config, store, loaded, wanted, start)
            if reused is not None:
                return reused
        # What the store holds now (file -> sha256, ETag), staged so the local fetch reuses it.
        held: dict[str, tuple[str, str | None]] = {}
        for entry in (loaded[1].values() if loaded is not None else ()):
            info = store.info(entry.file)
            if info is not None:
                data = store.read(entry.file)
                (staging / entry.file).write_bytes(data)
                held[entry.file] = (sha256_bytes(data), info.etag)
        # The store's other objects stand in the staging folder as empty files, so that the
        # build refuses to make an image or clip under a name a user's object has (it would be
        # uploaded over it); they are never uploaded.
        for key in store.list_images():
            if "/" not in key and key not in held and not (staging / key).exists():
                (staging / key).touch()
        summary = build_folder(config, staging, progress=progress)
        _, entries = load_manifest(staging) or ({}, {})
        etags: dict[str, str | None] = {}
        for entry in entries.values():
            have = held.get(entry.file)
            if have is not None and have[0] == entry.sha256:
                etags[entry.file] = have[1]
                continue
            store.write(entry.file, (staging / entry.file).read_bytes())
            info = store.info(entry.file)
            etags[entry.file] = info.etag if info is not None else None
        doc = json.loads((staging / MANIFEST_NAME).read_text(encoding="utf-8"))
        doc["meta"][ETAGS] = {f: etags.get(f) for f in sorted(e.file for e in entries.values())}
        store.write(MANIFEST_NAME, json.dumps(doc, indent=1).encode())
    return replace(summary, images=[Path(p.name) for p in summary.images], folder=store.url,
                   elapsed_s=time.perf_counter() - start)


def _reuse_as_is(config: FetchConfig, store: Store, loaded, wanted: dict,
                 start: float) -> FetchSummary | None:
    """The dataset in the store as it is, if it holds the images asked for and they are untouched.

    As in a folder, a valid image is reused whatever source it came from.
    """
    meta, entries = loaded
    etags = meta.get(ETAGS) or {}
    used = [entries.get(i) for i in range(wanted["num_images"])]
    if any(e is None for e in used):
        return None
    for entry in used:
        info = store.info(entry.file)
        if info is None or info.size != entry.bytes or not etags.get(entry.file) \
                or info.etag != etags[entry.file]:
            return None
    return FetchSummary(images=[Path(e.file) for e in used], downloaded=0, reused=len(used),
                        generated=0, retried=0, failed=0,
                        dataset_checksum=dataset_checksum([e.sha256 for e in used]),
                        elapsed_s=time.perf_counter() - start, source=wanted["source"],
                        local=False, folder=store.url, kept=len(entries) - len(used),
                        media="clips" if config.fallback == CLIP_FALLBACK else "images")


def _users_prefix(config: FetchConfig, store: Store, foreign: str | None,
                  start: float) -> FetchSummary:
    """A prefix ParaBlur did not fill is used as it is, read-only (its keys, no checksum read)."""
    why = foreign or f"it has images and no {store.location(MANIFEST_NAME)}"
    if config.force_download:
        raise DatasetError(f"{store.url} is not a dataset ParaBlur created ({why}): its images "
                           "are used read-only, so --force-download is refused")
    keys = list(store.list_images())
    if not keys:
        raise DatasetError(f"{store.url} is not a dataset ParaBlur created ({why}) and holds no "
                           "images; ParaBlur does not write into it: choose another --input-dir")
    return FetchSummary(images=[Path(k) for k in keys], downloaded=0, reused=len(keys), generated=0,
                        retried=0, failed=0, elapsed_s=time.perf_counter() - start,
                        source=store.url, local=True, folder=store.url, foreign_manifest=foreign)
