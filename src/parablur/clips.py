"""Video clips on the one data path: a clip is cut into segment tasks, and its segments, once
all are made, are joined into its output.

The pipeline and the executors know nothing of video. The pipeline hands every planned task
to an ``Assembler``, which returns it as it is (an image) or as one task per segment of the
clip (``expand``), and hands it every result (``settle``): an image's passes through; a
segment's is held until the clip's last one, and the clip is then joined on the client (a
stream copy: nothing is decoded) and reported as one result.

* **Cutting.** The client probes the clip (demuxing only, through ranged reads of its store)
  and cuts it at keyframes (``video.plan_segments``) into segments of ``--segment-s``
  seconds, by default ``auto_segment_s`` of the clip's length alone: the cut never depends on
  the executor or the number of workers, so that every executor writes the same bytes.
* **A segment** is a task of its own: the worker opens the clip by ranged reads, decodes from
  the segment's keyframe (plus the tracking overlap, for faces), anonymizes one frame at a
  time and encodes the segment with a deterministic encoder (``video.ENCODER_OPTIONS``). It is
  written under ParaBlur's hidden prefix ``PARTS`` of the output location, with its resume
  record (the clip's input tag, the parameters, its record's tag); its record (the faces of
  each frame) goes beside it as JSON, written by the client once it holds the result.
* **Resume.** A rerun skips the segments already made from the same input with the same
  parameters (their records are read back), and skips a clip whose output is up to date
  without probing it.
* **Joining.** The client fetches the segments into a temporary folder, joins them with the
  clip's audio and subtitles (``video.join``: the final file appears only when whole), uploads
  the output (a multipart upload when large), records one line per frame with faces, track
  ids made clip-wide, and removes the segments.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .dataset import is_video_key
from .errors import ParaBlurError
from .records import line_tag, record_line
from .storage import Store
from .worker import (
    RECORD_INPUT,
    RECORD_LINE,
    RECORD_PARAMS,
    RECORD_RUN,
    STAGES,
    ImageResult,
    ImageTask,
    Job,
    _recorded_input,
    failure_reason,
    input_tag,
    worker_id,
)

if TYPE_CHECKING:
    from .video import ClipInfo, Segment

PARTS = ".parablur-parts"  # hidden prefix of the output location that holds clips' segments
RECORD_SUFFIX = ".json"  # a segment's record, beside it
# ``auto_segment_s``: a clip is cut in about this many segments, of these many seconds at
# least and at most (fewer segments only below the shortest). A segment also decodes (and,
# for faces, detects on) the tracking overlap beyond each end, about 2 s at 25 fps: 6 s
# segments do 1.7 times the frames they write, 2 s segments 3 times (measured: a 30 s 720p
# clip in 2 s segments ran at 9.8 frames/s on one core).
AUTO_SEGMENTS = 16
MIN_SEGMENT_S = 6.0
MAX_SEGMENT_S = 10.0


def auto_segment_s(duration_s: float) -> float:
    """Seconds per segment for a clip of ``duration_s``: about ``AUTO_SEGMENTS`` segments, each
    ``MIN_SEGMENT_S`` to ``MAX_SEGMENT_S`` long (cuts fall on the keyframes after these).

    A function of the clip alone: a cut that depended on the number of workers would make
    the outputs of different executors differ (each segment's encoder starts afresh).
    """
    return min(MAX_SEGMENT_S, max(MIN_SEGMENT_S, duration_s / AUTO_SEGMENTS))


@dataclass(frozen=True)
class Part:
    """One segment of a clip, as its task carries it to a worker."""

    info: ClipInfo
    segment: Segment
    count: int  # the clip's segments
    input_tag: str  # the clip's input tag, recorded with the segment

    @property
    def index(self) -> int:
        return self.segment.index


def video_params_tag(job: Job) -> str:
    """The tag of what a clip's output depends on: the workload and its parameters, the video
    parameters and ParaBlur's version (not the JPEG quality of images)."""
    from . import __version__

    workload = {k: v for k, v in job.describe().items() if k != "jpeg_quality"}
    text = json.dumps([workload, job.video.describe(), __version__], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def parts_prefix(output: str) -> str:
    """The hidden prefix of every segment of the clip whose output is ``output``."""
    return f"{PARTS}/{output}"


def part_key(output: str, params: str, input_tag: str, index: int) -> str:
    """The hidden key of segment ``index`` of the clip whose output is ``output``."""
    digest = hashlib.sha256(f"{params}:{input_tag}".encode()).hexdigest()[:16]
    return f"{parts_prefix(output)}/{digest}-{index:05d}.nut"


# -- the worker's side ----------------------------------------------------------------------

def process_part(task: ImageTask, job: Job) -> ImageResult:
    """Anonymize and encode one segment of a clip into its hidden key; never raises for a bad
    clip, it reports the reason instead. A segment already made (same input and parameters,
    its record beside it) is skipped, its record read back."""
    from .video import SEGMENT_SUFFIX

    part: Part = task.part  # type: ignore[assignment]
    index = part.segment.index
    stages = dict.fromkeys(STAGES, 0.0)
    stage = "read"
    try:
        t0 = time.perf_counter()
        if task.skip_done:
            found = _made(task)
            if found is not None:
                line, by_run = found
                return ImageResult(task.name, True, worker=worker_id(), skipped=not by_run,
                                   line=line, part=index, frames=part.segment.frames,
                                   read_s=time.perf_counter() - t0)
        source = io.BytesIO(task.data) if task.data is not None else task.store_in.open(task.src)
        stages["read_s"] = time.perf_counter() - t0
        stage = f"segment {index}"
        with source, tempfile.TemporaryDirectory(prefix="parablur-segment-") as tmp:
            dest = Path(tmp) / f"segment{SEGMENT_SUFFIX}"
            t1 = time.perf_counter()
            frames, records = _anonymize(job, source, part.info, part.segment, dest)
            stages["blur_s"] = time.perf_counter() - t1
            encoded = dest.read_bytes()
        line = json.dumps({"segment": index, "frames": frames, "records": records}, sort_keys=True)
        stage = "write"
        t2 = time.perf_counter()
        meta = {RECORD_INPUT: part.input_tag, RECORD_PARAMS: task.params, RECORD_LINE: line_tag(line)}
        if task.run:
            meta[RECORD_RUN] = task.run
        if task.return_bytes:
            return ImageResult(task.name, True, worker=worker_id(), output=encoded, meta=meta,
                               line=line, part=index, dst=task.dst, frames=frames, **stages)
        task.store_out.write(task.dst, encoded, metadata=meta)
        stages["write_s"] = time.perf_counter() - t2
        return ImageResult(task.name, True, worker=worker_id(), line=line, part=index,
                           frames=frames, **stages)
    except Exception as exc:  # one bad clip must never fail the batch; Ctrl-C still stops it
        return ImageResult(task.name, False, f"{stage}: {failure_reason(exc)}", worker=worker_id(),
                           part=index, **stages)


def _made(task: ImageTask) -> tuple[str, bool] | None:
    """The record of ``task``'s segment and whether this run made it, if the segment is made
    from the clip's input with the run's parameters and its record is beside it."""
    part: Part = task.part  # type: ignore[assignment]
    info = task.store_out.info(task.dst)
    if info is None or info.metadata.get(RECORD_PARAMS) != task.params \
            or info.metadata.get(RECORD_INPUT) != part.input_tag:
        return None
    try:
        line = task.store_out.read(task.dst + RECORD_SUFFIX).decode("utf-8")
    except (OSError, ParaBlurError, UnicodeDecodeError):
        return None
    if line_tag(line) != info.metadata.get(RECORD_LINE):
        return None
    return line, bool(task.run) and info.metadata.get(RECORD_RUN) == task.run


def _anonymize(job: Job, source, info, segment, dest: Path) -> tuple[int, list[dict]]:
    """Encode ``segment`` to ``dest`` through the job's workload: its own video step when it has
    one (faces: detect, track, hide), else the workload on every frame. The frames written and
    the record of each frame that has one."""
    video = job.video
    own = getattr(job.workload, "segment", None)
    if own is not None:
        return own(source, info, segment, dest, video)
    from .video import encode_segment

    records: list[dict] = []

    def each(image, index: int, pts: float):
        out, record = job.workload(image, None)
        if record is not None:
            records.append({"frame": index, "pts": round(pts, 6), **record})
        return out

    frames = encode_segment(source, info, segment, each, dest, codec=video.codec, crf=video.crf)
    return frames, records


# -- the client's side ----------------------------------------------------------------------

@dataclass
class _Clip:
    """A clip whose segments are under way: what the join needs, and the results so far."""

    task: ImageTask
    info: object
    keys: list[str]
    results: dict[int, ImageResult] = field(default_factory=dict)


class Assembler:
    """Cuts clips into segment tasks on the client and joins them once all are made."""

    def __init__(self, inp: Store, out: Store, job: Job) -> None:
        self.inp, self.out, self.job = inp, out, job
        self._params: str | None = None
        self._clips: dict[str, _Clip] = {}
        self._checked: dict[tuple[str, str], str | None] = {}  # (muxer, encoder) -> why not
        self.assembled: set[str] = set()  # the names whose output is made of parts

    @property
    def params(self) -> str:
        if self._params is None:
            self._params = video_params_tag(self.job)
        return self._params

    def expand(self, task: ImageTask) -> list[ImageTask]:
        """``task`` itself (an image), or one task per segment of its clip: none when the clip's
        output is up to date (reported skipped), one that fails when the clip cannot be probed."""
        if not is_video_key(task.src) or task.annotate is not None:
            return [task]
        self.assembled.add(task.name)
        task = replace(task, params=self.params)
        try:
            tag = task.input_tag or self._input_tag(task.src)
            task = replace(task, input_tag=tag)
            if task.skip_done:
                recorded, by_run = _recorded_input(task)
                if recorded is not None and recorded == tag and not by_run:
                    return [replace(task, done=True)]
            from .video import plan_segments, probe

            with self.inp.open(task.src) as handle:
                info = probe(handle)
        except Exception as exc:  # noqa: BLE001 - one clip's failure is reported, the rest go on
            return [replace(task, error=f"probe: {failure_reason(exc)}")]
        unfit = self._unfit(task.src, info)
        if unfit:
            return [replace(task, error=unfit)]
        segments = plan_segments(info, self.job.video.segment_s or auto_segment_s(info.duration))
        keys = [part_key(task.dst, self.params, tag, s.index) for s in segments]
        self._clips[task.name] = _Clip(task, info, keys)
        own = getattr(self.job.workload, "overlap_frames", None)
        overlap = own(info, self.job.video) if own is not None else 0
        tasks = []
        for segment, key in zip(segments, keys, strict=True):
            first = info.index_of(segment.start_pts)  # each task carries only its frames' pts
            sliced = info.around(first - overlap, first + segment.frames - 1 + overlap)
            tasks.append(replace(task, dst=key, part=Part(sliced, segment, len(segments), tag)))
        return tasks

    def _input_tag(self, key: str) -> str:
        """A clip's input tag where the listing gave none (a folder: its SHA-256)."""
        info = self.inp.info(key)
        if info is None:
            raise ParaBlurError(f"{key}: vanished")
        return input_tag(info)

    def _unfit(self, key: str, info: ClipInfo) -> str | None:
        """Why the clip's container cannot hold the encoder's video (before any segment is made)."""
        from .video import encoder_for, muxer_for, muxer_refuses

        try:
            encoder = encoder_for(info, self.job.video.codec)
        except ParaBlurError as exc:
            return f"encode: {exc}"
        muxer = muxer_for(key, info)
        if (muxer, encoder) not in self._checked:
            self._checked[muxer, encoder] = muxer_refuses(muxer, encoder)
        return self._checked[muxer, encoder]

    def settle(self, img: ImageResult) -> ImageResult | None:
        """An image's result as it is; a segment's held (None) until its clip's last, then the
        clip's result: joined, or failed with its first failed segment's reason."""
        if img.part is None:
            return img
        clip = self._clips.get(img.name)
        if clip is None:  # a retried segment's second result
            return None
        if img.ok and not img.skipped and img.line is not None:
            try:  # its record beside it: a rerun skips it only with its record
                self.out.write(clip.keys[img.part] + RECORD_SUFFIX, img.line.encode("utf-8"))
            except (OSError, ParaBlurError) as exc:
                img = replace(img, ok=False, error=f"write: {failure_reason(exc)}")
        clip.results[img.part] = img
        if len(clip.results) < len(clip.keys):
            return None
        del self._clips[img.name]
        results = [clip.results[i] for i in range(len(clip.keys))]
        stages = {s: sum(getattr(r, s) for r in results) for s in STAGES}
        failed = [r for r in results if not r.ok]
        if failed:
            self._remove(clip.task.dst)
            return ImageResult(img.name, False, failed[0].error, worker=img.worker, **stages)
        t0 = time.perf_counter()
        try:
            line = self._join(clip, results)
        except Exception as exc:  # noqa: BLE001 - one clip's failure is reported, the rest go on
            return ImageResult(img.name, False, f"join: {failure_reason(exc)}", worker=img.worker,
                               **stages)
        finally:
            self._remove(clip.task.dst)
        stages["write_s"] += time.perf_counter() - t0
        return ImageResult(img.name, True, worker=img.worker, line=line, frames=clip.info.frames,
                           **stages)

    def _join(self, clip: _Clip, results: Sequence[ImageResult]) -> str | None:
        """Join ``clip``'s segments into its output; its record lines (None without a face)."""
        from .video import join

        task = clip.task
        segments = [json.loads(r.line or "{}") for r in results]
        own = getattr(self.job.workload, "join_records", None)
        lines = own(task.name, segments) if own is not None else frame_records(task.name, segments)
        text = "\n".join(lines) if lines else None
        meta = {RECORD_INPUT: task.input_tag, RECORD_PARAMS: task.params}
        if text is not None:
            meta[RECORD_LINE] = line_tag(text)
        if task.run:
            meta[RECORD_RUN] = task.run
        with tempfile.TemporaryDirectory(prefix="parablur-join-") as tmp:
            files = []
            for i, key in enumerate(clip.keys):
                path = Path(tmp) / f"{i:05d}.nut"
                path.write_bytes(self.out.read(key))
                files.append(path)
            dest = Path(tmp) / f"out{Path(task.dst).suffix}"
            with self.inp.open(task.src) as source:
                join(source, clip.info, files, dest)
            self.out.upload(task.dst, dest, metadata=meta)
        return text

    def _remove(self, output: str) -> None:
        """Remove every segment of the clip whose output is ``output``, and their records (the
        hidden prefix is ParaBlur's own: segments of other parameters or runs go too)."""
        with contextlib.suppress(OSError, ParaBlurError):
            self.out.delete_tree(parts_prefix(output))


def frame_records(name: str, segments: Sequence[dict]) -> list[str]:
    """A clip's record lines as a workload that keeps one record per frame gives them: one line
    per frame with a record, in frame order (``record_line``; "image" the clip's key)."""
    return [record_line(name, entry) for seg in segments
            for entry in sorted(seg.get("records", []), key=lambda e: e["frame"])]


__all__ = ["AUTO_SEGMENTS", "PARTS", "Assembler", "Part", "auto_segment_s", "frame_records",
           "part_key", "process_part", "video_params_tag"]
