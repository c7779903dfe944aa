"""The worker harness: one image through a worker (read, decode, compute, encode, write), each stage timed.

What is computed is the job's workload (``parablur.workloads``: the study's
blur, faces, or a user's function), a pure function of an array; everything
here is the I/O around it. Workers receive ``ImageTask`` records (keys of an
input and an output ``Store``, or encoded bytes the client ships to workers
that cannot reach its store) and one ``Job``, never decoded arrays. Each output
is written whole with its resume record (``RECORD_*``) by one ``Store.write``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from . import jpeg_edit, process_state
from .config import BlurParams, RunConfig, VideoParams
from .engines import decode_reduced
from .errors import ImageError, ParaBlurError
from .imageinfo import jpeg_end, read_size
from .records import line_tag, record_line
from .workloads import BlurWorkload, Workload

if TYPE_CHECKING:
    from .storage import ObjectInfo, Store

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

# The stages of an image (``ImageResult``'s seconds), in order.
STAGES = ("read_s", "decode_s", "blur_s", "encode_s", "write_s")

# JPEG inputs are decoded with EXIF orientation applied and CMYK converted;
# lossless formats keep alpha and 16-bit depth.
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


_PREPARED = False

# An output's resume record in the store, as object metadata written with its PUT: the
# input it was made from ("etag:SIZE:ETAG" from the listing, else "sha256:HEX" of the bytes
# read), the parameters' tag (``params_tag``) and the run that wrote it (an output found
# already made by the same run comes from an earlier attempt of a retried batch: done, not
# skipped).
RECORD_INPUT = "parablur-input"
RECORD_PARAMS = "parablur-params"
RECORD_RUN = "parablur-run"
# On an output whose workload gave a record line: that line's ``records.line_tag``.
RECORD_LINE = "parablur-record"

# glibc mallopt parameters, and the values ParaBlur sets: large images are freed
# into the process's own heap and reused for the next image, instead of being
# handed back to the kernel and faulted in (zeroed) again for every image.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREED_BYTES = 128 * 2**20
_MMAP_ABOVE_BYTES = 32 * 2**20


def _reuse_freed_memory() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_ABOVE_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES)
    except (OSError, AttributeError):  # not glibc: keep the allocator's defaults
        pass


def prepare_process() -> None:
    """Set up a process ParaBlur owns (a pool or Dask worker) to run the workload.

    OpenCV (and any BLAS started later) on one thread, so that a speedup is the
    pool's alone; and the allocator told to keep a few images' worth of freed
    memory for reuse (about 30% off the decode stage of a 2000x2000 JPEG).
    """
    global _PREPARED
    for name in THREAD_ENV:
        os.environ[name] = "1"
    cv2.setNumThreads(0)
    if not _PREPARED:
        _reuse_freed_memory()
        _PREPARED = True


def borrow_process() -> None:
    """Prepare the caller's own process for the workload until ``release_process``.

    For the executors that run in the caller's process (sequential, threads,
    in-process Dask workers): OpenCV's thread count and ``THREAD_ENV`` are
    restored when the last of them is closed. The allocator setting stays (see
    ``prepare_process``): it cannot be undone, and it changes no result.
    """
    process_state.hold()
    threads, before = cv2.getNumThreads(), dict(os.environ)
    prepare_process()
    process_state.remember("cv2-threads", lambda: cv2.setNumThreads(threads))
    process_state.remember_environ(before)


def release_process() -> None:
    """Give the caller's process back as it was, once the last borrower is done."""
    process_state.release()


def warm_up(_: object = None) -> int:
    """Prepare a worker before any timing (imports done, threads pinned); its pid."""
    prepare_process()
    return os.getpid()


@dataclass(frozen=True)
class Job:
    """What every worker does to each image of a run; executors pass it through unopened."""

    workload: Workload = field(default_factory=BlurWorkload)
    jpeg_quality: int = 92
    max_pixels: int = 100_000_000  # larger images are rejected from their header
    # How a worker schedules its disk I/O (never what it computes).
    overlap_io: bool = False
    # How a video clip is cut, tracked and encoded (its outputs' parameters, not an image's).
    video: VideoParams = field(default_factory=VideoParams)
    # ``--review``: also write the review page's thumbnail and crops of each output with a
    # record (``review.write_assets``); not an output's parameter.
    review: bool = False

    @classmethod
    def blur(cls, params: BlurParams) -> Job:
        """The study's job: ``params``' full-frame blur, encoding and limits."""
        return cls(BlurWorkload(params.sigma, params.passes), params.jpeg_quality,
                   params.max_pixels, params.overlap_io)

    @classmethod
    def for_run(cls, config: RunConfig) -> Job:
        """The job ``config`` asks for: its workload, with the run's encoding and limits."""
        from .workloads import workload_for

        p = config.blur
        return cls(workload_for(config), p.jpeg_quality, p.max_pixels, p.overlap_io, config.video,
                   config.review)

    def describe(self) -> dict:
        """What an output depends on: the workload and its parameters, and the encoding."""
        return {"workload": self.workload.name, **self.workload.describe(),
                "jpeg_quality": self.jpeg_quality}


@dataclass(frozen=True)
class ImageTask:
    """One image to anonymize: its key in the input store, and its output's key in the output store.

    A task carries keys and the two stores (their URLs and options, shared by every task of
    a batch when pickled), never image bytes, unless the client ships them (``data``,
    ``return_bytes``: remote workers and a store only the client reaches).
    """

    name: str  # the input's key, for reports and records
    src: str  # its key in ``store_in``
    dst: str  # the output's key in ``store_out``
    store_in: Store = field(repr=False)
    store_out: Store = field(repr=False)
    data: bytes | None = None  # encoded input, when shipped by the client
    return_bytes: bool = False  # send the encoded output (and its metadata) back to the client
    input_tag: str = ""  # the input's size and ETag from the listing ("" when it has none)
    params: str = ""  # ``params_tag`` of the run's job, recorded with each output
    skip_done: bool = False  # skip an output recorded with this input and these parameters
    run: str = ""  # the run's id, recorded with each output
    # ``records.line_tag`` of the record line the client holds for this image ("" for none):
    # an output made with a record is skipped only when its line is this one, so that a line
    # left by another run (stopped before it saved its own lines) is never kept with it.
    line: str = ""
    # ``--draw-boxes``: draw this record (the workload's, from the run) on the input and write
    # that debug copy to ``dst`` of ``store_out``, instead of running the workload.
    annotate: dict | None = None
    # Found up to date by the client (``up_to_date``), which alone reaches the output store
    # (``--transfer bytes``): the worker reports it skipped, and nothing is shipped.
    done: bool = False
    # One part of an output made of several tasks (a video clip's segment: ``parablur.clips``);
    # ``dst`` is then the part's own hidden key.
    part: object | None = None
    # Why the client could not make the task's work (a clip that cannot be probed): the worker
    # reports the image failed with this reason.
    error: str | None = None

    @property
    def alone(self) -> bool:
        """A task that is a batch of its own (a segment takes seconds, not milliseconds)."""
        return self.part is not None

    @property
    def part_index(self) -> int | None:
        """Which part of its output this task makes (None: the whole output)."""
        return getattr(self.part, "index", None) if self.part is not None else None


@dataclass(frozen=True)
class ImageResult:
    """What happened to one image, with the seconds each stage took."""

    name: str
    ok: bool
    error: str | None = None
    read_s: float = 0.0
    decode_s: float = 0.0
    blur_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0
    worker: str = ""
    output: bytes | None = field(default=None, repr=False)  # returned bytes (``return_bytes``)
    meta: dict[str, str] | None = None  # the returned output's resume record, to write with it
    # The workload's record of the image (faces: the detections) as its line of the record
    # file, made on the worker (``records.record_line``): a record that is not JSON fails
    # its image there, with the reason, like any other error of that image.
    line: str | None = None
    skipped: bool = False  # its output was already up to date (resume)
    frames: int = 1  # frames it holds (an image: 1; a video clip: its frame count)
    part: int | None = None  # the part's index, for a part of an output (``ImageTask.part``)
    dst: str | None = None  # the returned part's key in the output store (``return_bytes``)

    @property
    def total_s(self) -> float:
        return self.read_s + self.decode_s + self.blur_s + self.encode_s + self.write_s


@dataclass(frozen=True)
class BatchResult:
    """The results of one task (a batch of images) and the seconds the task took."""

    images: tuple[ImageResult, ...]
    task_s: float
    worker: str
    peak_rss_mb: float
    started: float = 0.0  # wall clock (time.time()) when the task began, in the worker
    ended: float = 0.0


def check_header(data: bytes, max_pixels: int) -> tuple[int, int]:
    """The (width, height) of an image's header; refuse one over ``max_pixels`` before any
    pixel is decoded.

    An image whose header declares no readable size is refused too: its pixel
    count could not be checked.
    """
    width, height = read_size(data)
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} is {width * height} pixels, over the cap of "
                         f"{max_pixels}")
    return width, height


def decode_for(job: Job, data: bytes, suffix: str, size: tuple[int, int]
               ) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The decoded image, and its full (height, width) when the workload let it be decoded smaller
    (a JPEG through libjpeg's DCT scaling; the fast blur engine asks for it)."""
    factor = job.workload.decode_factor(size)
    if factor > 1:
        reduced = decode_reduced(data, factor)
        if reduced is not None:
            return reduced.image, reduced.full_shape
    return decode(data, suffix), None


def decode(data: bytes, suffix: str) -> np.ndarray:
    """Decode encoded image bytes; raise ImageError when they are not a readable image.

    JPEG: only the bytes up to its end-of-image marker (a truncated JPEG is refused,
    bytes after its end are ignored), EXIF orientation applied, CMYK converted to
    BGR, grayscale kept gray. Other formats: decoded unchanged (alpha and 16-bit
    depth kept).
    """
    if not data:
        raise ImageError("empty file")
    jpeg = data[:2] == b"\xff\xd8"
    count = -1
    if jpeg and not data.endswith(b"\xff\xd9"):  # ending with its end marker: complete
        count = jpeg_end(data)  # else walk its markers to the end marker (~0.4 ms a MB)
        if count is None:
            raise ImageError("truncated JPEG (its image data stops before an end-of-image marker)")
    flags = cv2.IMREAD_ANYCOLOR if jpeg or suffix.lower() in _JPEG_SUFFIXES else cv2.IMREAD_UNCHANGED
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8, count=count), flags)
    if image is None or image.size == 0:
        raise ImageError("not a decodable image (corrupt, truncated or not an image)")
    return image


def encode(image: np.ndarray, suffix: str, params: BlurParams | Job) -> bytes:
    """Encode ``image`` in the format its output suffix names."""
    suffix = suffix.lower()
    if suffix in _JPEG_SUFFIXES:
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image
        opts = [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]
    elif suffix == ".webp":
        opts = [cv2.IMWRITE_WEBP_QUALITY, params.jpeg_quality]
    elif suffix == ".png":
        # Run-length strategy: the same pixels as the default strategy, 15 to 27% smaller
        # files at the same or lower encode time on 2000x2000 outputs (benchmarks/engines.py).
        opts = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY,
                cv2.IMWRITE_PNG_STRATEGY_RLE]
    else:
        opts = []
    ok, buf = cv2.imencode(suffix, image, opts)
    if not ok:
        raise ImageError(f"could not encode output as {suffix}")
    return buf.tobytes()


def encode_output(source: bytes, before: np.ndarray | None, out: np.ndarray, dst: str, job: Job,
                  record: dict | None) -> tuple[bytes, dict | None]:
    """The output's bytes, and the workload's record with how they were written.

    A JPEG written from a JPEG is an edit of its source where that applies (``jpeg_edit``: the
    blocks the workload left alone keep the source's coefficients); otherwise ``out`` is
    encoded whole. A record gains ``"jpeg": {"lossless": ..., ...}`` when the input or the
    output is a JPEG. ``before`` is the decoded input (None when it was decoded smaller).
    """
    suffix = Path(dst).suffix
    edited = jpeg_edit.edit(source, before, out, suffix)
    encoded = edited.data if edited.data is not None else encode(out, suffix, job)
    if record is not None and edited.note is not None:
        record = {**record, "jpeg": edited.note}
    return encoded, record


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def read_input(task: ImageTask) -> bytes:
    """The encoded input of ``task``: the bytes the client shipped, or its object in the input store."""
    if task.data is not None:
        return task.data
    return task.store_in.read(task.src)


def process_image(task: ImageTask, job: Job, *, prefetched: Future | None = None,
                  writer: ThreadPoolExecutor | None = None) -> ImageResult | _Pending:
    """Anonymize one image; never raises for a bad image, it reports the reason instead.

    With ``prefetched`` (a future of the input bytes) the read already happened in
    the background; with ``writer`` the output file is written in the background
    and the result's ``write_s`` only counts the hand-over.
    """
    if task.annotate is not None:
        return draw_image(task, job, prefetched=prefetched)
    if task.error is not None:
        return ImageResult(task.name, False, task.error, worker=worker_id())
    if task.part is not None and not task.done:
        from .clips import process_part

        return process_part(task, job)
    stages = dict.fromkeys(STAGES, 0.0)
    stage = "read"
    if task.done:
        return ImageResult(task.name, True, worker=worker_id(), skipped=True)
    try:
        t0 = time.perf_counter()
        recorded, by_run = _recorded_input(task) if task.skip_done else (None, False)
        if recorded is not None and recorded == task.input_tag:
            return ImageResult(task.name, True, worker=worker_id(), skipped=not by_run,
                               read_s=time.perf_counter() - t0)
        data = prefetched.result() if prefetched is not None else read_input(task)
        t1 = time.perf_counter()
        stages["read_s"] = t1 - t0
        stage = "decode"
        input_tag = task.input_tag or f"sha256:{hashlib.sha256(data).hexdigest()}"
        if recorded is not None and recorded == input_tag:
            return ImageResult(task.name, True, worker=worker_id(), skipped=not by_run, **stages)
        size = check_header(data, job.max_pixels)
        image, full_shape = decode_for(job, data, Path(task.src).suffix, size)
        t2 = time.perf_counter()
        stages["decode_s"] = t2 - t1
        stage = job.workload.name
        out, record = job.workload(image, full_shape)
        t3 = time.perf_counter()
        stages["blur_s"] = t3 - t2
        stage = "encode"
        encoded, record = encode_output(data, None if full_shape else image, out, task.dst, job, record)
        del data, image
        stage = "record"
        line = record_line(task.name, record) if record is not None else None
        tag = line_tag(line) if line is not None else None
        if job.review and tag is not None and not task.return_bytes:
            stage = "review"
            from .review import asset_tag, write_assets

            write_assets(task.store_out, task.dst, out, record, asset_tag(tag, len(encoded)))
        del out
        t4 = time.perf_counter()
        stages["encode_s"] = t4 - t3
        stage = "write"
        # The resume record, written with the output (object metadata: ``parablur.storage``).
        meta = {RECORD_INPUT: input_tag, RECORD_PARAMS: task.params or params_tag(job)}
        if tag is not None:
            meta[RECORD_LINE] = tag
        if task.run:
            meta[RECORD_RUN] = task.run
        if task.return_bytes:
            return ImageResult(task.name, True, worker=worker_id(), output=encoded, meta=meta,
                               line=line, **stages)
        if writer is not None:
            pending = writer.submit(task.store_out.write, task.dst, encoded, metadata=meta)
            stages["write_s"] = time.perf_counter() - t4
            return _Pending(ImageResult(task.name, True, worker=worker_id(), line=line, **stages),
                            pending)
        task.store_out.write(task.dst, encoded, metadata=meta)
        stages["write_s"] = time.perf_counter() - t4
        return ImageResult(task.name, True, worker=worker_id(), line=line, **stages)
    except Exception as exc:  # a user's file must never fail the batch; Ctrl-C still stops it
        return ImageResult(task.name, False, f"{stage}: {failure_reason(exc)}", worker=worker_id(),
                           **stages)


def draw_image(task: ImageTask, job: Job, *, prefetched: Future | None = None) -> ImageResult:
    """``--draw-boxes`` on a worker: the input with ``task.annotate`` drawn on it, written to
    ``task.dst`` of ``task.store_out`` (or sent back); skipped when the workload draws nothing."""
    assert task.annotate is not None
    stage = "read"
    try:
        data = prefetched.result() if prefetched is not None else read_input(task)
        stage = "decode"
        check_header(data, job.max_pixels)
        image = decode(data, Path(task.src).suffix)
        del data
        stage = "draw"
        drawn = job.workload.annotate(image, task.annotate)
        if drawn is None:
            return ImageResult(task.name, True, worker=worker_id(), skipped=True)
        stage = "encode"
        encoded = encode(drawn, Path(task.dst).suffix, job)
        if task.return_bytes:
            return ImageResult(task.name, True, worker=worker_id(), output=encoded, meta={})
        stage = "write"
        task.store_out.write(task.dst, encoded)
    except Exception as exc:  # one debug copy must never fail the others
        return ImageResult(task.name, False, f"{stage}: {failure_reason(exc)}", worker=worker_id())
    return ImageResult(task.name, True, worker=worker_id())


def params_tag(job: Job) -> str:
    """A short tag of what an output depends on: the job's parameters and ParaBlur's version."""
    from . import __version__

    text = json.dumps([job.describe(), __version__, {"jpeg_edit": jpeg_edit.FORMAT_VERSION}],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def up_to_date(task: ImageTask, data: bytes) -> bool:
    """True when ``task``'s output is recorded as made from ``data`` with the run's parameters
    (and the record line the client holds): the check a worker makes, made where ``data`` is."""
    recorded, by_run = _recorded_input(task)
    return recorded is not None and not by_run and recorded == (
        task.input_tag or f"sha256:{hashlib.sha256(data).hexdigest()}")


def _recorded_input(task: ImageTask) -> tuple[str | None, bool]:
    """The input tag recorded on ``task``'s output in the store, if made with the same parameters,
    and whether this very run wrote it."""
    info = task.store_out.info(task.dst)
    if info is None or not task.params or info.metadata.get(RECORD_PARAMS) != task.params:
        return None, False
    by_run = bool(task.run) and info.metadata.get(RECORD_RUN) == task.run
    made_with = info.metadata.get(RECORD_LINE) or ""
    if (made_with and by_run) or made_with != task.line:
        # The client does not hold this output's line (lost, left by another run, or made by
        # this run's lost attempt and never received), or holds a line for an output made
        # without one: redo the output and the line together.
        return None, False
    return info.metadata.get(RECORD_INPUT) or None, by_run


def input_tag(item: ObjectInfo) -> str:
    """An input's tag from a listing or a HEAD: its size and the store's ETag ("" without one:
    the worker then tags it by the SHA-256 of the bytes it reads)."""
    return f"etag:{item.size}:{item.etag}" if item.etag else ""


def failure_reason(exc: Exception) -> str:
    """One line saying why an image failed: ParaBlur's own refusal, else the exception's type and message."""
    text = str(exc).strip()
    last = text.splitlines()[-1] if text else ""
    if isinstance(exc, ParaBlurError) and last:
        return last
    kind = type(exc)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {last}" if last else name


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Read from VmHWM, which starts afresh in every exec'd process; ``ru_maxrss``
    would carry the peak of the process that spawned this one.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):  # pragma: no cover - not POSIX
        return 0.0


@dataclass(frozen=True)
class _Pending:
    """A result whose output file is still being written in the background."""

    result: ImageResult
    write: Future

    def settle(self) -> ImageResult:
        t0 = time.perf_counter()
        try:
            self.write.result()
        except Exception as exc:
            return replace(self.result, ok=False, error=f"write: {failure_reason(exc)}")
        return replace(self.result, write_s=self.result.write_s + time.perf_counter() - t0)


def _overlapped(tasks: Sequence[ImageTask], job: Job) -> tuple[ImageResult, ...]:
    """Process ``tasks`` while one background thread reads ahead and writes behind."""
    out: list[ImageResult | _Pending] = []
    def ahead(task: ImageTask) -> Future | None:  # a segment reads its own ranges
        return io.submit(read_input, task) if task.part is None and task.error is None else None

    with ThreadPoolExecutor(1, thread_name_prefix="parablur-io") as io:
        nxt = ahead(tasks[0]) if tasks else None
        for i, task in enumerate(tasks):
            current = nxt
            nxt = ahead(tasks[i + 1]) if i + 1 < len(tasks) else None
            out.append(process_image(task, job, prefetched=current, writer=io))
    return tuple(r.settle() if isinstance(r, _Pending) else r for r in out)


def process_batch(tasks: Sequence[ImageTask], job: Job) -> BatchResult:
    """Run ``job`` on a batch of images in this process, one after another, single-threaded."""
    if not _PREPARED or cv2.getNumThreads() != 1:
        prepare_process()
    started, t0 = time.time(), time.perf_counter()
    if job.overlap_io:
        results = _overlapped(tasks, job)
    else:
        results = tuple(process_image(task, job) for task in tasks)
    task_s = time.perf_counter() - t0
    return BatchResult(results, task_s, worker_id(), peak_rss_mb(), started, started + task_s)
