"""The workload: read, decode, blur, encode and write one image, timing each stage.

``blur`` is a pure function of an array; everything else here is the I/O
around it. Workers receive ``ImageTask`` records (file paths, or encoded bytes
when the workers do not share the client's disk), never decoded arrays.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import socket
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from .config import BlurParams
from .errors import ImageError, ParaBlurError
from .files import write_atomic
from .imageinfo import jpeg_end, read_size

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

# JPEG inputs are decoded with EXIF orientation applied and CMYK converted;
# lossless formats keep alpha and 16-bit depth.
_JPEG_SUFFIXES = frozenset({".jpg", ".jpeg"})


_PREPARED = False

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
    """Set up this process to run the workload, the same way in every executor.

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


def warm_up(_: object = None) -> int:
    """Prepare a worker before any timing (imports done, threads pinned); its pid."""
    prepare_process()
    return os.getpid()


@dataclass(frozen=True)
class ImageTask:
    """One image to anonymize: where it comes from and where its output goes."""

    name: str  # path relative to the input folder, for reports
    src: str
    dst: str
    data: bytes | None = None  # encoded input, when shipped instead of read from disk
    return_bytes: bool = False  # send the encoded output back instead of writing it
    digests: bool = False  # report input and output sha256 (for the resume record)


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
    output: bytes | None = field(default=None, repr=False)
    input_sha256: str = ""  # of the bytes that were decoded
    output_sha256: str = ""  # of the encoded output
    output_size: int = 0

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


def blur(image: np.ndarray, params: BlurParams) -> np.ndarray:
    """Gaussian-blur ``image`` with a (6*sigma+1)-square kernel, ``params.passes`` times."""
    k = params.kernel
    out = image
    for _ in range(params.passes):
        out = cv2.GaussianBlur(out, (k, k), params.sigma, borderType=cv2.BORDER_REFLECT_101)
    return out


def check_header(data: bytes, max_pixels: int) -> None:
    """Refuse an image over ``max_pixels`` from its header, before any pixel is decoded.

    An image whose header declares no readable size is refused too: its pixel
    count could not be checked.
    """
    width, height = read_size(data)
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} is {width * height} pixels, over the cap of "
                         f"{max_pixels}")


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


def encode(image: np.ndarray, suffix: str, params: BlurParams) -> bytes:
    """Encode ``image`` in the format its output suffix names."""
    suffix = suffix.lower()
    if suffix in _JPEG_SUFFIXES:
        if image.dtype != np.uint8:
            image = (image >> 8).astype(np.uint8) if image.dtype == np.uint16 else image
        opts = [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality]
    elif suffix == ".webp":
        opts = [cv2.IMWRITE_WEBP_QUALITY, params.jpeg_quality]
    elif suffix == ".png":
        opts = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    else:
        opts = []
    ok, buf = cv2.imencode(suffix, image, opts)
    if not ok:
        raise ImageError(f"could not encode output as {suffix}")
    return buf.tobytes()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def read_input(task: ImageTask) -> bytes:
    """The encoded input of ``task``: shipped bytes, or the file's contents."""
    if task.data is not None:
        return task.data
    with open(task.src, "rb") as fh:
        return fh.read()


def process_image(task: ImageTask, params: BlurParams, *, prefetched: Future | None = None,
                  writer: ThreadPoolExecutor | None = None) -> ImageResult | _Pending:
    """Anonymize one image; never raises for a bad image, it reports the reason instead.

    With ``prefetched`` (a future of the input bytes) the read already happened in
    the background; with ``writer`` the output file is written in the background
    and the result's ``write_s`` only counts the hand-over.
    """
    stages = {"read_s": 0.0, "decode_s": 0.0, "blur_s": 0.0, "encode_s": 0.0, "write_s": 0.0}
    stage = "read"
    try:
        t0 = time.perf_counter()
        data = prefetched.result() if prefetched is not None else read_input(task)
        t1 = time.perf_counter()
        stages["read_s"] = t1 - t0
        stage = "decode"
        input_sha256 = hashlib.sha256(data).hexdigest() if task.digests else ""
        check_header(data, params.max_pixels)
        image = decode(data, Path(task.src).suffix)
        del data
        t2 = time.perf_counter()
        stages["decode_s"] = t2 - t1
        stage = "blur"
        out = blur(image, params)
        del image
        t3 = time.perf_counter()
        stages["blur_s"] = t3 - t2
        stage = "encode"
        encoded = encode(out, Path(task.dst).suffix, params)
        del out
        t4 = time.perf_counter()
        stages["encode_s"] = t4 - t3
        stage = "write"
        digests = {"input_sha256": input_sha256,
                   "output_sha256": hashlib.sha256(encoded).hexdigest() if task.digests else "",
                   "output_size": len(encoded)}
        if task.return_bytes:
            return ImageResult(task.name, True, worker=worker_id(), output=encoded, **stages,
                               **digests)
        if writer is not None:
            pending = writer.submit(write_atomic, Path(task.dst), encoded, durable=False)
            stages["write_s"] = time.perf_counter() - t4
            return _Pending(ImageResult(task.name, True, worker=worker_id(), **stages, **digests),
                            pending)
        write_atomic(Path(task.dst), encoded, durable=False)
        stages["write_s"] = time.perf_counter() - t4
        return ImageResult(task.name, True, worker=worker_id(), **stages, **digests)
    except Exception as exc:  # a user's file must never fail the batch; Ctrl-C still stops it
        return ImageResult(task.name, False, f"{stage}: {failure_reason(exc)}", worker=worker_id(),
                           **stages)


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


def _overlapped(tasks: Sequence[ImageTask], params: BlurParams) -> tuple[ImageResult, ...]:
    """Process ``tasks`` while one background thread reads ahead and writes behind."""
    out: list[ImageResult | _Pending] = []
    with ThreadPoolExecutor(1, thread_name_prefix="parablur-io") as io:
        nxt = io.submit(read_input, tasks[0]) if tasks else None
        for i, task in enumerate(tasks):
            current = nxt
            nxt = io.submit(read_input, tasks[i + 1]) if i + 1 < len(tasks) else None
            out.append(process_image(task, params, prefetched=current, writer=io))
    return tuple(r.settle() if isinstance(r, _Pending) else r for r in out)


def process_batch(tasks: Sequence[ImageTask], params: BlurParams) -> BatchResult:
    """Anonymize a batch of images in this process, one after another, single-threaded."""
    if not _PREPARED or cv2.getNumThreads() != 1:
        prepare_process()
    t0 = time.perf_counter()
    if params.overlap_io:
        results = _overlapped(tasks, params)
    else:
        results = tuple(process_image(task, params) for task in tasks)
    return BatchResult(results, time.perf_counter() - t0, worker_id(), peak_rss_mb())
