"""Building the input dataset: download, reuse, or generate every image, or adopt the user's own.

Sources, in order of precedence:

* a folder that already holds images and has no ``manifest.json`` is the user's own
  dataset: it is used as it is (found recursively, whatever count), nothing is fetched;
* ``url_list``: one URL per line (blank lines and ``#`` comments ignored), image *i* from
  line *i*; the dataset has ``min(number of URLs, num_images)`` images;
* otherwise ``source_url`` is fetched ``num_images`` times.

A download that fails for good is replaced by a generated image (``fallback`` kind,
deterministic from ``seed`` and the index), so the dataset is always complete.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import cv2
from tqdm import tqdm

from ..config import FetchConfig
from ..dataset import list_images
from ..errors import DatasetError
from ..files import remove_stale_temps, write_atomic
from .download import Downloader, DownloadFailed
from .generate import encode_jpeg, generate_image
from .manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestEntry,
    dataset_checksum,
    file_matches,
    load_manifest,
    sha256_bytes,
    sha256_file,
)
from .validation import EXTENSIONS

_OWN_NAME = re.compile(r"^img_\d{4,}\.(jpg|png|webp|bmp)$")


@dataclass(frozen=True)
class FetchSummary:
    """What a fetch produced: counts, per-image problems, and the dataset checksum.

    ``failed`` counts images that could not even be generated or written; downloads that
    were replaced by a generated image appear in ``failures`` with outcome "generated".
    """

    images: list[Path]
    downloaded: int
    reused: int
    generated: int
    retried: int
    failed: int
    failures: list[dict] = field(default_factory=list)
    dataset_checksum: str = ""
    elapsed_s: float = 0.0
    source: str = ""
    local: bool = False
    unreachable_hosts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-ready dict (paths as strings)."""
        doc = asdict(self)
        doc["images"] = [str(p) for p in self.images]
        return doc

    def format_summary(self) -> str:
        """A few human-readable lines."""
        if self.local:
            lines = [f"Using {len(self.images)} images already in {self.source} "
                     "(your own images; nothing downloaded or generated)"]
        else:
            lines = [f"Dataset of {len(self.images)} images from {self.source}: "
                     f"{self.downloaded} downloaded, {self.reused} reused, "
                     f"{self.generated} generated, {self.failed} failed "
                     f"({self.retried} retries) in {self.elapsed_s:.1f} s"]
            if self.unreachable_hosts:
                lines.append("Gave up on unreachable host(s): " + ", ".join(self.unreachable_hosts))
            replaced = [f for f in self.failures if f.get("outcome") == "generated"]
            if replaced:
                first = replaced[0]
                lines.append(f"{len(replaced)} download(s) replaced by generated images "
                             f"(first: image {first['index']}: {first['reason']})")
            for failure in self.failures:
                if failure.get("outcome") == "failed":
                    lines.append(f"image {failure['index']} FAILED: {failure['reason']}")
        lines.append(f"Dataset checksum: {self.dataset_checksum}")
        return "\n".join(lines)


def read_url_list(path: Path) -> list[str]:
    """The URLs of a url-list file: one per line, blank lines and '#' comments ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DatasetError(f"cannot read url list {path}: {exc.strerror or exc}") from exc
    urls = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line)
    if not urls:
        raise DatasetError(f"url list {path} has no URLs")
    return urls


def _plan(config: FetchConfig) -> tuple[list[str], str]:
    if config.url_list is not None:
        urls = read_url_list(config.url_list)[: config.num_images]
        return urls, f"url list {config.url_list}"
    return [config.source_url] * config.num_images, config.source_url


class _Counters:
    """Thread-safe tallies shown on the progress bar."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downloaded = self.reused = self.generated = self.retried = self.failed = 0

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)

    def postfix(self) -> dict:
        with self.lock:
            return {"downloaded": self.downloaded, "retried": self.retried,
                    "generated": self.generated, "failed": self.failed}


def _adopt_local(folder: Path, images: list[Path], start: float, progress: bool) -> FetchSummary:
    checksum = dataset_checksum([sha256_file(p) for p in images])
    summary = FetchSummary(images=images, downloaded=0, reused=len(images), generated=0,
                           retried=0, failed=0, dataset_checksum=checksum,
                           elapsed_s=time.perf_counter() - start, source=str(folder), local=True)
    return summary


def fetch_dataset(config: FetchConfig, *, progress: bool = True) -> FetchSummary:
    """Make ``config.input_dir`` a complete dataset and describe what was done."""
    start = time.perf_counter()
    folder = config.input_dir
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"input path is not a folder: {folder}")
    if folder.is_dir() and not (folder / MANIFEST_NAME).exists():
        own = list_images(folder)
        if own:
            return _adopt_local(folder, own, start, progress)

    urls, source = _plan(config)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder)
    old_meta, old_entries = load_manifest(folder)
    meta = {"source": source, "num_images": len(urls), "width": config.width,
            "height": config.height, "seed": config.seed, "fallback": config.fallback}
    manifest = Manifest(folder, meta)
    manifest.save()  # from now on the folder is ParaBlur-managed, never mistaken for user images

    counters = _Counters()
    downloader = Downloader(config, on_retry=lambda: counters.add("retried"))
    failures: list[dict] = []
    failures_lock = threading.Lock()
    gen_source = f"generated:{config.fallback}"

    def reusable(index: int, url: str) -> ManifestEntry | None:
        entry = old_entries.get(index)
        if config.force_download or entry is None or entry.url != url:
            return None
        if entry.source.startswith("generated:") and (
                entry.source != gen_source or old_meta.get("seed") != config.seed
                or (entry.width, entry.height) != (config.width, config.height)):
            return None
        return entry if file_matches(folder / entry.file, entry) else None

    def one(index: int, url: str) -> None:
        entry = reusable(index, url)
        if entry is not None:
            manifest.record(entry)
            counters.add("reused")
            return
        attempts, last_error = 0, None
        if urlsplit(url).scheme.lower() not in ("http", "https"):
            last_error = f"unsupported URL scheme in {url!r}"
        else:
            try:
                got = downloader.fetch(url)
                data = got.data
                if got.fmt == "gif":  # stored as PNG: GIF is not a dataset suffix
                    data = cv2.imencode(".png", got.image)[1].tobytes()
                name = f"img_{index:04d}{EXTENSIONS[got.fmt]}"
                write_atomic(folder / name, data)
                manifest.record(ManifestEntry(
                    index, name, url, got.final_url, sha256_bytes(data), len(data),
                    got.image.shape[1], got.image.shape[0], got.attempts, None))
                counters.add("downloaded")
                return
            except DownloadFailed as exc:
                attempts, last_error = exc.attempts, exc.reason
        try:
            image = generate_image(index, config.width, config.height, config.seed,
                                   config.fallback)
            data = encode_jpeg(image)
            name = f"img_{index:04d}.jpg"
            write_atomic(folder / name, data)
            manifest.record(ManifestEntry(index, name, url, gen_source, sha256_bytes(data),
                                          len(data), config.width, config.height, attempts,
                                          last_error))
            counters.add("generated")
            outcome = "generated"
        except Exception as exc:  # noqa: BLE001 - one image's failure must not stop the rest
            counters.add("failed")
            outcome, last_error = "failed", f"{last_error}; then {type(exc).__name__}: {exc}"
        with failures_lock:
            failures.append({"index": index, "reason": last_error, "outcome": outcome})

    bar = tqdm(total=len(urls), desc="fetch", unit="img", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    pool = ThreadPoolExecutor(max_workers=config.download_workers,
                              thread_name_prefix="parablur-fetch")
    try:
        futures = [pool.submit(one, i, url) for i, url in enumerate(urls)]
        for future in as_completed(futures):
            future.result()
            bar.update(1)
            bar.set_postfix(counters.postfix(), refresh=False)
    finally:
        downloader.close()
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    entries = manifest.entries()
    _remove_orphans(folder, {e.file for e in entries})
    checksum = manifest.checksum()
    summary = FetchSummary(
        images=[folder / e.file for e in entries],
        downloaded=counters.downloaded, reused=counters.reused, generated=counters.generated,
        retried=counters.retried, failed=counters.failed,
        failures=sorted(failures, key=lambda f: f["index"]), dataset_checksum=checksum,
        elapsed_s=time.perf_counter() - start, source=source, local=False,
        unreachable_hosts=downloader.breaker.open_hosts)
    return summary


def _remove_orphans(folder: Path, keep: set[str]) -> None:
    """Delete ParaBlur-named images the manifest no longer lists (fewer images, new format)."""
    for path in folder.iterdir():
        if _OWN_NAME.match(path.name) and path.name not in keep and path.is_file():
            path.unlink(missing_ok=True)
