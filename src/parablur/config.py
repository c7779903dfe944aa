"""Frozen, validated configuration objects for every ParaBlur job.

The CLI parses flags into these; library code only ever sees these objects.
Each one validates itself on construction and raises ``ConfigError`` with a
message that states the rule that was broken.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_SOURCE_URL = "https://picsum.photos/2000/2000"
EXECUTORS = ("sequential", "dask", "dask-threads", "processes", "threads")
PARALLEL_EXECUTORS = tuple(e for e in EXECUTORS if e != "sequential")
# Executors that write Dask's performance report (--performance-report); with several of
# them in one benchmark, each writes its own file (files.derived_path).
PROFILED_EXECUTORS = ("dask", "dask-threads")
FALLBACKS = ("scene", "noise", "faces", "faces-video")
# faces-video: generated clips (never downloaded); their defaults differ from the images'.
CLIP_FALLBACK = "faces-video"
IMAGE_SIZE = (2000, 2000)
CLIP_SIZE = (1280, 720)
CLIP_COUNT = 4  # clips in a new faces-video dataset unless told otherwise (--num-images)
TRANSFERS = ("paths", "bytes")
WORKLOADS = ("blur", "faces")
ENGINES = ("exact", "fast")  # parablur.engines.ENGINES; config cannot import it
# fsspec schemes whose data lives in the memory of the process that wrote it and ends with
# it: the command line refuses them wherever it writes (outputs, a dataset it fetches),
# since all it wrote would be gone when it exits. (A library caller keeps its process.)
EPHEMERAL_SCHEMES = frozenset({"memory"})
# A user's own workload: an importable ``package.module:function``.
CUSTOM_WORKLOAD = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def default_workers() -> int:
    """The number of logical cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def folders_overlap(a: Path | str, b: Path | str) -> bool:
    """True when ``a`` and ``b`` are the same folder or URL prefix, or one lies inside the other.

    Folders (and file:// URLs) are compared with links resolved; other URLs by their
    scheme and '/'-separated path, and never overlap a folder.
    """
    from .storage import is_url

    def local(x: Path | str) -> Path | None:
        if not is_url(x):
            return Path(x)
        text = str(x)
        return Path(text[len("file://"):]) if text.lower().startswith("file://") else None

    la, lb = local(a), local(b)
    if la is not None and lb is not None:
        ra, rb = la.resolve(), lb.resolve()
        return ra == rb or ra in rb.parents or rb in ra.parents
    if la is not None or lb is not None:
        return False
    ua, ub = str(a).rstrip("/"), str(b).rstrip("/")
    return ua == ub or ua.startswith(ub + "/") or ub.startswith(ua + "/")


def location(value: Path | str) -> Path | str:
    """A folder as a ``Path``, an fsspec URL (s3://, file://, ...) kept as its text."""
    from .storage import is_url

    return str(value) if is_url(value) else Path(value)


def require_lasting(where: Path | str, flag: str) -> None:
    """Refuse a URL of one of the ``EPHEMERAL_SCHEMES`` as a place the command line writes to."""
    from .storage import is_url, redact

    scheme = str(where).partition("://")[0].lower() if is_url(where) else ""
    _require(scheme not in EPHEMERAL_SCHEMES,
             f"{flag} {redact(str(where))}: a {scheme}:// store ends with the process that "
             "writes it, so everything written there would be lost when parablur exits "
             "(choose a folder or a lasting store)")


def _require_apart(input_dir: Path | str, output_dir: Path | str) -> None:
    from .storage import redact

    _require(not folders_overlap(input_dir, output_dir),
             f"input-dir and output-dir must not contain one another: {redact(str(input_dir))} and "
             f"{redact(str(output_dir))} overlap (outputs are written, and cleared between benchmark rounds, "
             "under output-dir)")


def inside(path: Path, folder: Path) -> bool:
    """True when ``path`` is ``folder`` or lies anywhere below it (links resolved)."""
    rp, rf = Path(path).resolve(), Path(folder).resolve()
    return rp == rf or rf in rp.parents


def require_outside(path: Path | None, flag: str, folders: dict[str, Path | str]) -> None:
    """Refuse a file ParaBlur writes (``flag``) inside a dataset or an output folder, where a
    benchmark round would clear it or it would be read as an image."""
    if path is None:
        return
    for name, folder in folders.items():
        if not isinstance(folder, Path):
            continue  # a URL: nothing local to overlap
        _require(not inside(path, folder),
                 f"{flag} {path} must not be inside {name} {folder}")


def kernel_size(sigma: float) -> int:
    """Side of the Gaussian kernel for ``sigma``: 6*sigma+1 rounded up to odd (61 for 10)."""
    return 2 * math.ceil(3 * sigma) + 1


@dataclass(frozen=True)
class FetchConfig:
    """How to build (or reuse) the input dataset."""

    input_dir: Path = Path("downloads_fresh")
    num_images: int = 160
    source_url: str = DEFAULT_SOURCE_URL
    url_list: Path | None = None
    retries: int = 3
    timeout_s: float = 20.0
    connect_timeout_s: float = 5.0
    width: int | None = None  # None: IMAGE_SIZE, or CLIP_SIZE for faces-video clips
    height: int | None = None
    seed: int = 0
    force_download: bool = False
    download_workers: int = 8
    max_bytes: int = 50_000_000
    max_pixels: int = 100_000_000
    fallback: str = "scene"
    max_redirects: int = 5
    breaker_threshold: int = 3
    retry_after_cap_s: float = 30.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    clip_seconds: float = 10.0  # faces-video: each clip's length
    clip_fps: float = 30.0  # faces-video: its constant frame rate
    # fsspec options of a URL input_dir (credentials among them: never shown, never compared).
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dir", location(self.input_dir))
        if self.url_list is not None:
            object.__setattr__(self, "url_list", Path(self.url_list))
        size = CLIP_SIZE if self.fallback == CLIP_FALLBACK else IMAGE_SIZE
        if self.width is None:
            object.__setattr__(self, "width", size[0])
        if self.height is None:
            object.__setattr__(self, "height", size[1])
        _require(self.num_images >= 1, f"num-images must be >= 1, got {self.num_images}")
        _require(self.retries >= 0, f"retries must be >= 0, got {self.retries}")
        _require(self.timeout_s > 0, f"timeout-s must be > 0, got {self.timeout_s}")
        _require(self.connect_timeout_s > 0,
                 f"connect timeout must be > 0, got {self.connect_timeout_s}")
        _require(self.width >= 8 and self.height >= 8,
                 f"width and height must be >= 8, got {self.width}x{self.height}")
        _require(self.width * self.height <= self.max_pixels,
                 f"width x height must be <= {self.max_pixels} pixels, got {self.width}x{self.height}")
        _require(self.download_workers >= 1,
                 f"download-workers must be >= 1, got {self.download_workers}")
        _require(self.max_bytes >= 1024, f"max-bytes must be >= 1024, got {self.max_bytes}")
        _require(self.max_pixels >= 64, f"max pixels must be >= 64, got {self.max_pixels}")
        _require(self.fallback in FALLBACKS,
                 f"fallback must be one of {', '.join(FALLBACKS)}, got {self.fallback!r}")
        _require(self.source_url.lower().startswith(("http://", "https://")),
                 f"source-url must be an http:// or https:// URL, got {self.source_url!r}")
        _require(self.max_redirects >= 0, f"max redirects must be >= 0, got {self.max_redirects}")
        _require(self.breaker_threshold >= 1,
                 f"breaker threshold must be >= 1, got {self.breaker_threshold}")
        _require(self.retry_after_cap_s >= 0,
                 f"retry-after cap must be >= 0, got {self.retry_after_cap_s}")
        _require(self.backoff_base_s >= 0, f"backoff base must be >= 0, got {self.backoff_base_s}")
        _require(self.backoff_max_s >= self.backoff_base_s,
                 f"backoff max must be >= backoff base ({self.backoff_base_s}), "
                 f"got {self.backoff_max_s}")
        _require(0 < self.clip_seconds <= 3600,
                 f"clip-seconds must be > 0 and <= 3600, got {self.clip_seconds}")
        _require(1 <= self.clip_fps <= 240, f"clip-fps must be in 1..240, got {self.clip_fps}")
        _require(round(self.clip_seconds * self.clip_fps) >= 1,
                 f"a clip needs at least one frame: clip-seconds {self.clip_seconds} at clip-fps "
                 f"{self.clip_fps} makes none")
        if self.fallback == CLIP_FALLBACK:
            _require(self.url_list is None,
                     "url-list downloads images; faces-video clips are always generated (give "
                     "one or the other)")
            _require(self.width >= 16 and self.height >= 16 and self.width % 2 == 0
                     and self.height % 2 == 0,
                     "faces-video clips are H.264 4:2:0: width and height must be even and >= 16, "
                     f"got {self.width}x{self.height}")


@dataclass(frozen=True)
class BlurParams:
    """The anonymization itself: a Gaussian blur applied ``passes`` times."""

    sigma: float = 10.0
    passes: int = 1
    jpeg_quality: int = 92
    max_pixels: int = 100_000_000  # larger images are rejected from their header
    # How a worker schedules its disk I/O (never what it computes): read the next
    # file and write the last output on a background thread while blurring.
    overlap_io: bool = False

    def __post_init__(self) -> None:
        _require(self.sigma > 0, f"blur-radius (sigma) must be > 0, got {self.sigma}")
        _require(self.sigma <= 200, f"blur-radius (sigma) must be <= 200, got {self.sigma}")
        _require(self.passes >= 1, f"passes must be >= 1, got {self.passes}")
        _require(1 <= self.jpeg_quality <= 100,
                 f"jpeg quality must be in 1..100, got {self.jpeg_quality}")
        _require(self.max_pixels >= 1, f"max pixels must be >= 1, got {self.max_pixels}")

    @property
    def kernel(self) -> int:
        return kernel_size(self.sigma)


@dataclass(frozen=True)
class ClusterConfig:
    """Where Dask work goes: an embedded LocalCluster or an existing scheduler."""

    scheduler: str | None = None
    scheduler_file: Path | None = None
    tls_ca_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    dashboard: bool = True
    open_dashboard: bool = False
    max_task_retries: int = 2
    host: str = "127.0.0.1"
    # On a remote cluster, run on only RunConfig.workers of its workers (scale sweeps).
    limit_workers: bool = False
    wait_workers_s: float = 30.0

    def __post_init__(self) -> None:
        _require(not (self.scheduler and self.scheduler_file),
                 "give either --scheduler or --scheduler-file, not both")
        if self.scheduler:
            _require(self.scheduler.startswith(("tcp://", "tls://")),
                     f"scheduler address must start with tcp:// or tls://, got {self.scheduler!r}")
        tls = (self.tls_ca_file, self.tls_cert, self.tls_key)
        _require(all(t is None for t in tls) or all(t is not None for t in tls),
                 "TLS needs all three of --tls-ca-file, --tls-cert and --tls-key")
        for path in tls + (self.scheduler_file,):
            if path is not None:
                _require(Path(path).is_file(), f"file not found: {path}")
        _require(self.max_task_retries >= 0,
                 f"max-task-retries must be >= 0, got {self.max_task_retries}")

    @property
    def is_remote(self) -> bool:
        return bool(self.scheduler or self.scheduler_file)

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca_file is not None


FACE_STYLES = ("blur", "mosaic", "solid")
FACE_SHAPES = ("ellipse", "box")
FACE_DETECTORS = ("yunet", "centerface", "both")


@dataclass(frozen=True)
class FaceParams:
    """The face workload: detect faces (YuNet) and anonymize only their grown regions."""

    model: Path | None = None  # the verified model file; None: models.find_model() finds it
    face_min_size: int = 16  # smallest face to find, in pixels of the full image (box's longer side)
    threshold: float = 0.5  # detector score: low for recall, yet a blurred face must score below it
    max_faces: int = 1000
    style: str = "blur"
    shape: str = "ellipse"
    mask_scale: float = 1.3  # the region grows past the detector's box by this factor
    detector: str = "both"  # yunet; centerface; both: YuNet, its small doubtful finds confirmed by CenterFace
    centerface_model: Path | None = None  # the verified CenterFace file; None: found like ``model``

    def __post_init__(self) -> None:
        for name in ("model", "centerface_model"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))
        _require(self.detector in FACE_DETECTORS,
                 f"detector must be one of {', '.join(FACE_DETECTORS)}, got {self.detector!r}")
        _require(8 <= self.face_min_size <= 10_000,
                 f"face-min-size must be in 8..10000 pixels, got {self.face_min_size}")
        _require(0 < self.threshold < 1, f"threshold must be in (0, 1), got {self.threshold}")
        _require(self.max_faces >= 1, f"max-faces must be >= 1, got {self.max_faces}")
        _require(self.style in FACE_STYLES,
                 f"style must be one of {', '.join(FACE_STYLES)}, got {self.style!r}")
        _require(self.shape in FACE_SHAPES,
                 f"shape must be one of {', '.join(FACE_SHAPES)}, got {self.shape!r}")
        _require(1.0 <= self.mask_scale <= 3.0,
                 f"mask-scale must be in 1..3, got {self.mask_scale}")


@dataclass(frozen=True)
class VideoParams:
    """How a video clip is cut into segments, tracked and encoded again (``parablur.clips``)."""

    crf: int = 18  # visually lossless for x264/x265; the encoder's quality scale otherwise
    codec: str | None = None  # an FFmpeg encoder name; None: the input's codec family's encoder
    segment_s: float | None = None  # seconds per segment; None: from the clip's length alone
    track_gap_s: float = 0.3  # faces: a track's missed detections filled across this many seconds
    detect_every: int = 1  # faces: detect on every Nth frame of a clip, track across the others

    def __post_init__(self) -> None:
        _require(0 <= self.crf <= 63, f"video-crf must be in 0..63, got {self.crf}")
        _require(self.segment_s is None or 0.1 <= self.segment_s <= 3600,
                 f"segment-s must be in 0.1..3600 seconds, got {self.segment_s}")
        _require(0 <= self.track_gap_s <= 10, f"track-gap must be in 0..10 seconds, got {self.track_gap_s}")
        _require(1 <= self.detect_every <= 100,
                 f"detect-every must be in 1..100, got {self.detect_every}")

    def describe(self) -> dict:
        return {"crf": self.crf, "codec": self.codec, "segment_s": self.segment_s,
                "track_gap_s": self.track_gap_s, "detect_every": self.detect_every}


@dataclass(frozen=True)
class RunConfig:
    """How to anonymize one folder (or object-store prefix) with one executor."""

    input_dir: Path | str = Path("downloads_fresh")  # a folder, or an fsspec URL
    output_dir: Path | str = Path("processed")
    executor: str = "sequential"
    workers: int = field(default_factory=default_workers)
    threads_per_worker: int = 1
    batch_size: int | str = 4
    blur: BlurParams = field(default_factory=BlurParams)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    transfer: str | None = None
    force: bool = False  # anonymize(): redo every image instead of resuming
    include_startup: bool = False
    performance_report: Path | None = None
    workload: str = "blur"  # one of WORKLOADS, or MODULE:FUNCTION
    engine: str = "exact"  # how a Gaussian is computed (the blur workload's, and the faces')
    faces: FaceParams = field(default_factory=lambda: FaceParams())
    draw_boxes: bool = False  # faces: a debug copy with the boxes drawn, beside the outputs
    review: bool = False  # the workers also write the review page's thumbnails (``parablur.review``)
    video: VideoParams = field(default_factory=VideoParams)
    # fsspec options of URL locations (credentials among them: never shown, never compared).
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        _require(self.workload in WORKLOADS or bool(CUSTOM_WORKLOAD.match(self.workload)),
                 f"workload must be one of {', '.join(WORKLOADS)} or MODULE:FUNCTION, "
                 f"got {self.workload!r}")
        _require(self.engine in ENGINES,
                 f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        _require(not self.draw_boxes or self.workload == "faces",
                 f"draw-boxes draws the faces found on each image: it needs --workload faces, "
                 f"got {self.workload!r}")
        _require(not self.review or self.workload != "blur",
                 "review shows the masks a workload recorded: it needs --workload faces (or a "
                 "MODULE:FUNCTION whose records hold boxes), got 'blur'")
        object.__setattr__(self, "input_dir", location(self.input_dir))
        object.__setattr__(self, "output_dir", location(self.output_dir))
        _require(self.executor in EXECUTORS,
                 f"executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        _require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        _require(self.threads_per_worker >= 1,
                 f"threads-per-worker must be >= 1, got {self.threads_per_worker}")
        if isinstance(self.batch_size, str):
            # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
            if self.batch_size.isascii() and self.batch_size.isdigit():
                object.__setattr__(self, "batch_size", int(self.batch_size))
            else:
                _require(self.batch_size == "auto",
                         f"batch-size must be a positive integer or 'auto', got {self.batch_size!r}")
        if isinstance(self.batch_size, int):
            _require(self.batch_size >= 1, f"batch-size must be >= 1, got {self.batch_size}")
        if self.transfer is not None:
            _require(self.transfer in TRANSFERS,
                     f"transfer must be one of {', '.join(TRANSFERS)}, got {self.transfer!r}")
        _require_apart(self.input_dir, self.output_dir)
        require_outside(self.performance_report, "performance-report",
                        {"input-dir": self.input_dir, "output-dir": self.output_dir})

    @property
    def effective_transfer(self) -> str:
        return self.transfer or ("bytes" if self.cluster.is_remote else "paths")

    def with_executor(self, executor: str) -> RunConfig:
        return replace(self, executor=executor)


@dataclass(frozen=True)
class BenchConfig:
    """The study's benchmark: interleaved sequential and parallel rounds."""

    fetch: FetchConfig = field(default_factory=FetchConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(executor="dask"))
    executors: tuple[str, ...] = ("dask",)
    warmup: int = 1
    trials: int = 3
    report_csv: Path = Path("benchmark_results.csv")
    measure_ceiling: bool = True
    # Blur engines compared in one benchmark, round by round (empty: ``run.engine`` alone).
    engines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "report_csv", Path(self.report_csv))
        object.__setattr__(self, "engines", tuple(dict.fromkeys(self.engines)))
        for name in self.engines:
            _require(name in ENGINES, f"engines must be among {', '.join(ENGINES)}, got {name!r}")
        _require(not self.engines or self.run.workload == "blur",
                 "engines compares blur engines: it needs --workload blur")
        _require_apart(self.fetch.input_dir, self.run.output_dir)
        require_outside(self.report_csv, "report-csv",
                        {"input-dir": self.fetch.input_dir, "output-dir": self.run.output_dir})
        _require(self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}")
        _require(self.trials >= 1, f"trials must be >= 1, got {self.trials}")
        # The sequential baseline runs in every round anyway; naming it is allowed.
        parallel = tuple(dict.fromkeys(e for e in self.executors if e != "sequential"))
        object.__setattr__(self, "executors", parallel)
        _require(len(parallel) >= 1,
                 "executors must name at least one parallel executor besides sequential")
        for name in self.executors:
            _require(name in PARALLEL_EXECUTORS,
                     f"executors must be among {', '.join(PARALLEL_EXECUTORS)}, got {name!r}")
