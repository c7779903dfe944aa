"""Building the input dataset in a local folder, in place: download, reuse, or generate every
image, or adopt the user's own.

Sources, in order of precedence:

* a folder ParaBlur did not create is the user's own dataset, used read-only as it is
  (found recursively, whatever count): one that already holds images and has no
  ``manifest.json``, or one whose ``manifest.json`` is not ParaBlur's (another program's,
  unreadable, or of another version). Nothing in it is written, replaced or deleted;
* ``url_list``: one URL per line (blank lines and ``#`` comments ignored), image *i* from
  line *i*; the dataset has ``min(number of URLs, num_images)`` images;
* otherwise ``source_url`` is fetched ``num_images`` times.

In a folder ParaBlur created, every valid image already there is reused whatever source it
came from (only ``force_download`` fetches again); the dataset is the first ``num_images``
of them and the rest are kept, never deleted. Its manifest's metadata (source, image size,
seed, fallback kind) stays as the dataset was made: a fetch that reuses it, asking for
another source or size, records only the images it adds, each with its own source and size
(``manifest.reused_meta``). The manifest describes exactly the valid images on disk at
every moment, so a fetch killed at any point loses no reuse record.

A download that fails for good, or cannot be written, is replaced by a generated image
(``fallback`` kind, deterministic from ``seed`` and the index), so the dataset is always
complete; but a forced re-download that fails keeps the downloaded photo already there.

The ``faces-video`` fallback makes a dataset of clips instead (``clip_NNNN.mp4``, see
``face_clips``): nothing is downloaded, every clip is generated, and its entry carries the
true box of every face in every frame (``ManifestEntry.video``). Reuse is the same as for
images; a dataset holds images or clips, never both (``manifest.check_kind``).
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from urllib.parse import urlsplit

import cv2
from tqdm import tqdm

from ..config import CLIP_FALLBACK, FetchConfig, default_workers
from ..dataset import list_images
from ..errors import DatasetError
from ..files import remove_stale_temps, write_atomic
from .download import DownloadCancelled, Downloader, DownloadFailed
from .face_clips import ClipStopped, generate_face_clip, write_face_clip
from .face_frames import generate_face_frame
from .generate import encode_jpeg, generate_image
from .manifest import (
    ForeignManifest,
    Manifest,
    ManifestEntry,
    check_kind,
    dataset_checksum,
    file_matches,
    load_manifest,
    reused_meta,
    sha256_bytes,
    sha256_file,
)
from .plan import new_meta, plan
from .summary import FetchSummary
from .validation import EXTENSIONS

_GENERATED = "generated:"


class _Counters:
    """Thread-safe tallies shown on the progress bar."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downloaded = self.reused = self.generated = self.retried = self.failed = 0
        self.other_source = 0

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def postfix(self) -> dict:
        with self.lock:
            return {"downloaded": self.downloaded, "retried": self.retried,
                    "generated": self.generated, "failed": self.failed}


def _users_folder(config: FetchConfig, folder: Path, images: list[Path], foreign: str | None,
                  start: float) -> FetchSummary:
    """Use a folder ParaBlur did not create as it is, read-only; refuse what would write."""
    why = foreign or f"it has images and no {folder / 'manifest.json'}"
    if config.force_download:
        raise DatasetError(f"{folder} is not a dataset ParaBlur created ({why}): its images "
                           "are used read-only, so --force-download is refused")
    if not images:
        raise DatasetError(f"{folder} is not a dataset ParaBlur created ({why}) and holds no "
                           "images; ParaBlur does not write into it: choose another --input-dir")
    sums = []
    for path in images:
        try:
            sums.append(sha256_file(path))
        except OSError as exc:
            raise DatasetError(f"cannot read image {path}: {exc.strerror or exc} (every image "
                               "of the dataset must be readable)") from None
    checksum = dataset_checksum(sums)
    return FetchSummary(images=images, downloaded=0, reused=len(images), generated=0,
                        retried=0, failed=0, dataset_checksum=checksum,
                        elapsed_s=time.perf_counter() - start, source=str(folder), local=True,
                        folder=str(folder), foreign_manifest=foreign)


def _still_valid(folder: Path, loaded: tuple[dict, dict[int, ManifestEntry]] | None,
                 pool: ThreadPoolExecutor) -> list[ManifestEntry]:
    """The recorded images whose files are still on disk as recorded (checked in parallel)."""
    if loaded is None:
        return []
    meta, entries = loaded
    items = list(entries.values())
    ok = list(pool.map(lambda e: file_matches(folder / e.file, e), items))
    seed = meta.get("seed")
    if type(seed) is not int:
        seed = None
    # Older manifests kept the seed of generated images only in their metadata.
    return [replace(e, seed=seed) if e.seed is None and e.source.startswith(_GENERATED) else e
            for e, good in zip(items, ok, strict=True) if good]


def clip_rate(config: FetchConfig) -> tuple[int | float, int]:
    """The frame rate a clip's truth records (an int when whole) and its frame count."""
    rate = Fraction(config.clip_fps).limit_denominator(1001)  # as generate_face_clip takes it
    return (int(rate) if rate.denominator == 1 else float(rate)), round(config.clip_seconds * rate)


def pixel_box(box, width: int, height: int) -> list[int]:
    """[x, y, w, h] in whole pixels: the smallest pixel rectangle holding ``box``, inside the frame."""
    x, y, w, h = box
    x0, y0 = max(0, math.floor(x + 1e-6)), max(0, math.floor(y + 1e-6))
    x1, y1 = min(width, math.ceil(x + w - 1e-6)), min(height, math.ceil(y + h - 1e-6))
    return [x0, y0, x1 - x0, y1 - y0]


class _Build:
    """The images of one fetch into a folder ParaBlur manages, shared by the download threads."""

    def __init__(self, config: FetchConfig, folder: Path, manifest: Manifest,
                 downloader: Downloader, counters: _Counters, owned: Iterable[str] = ()) -> None:
        self.config = config
        # The files the manifest named when the fetch began, valid or not: ParaBlur's to replace.
        self.owned = frozenset(owned)
        self.folder = folder
        self.manifest = manifest
        self.downloader = downloader
        self.counters = counters
        self.failures: list[dict] = []
        self._lock = threading.Lock()
        self.gen_source = f"{_GENERATED}{config.fallback}"
        self.clips = config.fallback == CLIP_FALLBACK

    def one(self, index: int, url: str | None) -> None:
        """Reuse, download or generate image ``index`` (reuse or generate clip ``index``)."""
        if self.downloader.closed:
            return
        old = self.manifest.get(index)
        if old is not None and not self.config.force_download:
            self._reuse(old, url)
            return
        if self.clips:
            self._generate_clip(index)
            return
        assert url is not None
        try:
            attempts, error = self._download(index, url)
        except DownloadCancelled:
            return
        if error is None:
            return
        if old is not None and not old.source.startswith(_GENERATED) \
                and self.manifest.get(index) == old:
            self._reuse(old, url)  # a photo is replaced only by a successful download
            self._fail(index, error, "kept")
            return
        if not self.downloader.closed:
            self._generate(index, url, attempts, error)

    def _reuse(self, entry: ManifestEntry, url: str) -> None:
        self.counters.add("reused")
        cfg = self.config
        made_otherwise = entry.source.startswith(_GENERATED) and (
            entry.source != self.gen_source or entry.seed != cfg.seed
            or (entry.width, entry.height) != (cfg.width, cfg.height))
        if entry.video is not None:
            fps, frames = clip_rate(cfg)
            made_otherwise |= (entry.video.get("fps"), entry.video.get("frames")) != (fps, frames)
        if entry.url != url or made_otherwise:
            self.counters.add("other_source")

    def _download(self, index: int, url: str) -> tuple[int, str | None]:
        """Download and store image ``index``: (attempts, None), or the reason it failed."""
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            return 0, f"unsupported URL scheme in {url!r}"
        try:
            got = self.downloader.fetch(url)
        except DownloadFailed as exc:
            return exc.attempts, exc.reason
        data = got.data
        if got.fmt == "gif":  # stored as PNG: GIF is not a dataset suffix
            data = cv2.imencode(".png", got.image)[1].tobytes()
        name = f"img_{index:04d}{EXTENSIONS[got.fmt]}"
        entry = ManifestEntry(index, name, url, got.final_url, sha256_bytes(data), len(data),
                              got.image.shape[1], got.image.shape[0], got.attempts, None)
        try:
            self._store(entry, data)
        except OSError as exc:
            return got.attempts, f"cannot write {name}: {exc.strerror or exc}"
        self.counters.add("downloaded")
        return got.attempts, None

    def _generate(self, index: int, url: str, attempts: int, error: str) -> None:
        cfg = self.config
        try:
            faces = None
            if cfg.fallback == "faces":
                frame = generate_face_frame(index, cfg.width, cfg.height, cfg.seed)
                faces = [[int(v) for v in box] for box in frame.faces]
                data = encode_jpeg(frame.image, frame.jpeg_quality)
            else:
                data = encode_jpeg(generate_image(index, cfg.width, cfg.height, cfg.seed, cfg.fallback))
            self._store(ManifestEntry(index, f"img_{index:04d}.jpg", url, self.gen_source,
                                      sha256_bytes(data), len(data), cfg.width, cfg.height,
                                      attempts, error, cfg.seed, faces), data)
            self.counters.add("generated")
            outcome = "generated"
        except DatasetError:
            raise  # the manifest cannot be written: the fetch cannot keep its records
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the rest
            self.counters.add("failed")
            outcome, error = "failed", f"{error}; then {type(exc).__name__}: {exc}"
        self._fail(index, error, outcome)

    def _generate_clip(self, index: int) -> None:
        """Generate clip ``index`` and write it in place, keeping the manifest true throughout (as
        ``_store``): the old entry goes before its file is replaced, the new one once it is whole."""
        cfg = self.config
        name = f"clip_{index:04d}.mp4"
        try:
            clip = generate_face_clip(index, cfg.width, cfg.height, seconds=cfg.clip_seconds,
                                      fps=cfg.clip_fps, seed=cfg.seed)
            old = self.manifest.get(index)
            self._refuse_foreign(name, old)
            self.manifest.drop(index)
            try:  # written to a temporary file, renamed when whole; stopped by Ctrl-C
                truth = write_face_clip(clip, self.folder / name,
                                        stop=lambda: self.downloader.closed)
            except BaseException:
                if old is not None and file_matches(self.folder / old.file, old):
                    self.manifest.record(old)
                raise
            video = {"fps": truth["fps"], "frames": truth["frames"], "seconds": round(clip.seconds, 6),
                     "faces": [[pixel_box(b, cfg.width, cfg.height) for b in frame]
                               for frame in truth["faces"]]}
            path = self.folder / name
            self.manifest.record(ManifestEntry(index, name, None, self.gen_source, sha256_file(path),
                                               path.stat().st_size, cfg.width, cfg.height, 0, None,
                                               cfg.seed, None, video))
            if old is not None and old.file != name:
                (self.folder / old.file).unlink(missing_ok=True)
            self.counters.add("generated")
        except DatasetError:
            raise  # the manifest cannot be written: the fetch cannot keep its records
        except ClipStopped:
            return  # the fetch was closed (Ctrl-C): no clip, no failure
        except Exception as exc:  # noqa: BLE001 - one clip's failure must not stop the rest
            self.counters.add("failed")
            self._fail(index, f"{type(exc).__name__}: {exc}", "failed")

    def _store(self, entry: ManifestEntry, data: bytes) -> None:
        """Put ``data`` in place as image ``entry.index``, keeping the manifest true throughout.

        The old entry is dropped before its file is replaced, the new one recorded once it
        is written; the old file, if named otherwise (another format), goes after that. A
        write that fails leaves the old file as it was, and its entry is restored.
        """
        old = self.manifest.get(entry.index)
        self._refuse_foreign(entry.file, old)
        self.manifest.drop(entry.index)
        try:
            write_atomic(self.folder / entry.file, data)
        except OSError:
            if old is not None and file_matches(self.folder / old.file, old):
                self.manifest.record(old)
            raise
        self.manifest.record(entry)
        if old is not None and old.file != entry.file:
            (self.folder / old.file).unlink(missing_ok=True)

    def _refuse_foreign(self, name: str, old: ManifestEntry | None) -> None:
        """Refuse to write ``name`` over a file the manifest does not name (a user's file put in
        the dataset folder under a name ParaBlur would use): it is left as it is."""
        path = self.folder / name
        if (path.exists() or path.is_symlink()) and name not in self.owned \
                and (old is None or old.file != name):
            raise FileExistsError(f"{name} is in the way: a file ParaBlur did not make (not in its "
                                  "manifest), left as it is; move it to make this one")

    def _fail(self, index: int, reason: str, outcome: str) -> None:
        with self._lock:
            self.failures.append({"index": index, "reason": reason, "outcome": outcome})


def build_folder(config: FetchConfig, folder: Path, *, progress: bool = True) -> FetchSummary:
    """Make ``folder`` a complete dataset as ``config`` asks, in place, and describe what was done.

    Only a folder ParaBlur created is written to; any other is used read-only as it is.
    """
    start = time.perf_counter()
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"input path is not a folder: {folder}")
    loaded = None
    if folder.is_dir():
        try:
            loaded = load_manifest(folder)
        except ForeignManifest as exc:
            return _users_folder(config, folder, list_images(folder), str(exc), start)
        if loaded is None:
            own = list_images(folder)
            if own:
                return _users_folder(config, folder, own, None, start)
            if any(folder.iterdir()):
                raise DatasetError(f"{folder} holds files ParaBlur did not make and no images: "
                                   "a dataset is built only in a new or empty folder")
    if loaded is not None:
        check_kind(config.fallback, loaded[1].values(), str(folder))

    urls, source = plan(config)
    folder.mkdir(parents=True, exist_ok=True)
    if loaded is not None:
        remove_stale_temps(folder)
    wanted = new_meta(config, urls, source)
    counters = _Counters()
    downloader = Downloader(config, on_retry=lambda: counters.add("retried"))
    clips = config.fallback == CLIP_FALLBACK
    bar = tqdm(total=len(urls), desc="fetch", unit="clip" if clips else "img", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    # Clips are made on the CPU (drawn and encoded): no more at once than there are cores.
    workers = min(config.download_workers, default_workers()) if clips else config.download_workers
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="parablur-fetch")
    try:
        # Saved before any download: marks a new folder as ParaBlur's, and keeps every
        # valid image's record through whatever happens next.
        valid = _still_valid(folder, loaded, pool)
        # A dataset reused keeps its metadata; one made anew (nothing left to reuse, or
        # every image fetched again) records this fetch's.
        reused = loaded is not None and bool(valid) and not config.force_download
        manifest = Manifest(folder, reused_meta(loaded[0], wanted) if reused else wanted, valid)
        manifest.save()
        build = _Build(config, folder, manifest, downloader, counters,
                       owned=(e.file for e in loaded[1].values()) if loaded is not None else ())
        futures = [pool.submit(build.one, i, url) for i, url in enumerate(urls)]
        for future in as_completed(futures):
            future.result()
            bar.update(1)
            bar.set_postfix(counters.postfix(), refresh=False)
    finally:
        downloader.close()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    entries = manifest.entries()
    used = [e for e in entries if e.index < len(urls)]
    return FetchSummary(
        images=[folder / e.file for e in used],
        downloaded=counters.downloaded, reused=counters.reused, generated=counters.generated,
        retried=counters.retried, failed=counters.failed,
        failures=sorted(build.failures, key=lambda f: f["index"]),
        dataset_checksum=dataset_checksum([e.sha256 for e in used]),
        elapsed_s=time.perf_counter() - start, source=source, local=False,
        unreachable_hosts=downloader.breaker.open_hosts, folder=str(folder),
        kept=len(entries) - len(used), other_source=counters.other_source,
        media="clips" if clips else "images")
