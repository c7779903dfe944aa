"""Media plumbing for anonymizing video clips in independent segments.

A clip is cut at its keyframes into segments of a few seconds.  Each segment can be processed on its
own (by a Dask task later, by a loop now): ``encode_segment`` seeks the source to the segment's start
keyframe, decodes until it has every frame whose pts lies in ``[start, end)``, hands each frame as a
BGR numpy array to a callback and re-encodes what the callback returns.  ``join`` then concatenates
the encoded segments by stream copy and muxes the source's audio and subtitle streams back, packet
for packet, into the source's container format.

The design choices that make a distributed run decode to exactly the frames of a sequential run:

* ``probe`` reads every video packet's pts by demuxing (no decoding), so ``plan_segments`` is a pure
  function of the clip: every run cuts the same segments.
* Encoders run with ONE thread and fixed parameters (``ENCODER_OPTIONS``), and with no B-frames, so
  each packet's dts equals its pts, segments join without dts overlaps and variable frame rates
  are kept: every output frame carries the pts and time base of its source frame.
* Segment files are written in NUT (``SEGMENT_SUFFIX``), a container that keeps any time base and
  any pts exactly (Matroska would round to milliseconds, MP4 adds edit lists), with the bitexact
  flags so the same packets give the same bytes.
* Only the frames' pixels are re-encoded; rotation is display metadata and is carried over, not
  applied: ``frame_fn`` sees frames as stored, not as displayed.
* The joined file carries no metadata of the source (location, device make and model, software)
  except a stream's language, no data streams (which can hold GPS tracks), and is written beside
  ``dest`` under a temporary name then renamed, so ``dest`` appears only when whole.

Limits: frames are converted to 8-bit BGR, so 10-bit/HDR sources are encoded as 8-bit; attachments,
data streams and chapters are dropped.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import IO

import av
import numpy as np

from parablur.dataset import VIDEO_SUFFIXES
from parablur.errors import MediaError

__all__ = [
    "VIDEO_SUFFIXES",
    "SEGMENT_SUFFIX",
    "ClipInfo",
    "MediaError",
    "OtherStream",
    "Segment",
    "encoder_for",
    "encode_segment",
    "join",
    "plan_segments",
    "probe",
]

SEGMENT_SUFFIX = ".nut"

Source = str | os.PathLike[str] | IO[bytes]
FrameFn = Callable[[np.ndarray, int, float], np.ndarray]

# The encoder of each input codec family; the first one this FFmpeg build has is used.
_FAMILY_ENCODERS = {
    "h264": ("libx264",),
    "hevc": ("libx265",),
    "vp9": ("libvpx-vp9",),
    "av1": ("libsvtav1", "libaom-av1"),
}
_FALLBACK_ENCODER = "libx264"

# Fixed, single-threaded, B-frame free settings per encoder ({crf} is filled in).  x264's MB-tree is off:
# with it, once libx265 or libvpx-vp9 had run in the same process, x264 sporadically wrote other bytes
# for the same frames (measured with PyAV 18.1 / FFmpeg 8; with mbtree=0 it never did).
ENCODER_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "{crf}", "preset": "fast", "bf": "0", "threads": "1",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:deterministic=1:mbtree=0"},
    "libx265": {"crf": "{crf}", "preset": "fast", "bf": "0",
                "x265-params": "pools=none:frame-threads=1:wpp=0:bframes=0:log-level=error"},
    "libvpx-vp9": {"crf": "{crf}", "b": "0", "threads": "1", "row-mt": "0", "deadline": "good",
                   "cpu-used": "4"},
    "libsvtav1": {"crf": "{crf}", "preset": "8", "svtav1-params": "lp=1"},
    "libaom-av1": {"crf": "{crf}", "b": "0", "threads": "1", "row-mt": "0", "cpu-used": "6"},
}

# Demuxer name (as PyAV reports it) to the muxer that writes the same container.
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
           ".avi": "avi"}
_BITEXACT = {"fflags": "+bitexact"}


@dataclass(frozen=True)
class OtherStream:
    """A non-video stream of a clip: its index, type (audio, subtitle, data, ...) and codec name."""

    index: int
    type: str
    codec: str


@dataclass(frozen=True)
class ClipInfo:
    """What ``probe`` learns about a clip's first video stream by demuxing it."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction | None
    frame_pts: tuple[int, ...]
    keyframe_pts: tuple[int, ...]
    duration: float
    rotation: int
    streams: tuple[OtherStream, ...]
    stream_index: int
    format_name: str
    # A slice of the clip (``around``): its ``frame_pts`` start at this frame of the clip, which
    # has ``total_frames`` frames and a smallest pts step of ``min_step`` (0: a whole clip).
    first_frame: int = 0
    total_frames: int = 0
    min_step: int = 0

    @property
    def frames(self) -> int:
        """The number of video frames of the clip."""
        return self.total_frames or len(self.frame_pts)

    @property
    def smallest_step(self) -> int | None:
        """The clip's smallest step between two frames' pts (None for a clip of one frame)."""
        if self.min_step:
            return self.min_step
        steps = np.diff(np.asarray(self.frame_pts, dtype=np.int64))
        steps = steps[steps > 0]
        return int(steps.min()) if steps.size else None

    def pts_at(self, index: int) -> int:
        """The pts of frame ``index`` of the clip (within the slice this info holds)."""
        if not self.first_frame <= index < self.first_frame + len(self.frame_pts):
            raise IndexError(f"frame {index} is outside this slice of the clip")
        return self.frame_pts[index - self.first_frame]

    def index_of(self, pts: int) -> int:
        """The clip's index of the frame with this pts."""
        return self.first_frame + self.frame_pts.index(pts)

    def around(self, first: int, last: int) -> ClipInfo:
        """This clip's description with only frames ``first``..``last`` (clip indices, clamped)
        and the one after: what a segment task needs, however long the clip."""
        lo, hi = max(first, self.first_frame), min(last + 1, self.first_frame + len(self.frame_pts) - 1)
        pts = self.frame_pts[lo - self.first_frame: hi - self.first_frame + 1]
        return replace(self, frame_pts=pts,
                       keyframe_pts=tuple(k for k in self.keyframe_pts if pts[0] <= k <= pts[-1]),
                       first_frame=lo, total_frames=self.frames, min_step=self.smallest_step or 0)


@dataclass(frozen=True)
class Segment:
    """Frames of a clip from the keyframe ``start_pts`` to ``end_pts`` (exclusive; None: to the end)."""

    index: int
    start_pts: int
    end_pts: int | None
    frames: int

    def holds(self, pts: int) -> bool:
        """Whether a frame with this pts belongs to the segment."""
        return pts >= self.start_pts and (self.end_pts is None or pts < self.end_pts)


def _name(source: Source) -> str:
    """A short name of a source for messages."""
    if isinstance(source, str | os.PathLike):
        return Path(source).name
    return getattr(source, "name", None) or "<stream>"


def _open(source: Source) -> av.container.InputContainer:
    """Open a source for reading, rewinding a file-like first, as a MediaError on failure."""
    if not isinstance(source, str | os.PathLike):
        source.seek(0)
    try:
        return av.open(source if not isinstance(source, os.PathLike) else os.fspath(source), "r")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise MediaError(f"{_name(source)}: not a readable media file ({_one_line(exc)})") from exc


def _one_line(exc: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _video_stream(container: av.container.InputContainer, source: Source) -> av.video.stream.VideoStream:
    """The clip's first video stream, with a decoder, or a MediaError."""
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        raise MediaError(f"{_name(source)}: no video stream")
    stream = streams[0]
    if stream.codec_context is None:
        raise MediaError(f"{_name(source)}: no decoder for the video codec")
    try:
        av.Codec(stream.codec_context.name, "r")
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"{_name(source)}: no decoder for video codec {stream.codec_context.name}") from exc
    return stream


def _rotation(container: av.container.InputContainer, stream: av.video.stream.VideoStream, first: int) -> int:
    """The display rotation in degrees (counter-clockwise), from metadata or the first decoded frame."""
    rotate = stream.metadata.get("rotate")
    if rotate is not None:
        return -int(float(rotate)) % 360
    # PyAV exposes the stream's display matrix only on decoded frames: decode the first one.
    container.seek(first, stream=stream)
    for frame in container.decode(stream):
        return int(round(frame.rotation)) % 360
    return 0


def probe(source: Source) -> ClipInfo:
    """Describe a clip's first video stream and its other streams, demuxing every video packet."""
    with _open(source) as container:
        stream = _video_stream(container, source)
        ctx = stream.codec_context
        pts: list[int] = []
        keys: list[int] = []
        last_duration = 0
        try:
            for packet in container.demux(stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                if packet.size == 0 or stamp is None:
                    continue
                pts.append(stamp)
                last_duration = max(last_duration, packet.duration or 0)
                if packet.is_keyframe:
                    keys.append(stamp)
            if not pts:
                raise MediaError(f"{_name(source)}: the video stream has no frames")
            if len(set(pts)) != len(pts):
                raise MediaError(f"{_name(source)}: two video frames share a pts")
            rotation = _rotation(container, stream, min(pts))
        except av.FFmpegError as exc:
            raise MediaError(f"{_name(source)}: corrupt or truncated ({_one_line(exc)})") from exc
        pts.sort()
        keys.sort()
        if not keys or keys[0] != pts[0]:
            raise MediaError(f"{_name(source)}: the video does not start with a keyframe")
        time_base = stream.time_base
        span = pts[-1] - pts[0] + (last_duration or 0)
        rate = stream.average_rate or stream.guessed_rate
        if not last_duration and rate:
            span += int(round(1 / (rate * time_base)))
        others = tuple(
            OtherStream(s.index, s.type, s.codec_context.name if s.codec_context else "unknown")
            for s in container.streams
            if s.index != stream.index
        )
        return ClipInfo(
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            pix_fmt=ctx.pix_fmt or "yuv420p",
            time_base=time_base,
            rate=rate,
            frame_pts=tuple(pts),
            keyframe_pts=tuple(keys),
            duration=float(span * time_base),
            rotation=rotation,
            streams=others,
            stream_index=stream.index,
            format_name=container.format.name,
        )


def plan_segments(info: ClipInfo, segment_s: float) -> list[Segment]:
    """Cut a clip at keyframes into segments of at least ``segment_s`` seconds (the last may be shorter)."""
    if segment_s <= 0:
        raise ValueError(f"segment_s must be positive, got {segment_s}")
    step = segment_s / info.time_base
    starts = [info.frame_pts[0]]
    for key in info.keyframe_pts:
        if key - starts[-1] >= step:
            starts.append(key)
    ends: list[int | None] = [*starts[1:], None]
    segments = []
    at = 0
    for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
        count = 0
        while at < len(info.frame_pts) and (end is None or info.frame_pts[at] < end):
            at += 1
            count += 1
        segments.append(Segment(index, start, end, count))
    return segments


def encoder_for(info: ClipInfo, codec: str | None = None) -> str:
    """The encoder for a clip: ``codec`` if given, else its codec family's, else libx264."""
    if codec is not None:
        _codec(codec, "w")
        return codec
    for name in _FAMILY_ENCODERS.get(info.codec, ()):
        if _has_codec(name, "w"):
            return name
    return _FALLBACK_ENCODER


def check_encoder(name: str, crf: int = 18) -> None:
    """Refuse (``ConfigError``, one line) an encoder this FFmpeg build does not have, one that
    does not encode video, or one that does not open with the options a segment gives it
    (tried on one small frame)."""
    from parablur.errors import ConfigError

    try:
        codec = av.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        raise ConfigError(f"video-codec: no encoder {name!r} in this FFmpeg build (try libx264, "
                          "libx265, libvpx-vp9 or libsvtav1)") from None
    if codec.type != "video":
        raise ConfigError(f"video-codec: {name!r} is a {codec.type} encoder, not a video one")
    try:
        context = av.CodecContext.create(codec)
        context.width, context.height = 64, 64
        context.pix_fmt = _pix_fmt(codec, "yuv420p")
        context.time_base = Fraction(1, 25)
        context.options = _options(name, crf)
        frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="bgr24")
        context.encode(frame.reformat(format=context.pix_fmt))
        context.encode(None)
    except (av.FFmpegError, ValueError) as exc:
        raise ConfigError(f"video-codec: {name!r} cannot encode the segments "
                          f"({_one_line(exc)}); try libx264, libx265, libvpx-vp9 or libsvtav1") from None


def muxer_refuses(muxer: str, encoder: str) -> str | None:
    """Why the container ``muxer`` cannot hold video from ``encoder``, or None when it can."""
    import io

    try:
        with av.open(io.BytesIO(), "w", format=muxer) as out:
            out.add_stream(encoder)
    except (av.FFmpegError, ValueError) as exc:
        return f"encode: the {muxer} container cannot hold {encoder} video ({_one_line(exc)}); " \
               "choose another --video-codec"
    return None


def _options(name: str, crf: int) -> dict[str, str]:
    """The fixed options of encoder ``name`` with quality ``crf`` (``ENCODER_OPTIONS``)."""
    return {k: v.format(crf=crf) for k, v in ENCODER_OPTIONS.get(name, {"crf": "{crf}"}).items()}


def _has_codec(name: str, mode: str) -> bool:
    """Whether this FFmpeg build has a codec by that name in that mode ("r" or "w")."""
    try:
        av.Codec(name, mode)
    except (av.FFmpegError, ValueError):
        return False
    return True


def _codec(name: str, mode: str) -> av.Codec:
    """A codec of this FFmpeg build, or a MediaError naming it."""
    try:
        return av.Codec(name, mode)
    except (av.FFmpegError, ValueError) as exc:
        raise MediaError(f"no {'encoder' if mode == 'w' else 'decoder'} {name} in this FFmpeg build") from exc


def _pix_fmt(encoder: av.Codec, wanted: str) -> str:
    """The input's pixel format if the encoder takes it, else yuv420p."""
    formats = {f.name for f in encoder.video_formats or ()}
    return wanted if wanted in formats else "yuv420p"


def _frames(source: Source, info: ClipInfo, segment: Segment) -> Iterator[av.VideoFrame]:
    """Decode a segment's frames in pts order, from its start keyframe, one at a time."""
    with _open(source) as container:
        stream = container.streams[info.stream_index]
        stream.thread_count = 1
        wanted = segment.frames
        found = 0
        try:
            container.seek(segment.start_pts, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None or not segment.holds(frame.pts):
                    continue
                yield frame
                found += 1
                if found == wanted:
                    return
        except av.FFmpegError as exc:
            raise MediaError(
                f"{_name(source)}: corrupt or truncated in segment {segment.index} ({_one_line(exc)})"
            ) from exc
        if found != wanted:
            raise MediaError(
                f"{_name(source)}: segment {segment.index} decoded {found} of its {wanted} frames"
                " (corrupt or truncated)"
            )


def encode_segment(
    source: Source,
    info: ClipInfo,
    segment: Segment,
    frame_fn: FrameFn,
    dest: str | os.PathLike[str],
    *,
    codec: str | None = None,
    crf: int = 18,
) -> int:
    """Decode a segment, pass each frame through ``frame_fn``, encode it to ``dest``; return its frames."""
    name = encoder_for(info, codec)
    encoder = _codec(name, "w")
    first_index = info.index_of(segment.start_pts)
    options = _options(name, crf)
    written = 0
    with av.open(os.fspath(dest), "w", format="nut", container_options=_BITEXACT) as out:
        stream = out.add_stream(name, options=options)
        ctx = stream.codec_context
        ctx.width, ctx.height = info.width, info.height
        ctx.pix_fmt = _pix_fmt(encoder, info.pix_fmt)
        ctx.time_base = info.time_base
        stream.time_base = info.time_base
        if info.rate:
            ctx.framerate = info.rate
        ctx.thread_count = 1
        ctx.max_b_frames = 0
        ctx.flags |= av.codec.context.Flags.bitexact
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        for frame in _frames(source, info, segment):
            pts = frame.pts
            seconds = float(pts * info.time_base)
            array = frame_fn(frame.to_ndarray(format="bgr24"), first_index + written, seconds)
            del frame
            new = av.VideoFrame.from_ndarray(np.ascontiguousarray(array, dtype=np.uint8), format="bgr24")
            new.pts = pts
            new.time_base = info.time_base
            for packet in stream.encode(new):
                out.mux(packet)
            written += 1
        for packet in stream.encode():
            out.mux(packet)
    return written


def _video_packets(segment_files: list[str | os.PathLike[str]]) -> Iterator[av.Packet]:
    """The video packets of the segment files in order, each file opened in turn."""
    extradata = None
    for path in segment_files:
        with av.open(os.fspath(path), "r") as container:
            stream = container.streams.video[0]
            if extradata is None:
                extradata = stream.codec_context.extradata
            elif stream.codec_context.extradata != extradata:
                raise MediaError(f"{Path(path).name}: encoded with other parameters than the first segment")
            for packet in container.demux(stream):
                if packet.size:
                    yield packet


def _muxer(source: Source, info: ClipInfo, dest: Path) -> str:
    """The muxer that writes the source's container format (by the source's suffix, else its demuxer)."""
    return muxer_for(os.fspath(source) if isinstance(source, str | os.PathLike) else dest.name, info)


def muxer_for(name: str, info: ClipInfo) -> str:
    """The muxer of a clip named ``name``: its suffix's container, else its demuxer's."""
    suffix = Path(name).suffix.lower()
    if suffix in _MUXERS:
        return _MUXERS[suffix]
    demuxer = info.format_name.split(",")
    if "mp4" in demuxer:
        return "mp4"
    return "matroska" if "matroska" in demuxer else demuxer[0]


def _packet_time(item: tuple[av.stream.Stream, av.Packet]) -> Fraction:
    """A packet's decoding time in seconds, to interleave streams."""
    packet = item[1]
    return packet.dts * packet.time_base


def join(
    source: Source,
    info: ClipInfo,
    segment_files: list[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
) -> None:
    """Write ``dest`` in the source's container: the segments' video by stream copy, the source's audio
    and subtitles packet for packet, the rotation, and no other metadata; ``dest`` appears only when whole."""
    dest = Path(dest)
    if not segment_files:
        raise ValueError("join needs at least one segment file")
    tmp = dest.with_name(f".{dest.name}.partial")
    muxer = _muxer(source, info, dest)
    try:
        with _open(source) as src, av.open(os.fspath(segment_files[0]), "r") as first:
            with av.open(os.fspath(tmp), "w", format=muxer, container_options=_BITEXACT) as out:
                video = out.add_stream_from_template(first.streams.video[0])
                video.time_base = info.time_base
                video.metadata.clear()
                if info.rotation:
                    video.set_display_rotation(info.rotation)
                copied = {}
                for s in src.streams:
                    if s.type in ("audio", "subtitle") and s.index != info.stream_index:
                        o = out.add_stream_from_template(s)
                        o.metadata.clear()
                        if s.language:
                            o.metadata["language"] = s.language
                        copied[s.index] = o
                videos = ((video, p) for p in _video_packets(segment_files))
                others = (
                    (copied[p.stream.index], p)
                    for p in (src.demux(*(src.streams[i] for i in copied)) if copied else ())
                    if p.size and p.dts is not None
                )
                for target, packet in heapq.merge(videos, others, key=_packet_time):
                    packet.stream = target
                    out.mux(packet)
        os.replace(tmp, dest)
    except av.FFmpegError as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"{dest.name}: could not join the segments ({_one_line(exc)})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def compare(reference: Source, candidate: Source) -> str | None:
    """Why ``candidate``'s video frames differ from ``reference``'s (count, timestamps or pixels, as
    decoded in their own pixel format), or None when they are the same, frame for frame."""
    with _open(reference) as a, _open(candidate) as b:
        sa, sb = _video_stream(a, reference), _video_stream(b, candidate)
        sa.thread_count = sb.thread_count = 1
        frames = a.decode(sa)
        others = b.decode(sb)
        index = 0
        try:
            while True:
                fa, fb = next(frames, None), next(others, None)
                if fa is None or fb is None:
                    if fa is fb:
                        return None
                    return f"frame count differs after {index} frames"
                if fa.pts != fb.pts or fa.format.name != fb.format.name:
                    return (f"frame {index}: pts {fb.pts} ({fb.format.name}) against "
                            f"{fa.pts} ({fa.format.name})")
                pa, pb = fa.to_ndarray(), fb.to_ndarray()
                if pa.shape != pb.shape or not np.array_equal(pa, pb):
                    return f"frame {index}: pixels differ"
                index += 1
        except av.FFmpegError as exc:
            return f"frame {index}: does not decode ({_one_line(exc)})"


def decoded_frames(source: Source) -> Iterator[np.ndarray]:
    """A clip's video frames as BGR arrays, decoded one at a time (one thread)."""
    with _open(source) as container:
        stream = _video_stream(container, source)
        stream.thread_count = 1
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="bgr24")
        except av.FFmpegError as exc:
            raise MediaError(f"{_name(source)}: corrupt or truncated ({_one_line(exc)})") from exc
