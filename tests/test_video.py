"""parablur.video: probe, plan, encode and join real clips made with PyAV (no mocks)."""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from parablur.errors import ImageError, MediaError
from parablur.video import (
    VIDEO_SUFFIXES,
    ClipInfo,
    encode_segment,
    encoder_for,
    join,
    plan_segments,
    probe,
)

RATE = 25
SECONDS = 2
WIDTH, HEIGHT = 96, 64
GOP = 10
LOCATION = "+48.8584+002.2945/"
ISO6709 = "+48.8584+002.2945+035.000/"
LEAKS = ("location", "make", "model", "com.apple.quicktime.location.ISO6709", "encoder")


def _picture(i: int) -> np.ndarray:
    """A moving pattern: a horizontal ramp sliding right and a green bar sliding down."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    img[:, :, 0] = (np.arange(WIDTH) * 3 + i * 5) % 256
    img[:, :, 2] = (np.arange(HEIGHT)[:, None] * 4) % 256
    row = (i * 2) % (HEIGHT - 8)
    img[row : row + 8, :, 1] = 255
    return img


def make_clip(
    path: Path,
    *,
    codec: str = "libx264",
    video: bool = True,
    audio: bool = True,
    metadata: bool = True,
    rotation: int = 90,
    pts: list[int] | None = None,
) -> Path:
    """Write a small clip: a moving pattern (pts in 1/RATE units), a 440 Hz AAC sine, phone-like metadata."""
    mp4 = path.suffix in (".mp4", ".mov")
    options = {"movflags": "use_metadata_tags"} if mp4 and metadata else {}
    with av.open(str(path), "w", container_options=options) as out:
        if metadata:
            out.metadata.update({"location": LOCATION, "make": "Apple", "model": "iPhone 15"})
            if mp4:
                out.metadata["com.apple.quicktime.location.ISO6709"] = ISO6709
        if video:
            v = out.add_stream(codec, rate=RATE)
            v.width, v.height, v.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            v.codec_context.gop_size = GOP
            if rotation:
                v.set_display_rotation(rotation)
        if audio:
            a = out.add_stream("aac", rate=48000, layout="mono")
        if video:
            for i, stamp in enumerate(pts if pts is not None else range(RATE * SECONDS)):
                frame = av.VideoFrame.from_ndarray(_picture(i), format="bgr24")
                frame.pts, frame.time_base = stamp, Fraction(1, RATE)
                out.mux(v.encode(frame))
            out.mux(v.encode())
        if audio:
            for start in range(0, 48000 * SECONDS, 1024):
                t = np.arange(start, start + 1024) / 48000
                samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 48000, start
                out.mux(a.encode(frame))
            out.mux(a.encode())
    return path


def frames_of(path: Path) -> list[tuple[int, np.ndarray]]:
    """Every decoded video frame of a file: (pts, BGR array)."""
    with av.open(str(path)) as c:
        return [(f.pts, f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]


def packets_of(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    """Every non-empty packet of the first stream of a kind: (pts, bytes)."""
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return [(p.pts, bytes(p)) for p in c.demux(stream) if p.size]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images, in dB."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def identity(array: np.ndarray, index: int, seconds: float) -> np.ndarray:
    """A frame callback that changes nothing."""
    return array


def invert(array: np.ndarray, index: int, seconds: float) -> np.ndarray:
    """A frame callback that inverts every pixel."""
    return 255 - array


def encode_all(source, info: ClipInfo, folder: Path, fn=identity, order=None, codec=None) -> list[Path]:
    """Encode every segment of a clip (in ``order`` if given) and return the files in segment order."""
    folder.mkdir(exist_ok=True)
    segments = plan_segments(info, 0.5)
    for segment in [segments[i] for i in order] if order else segments:
        written = encode_segment(source, info, segment, fn, folder / f"{segment.index}.nut", codec=codec)
        assert written == segment.frames
    return [folder / f"{s.index}.nut" for s in segments]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 2 s 96x64 25 fps h264 (gop 10) + AAC .mp4, rotated 90 degrees, with location/make/model."""
    return make_clip(tmp_path_factory.mktemp("clip") / "phone.mp4")


@pytest.fixture(scope="module")
def info(clip) -> ClipInfo:
    """The probe of the clip."""
    return probe(clip)


def test_video_suffixes():
    assert {".mp4", ".mov", ".mkv", ".webm"} <= VIDEO_SUFFIXES
    assert issubclass(MediaError, ImageError)


def test_probe_reads_frames_keyframes_rate_duration_and_streams(clip, info):
    assert (info.codec, info.width, info.height, info.pix_fmt) == ("h264", WIDTH, HEIGHT, "yuv420p")
    assert info.frames == RATE * SECONDS
    step = int(1 / (RATE * info.time_base))
    assert info.frame_pts == tuple(range(0, RATE * SECONDS * step, step))
    assert info.keyframe_pts[:3] == (0, GOP * step, 2 * GOP * step)  # x264 may add scene-cut keyframes
    assert set(info.keyframe_pts) <= set(info.frame_pts)
    assert info.rate == RATE
    assert info.duration == pytest.approx(SECONDS)
    assert info.rotation == 90
    assert [(s.type, s.codec) for s in info.streams] == [("audio", "aac")]
    assert probe(io.BytesIO(clip.read_bytes())) == info  # a binary file-like works too


def test_plan_segments_covers_every_frame_once_at_keyframes(info):
    for seconds in (0.1, 0.5, 1.0, 5.0):
        segments = plan_segments(info, seconds)
        assert sum(s.frames for s in segments) == info.frames
        assert [s.index for s in segments] == list(range(len(segments)))
        assert segments[0].start_pts == info.frame_pts[0] and segments[-1].end_pts is None
        for s, after in zip(segments, segments[1:], strict=False):
            assert s.end_pts == after.start_pts
            assert (s.end_pts - s.start_pts) * info.time_base >= seconds
        for s in segments:
            assert s.start_pts in info.keyframe_pts
            assert s.frames == sum(1 for p in info.frame_pts if s.holds(p))
    assert len(plan_segments(info, 5.0)) == 1
    with pytest.raises(ValueError):
        plan_segments(info, 0)


def test_identity_segments_join_to_the_source(clip, info, tmp_path):
    out = tmp_path / "out.mp4"
    join(clip, info, encode_all(clip, info, tmp_path / "seg"), out)
    assert not list(tmp_path.glob(".*partial"))
    joined = probe(out)
    assert joined.frame_pts == info.frame_pts and joined.time_base == info.time_base
    assert joined.rotation == 90
    assert [(s.type, s.codec) for s in joined.streams] == [("audio", "aac")]
    assert packets_of(out, "audio") == packets_of(clip, "audio")  # bit for bit
    source, result = frames_of(clip), frames_of(out)
    assert [p for p, _ in result] == [p for p, _ in source]
    assert min(psnr(a, b) for (_, a), (_, b) in zip(source, result, strict=True)) > 35
    # No location or device metadata anywhere: container, streams, raw bytes.
    with av.open(str(out)) as c:
        tags = dict(c.metadata)
        for s in c.streams:
            tags.update(s.metadata)
    assert not [k for k in tags if k.lower().startswith(LEAKS)], tags
    raw = out.read_bytes()
    assert clip.read_bytes().count(b"+48.8584") and b"+48.8584" not in raw
    assert b"iPhone" not in raw and b"Apple" not in raw


def test_inverting_callback_changes_the_frames(clip, info, tmp_path):
    seen = []

    def fn(array, index, seconds):
        seen.append((index, seconds))
        return invert(array, index, seconds)

    out = tmp_path / "inverted.mp4"
    join(clip, info, encode_all(clip, info, tmp_path / "seg", fn), out)
    assert seen == [(i, float(p * info.time_base)) for i, p in enumerate(info.frame_pts)]
    for (_, a), (_, b) in zip(frames_of(clip), frames_of(out), strict=True):
        assert np.abs((255 - a.astype(int)) - b).mean() < 3
        assert np.abs(a.astype(int) - b).mean() > 40


@pytest.mark.parametrize("codec", ["libx264", "libx265", "libvpx-vp9"])
def test_encoding_a_segment_twice_gives_the_same_packets(clip, info, tmp_path, codec):
    segment = plan_segments(info, 0.5)[1]
    one, two = tmp_path / "one.nut", tmp_path / "two.nut"
    encode_segment(clip, info, segment, invert, one, codec=codec)
    encode_segment(clip, info, segment, invert, two, codec=codec)
    assert packets_of(one, "video") == packets_of(two, "video")
    assert one.read_bytes() == two.read_bytes()  # bitexact NUT: the files too


def test_x264_stays_deterministic_after_x265_and_vp9_ran_in_the_process(clip, info, tmp_path):
    segments = plan_segments(info, 0.5)
    for codec in ("libx265", "libvpx-vp9"):
        encode_segment(clip, info, segments[0], invert, tmp_path / f"{codec}.nut", codec=codec)
    seen = {}
    for _ in range(4):
        for segment in segments:
            dest = tmp_path / f"{segment.index}.nut"
            encode_segment(clip, info, segment, invert, dest, codec="libx264")
            seen.setdefault(segment.index, set()).add(dest.read_bytes())
    assert all(len(files) == 1 for files in seen.values())


def _encode_in_child(clip: str, segment_index: int, dest: str) -> None:
    """Encode one segment in a spawned process."""
    info = probe(clip)
    encode_segment(clip, info, plan_segments(info, 0.5)[segment_index], invert, dest)


@pytest.mark.slow
def test_a_segment_encoded_in_another_process_is_identical(clip, info, tmp_path):
    here, there = tmp_path / "here.nut", tmp_path / "there.nut"
    encode_segment(clip, info, plan_segments(info, 0.5)[1], invert, here)
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        pool.submit(_encode_in_child, str(clip), 1, str(there)).result(timeout=120)
    assert packets_of(here, "video") == packets_of(there, "video")


def test_segment_order_does_not_change_the_joined_frames(clip, info, tmp_path):
    n = len(plan_segments(info, 0.5))
    forward = encode_all(clip, info, tmp_path / "forward", invert)
    backward = encode_all(clip, info, tmp_path / "backward", invert, order=list(reversed(range(n))))
    join(clip, info, forward, tmp_path / "a.mp4")
    join(clip, info, backward, tmp_path / "b.mp4")
    a, b = frames_of(tmp_path / "a.mp4"), frames_of(tmp_path / "b.mp4")
    assert len(a) == info.frames
    assert all(pa == pb and np.array_equal(fa, fb) for (pa, fa), (pb, fb) in zip(a, b, strict=True))
    assert packets_of(tmp_path / "a.mp4", "video") == packets_of(tmp_path / "b.mp4", "video")


def test_vp9_mkv_with_variable_frame_rate_keeps_its_timestamps(tmp_path):
    pts = [0, 1, 2, 4, 5, 8, 9, 10, 13, 14, 15, 16, 20, 21, 22, 25, 26, 30, 31, 32, 35, 38, 40, 41]
    clip = make_clip(tmp_path / "vfr.mkv", codec="libvpx-vp9", pts=pts, rotation=0)
    info = probe(clip)
    assert info.codec == "vp9" and info.frames == len(pts) and encoder_for(info) == "libvpx-vp9"
    out = tmp_path / "out.mkv"
    join(clip, info, encode_all(clip, info, tmp_path / "seg"), out)
    joined = probe(out)
    assert joined.codec == "vp9" and joined.frame_pts == info.frame_pts
    assert packets_of(out, "audio") == packets_of(clip, "audio")
    with av.open(str(out)) as c:
        assert "location" not in c.metadata and "make" not in c.metadata
    assert b"+48.8584" not in out.read_bytes()


def test_join_refuses_segments_encoded_with_other_parameters(clip, info, tmp_path):
    segments = plan_segments(info, 0.5)
    first, second = tmp_path / "0.nut", tmp_path / "1.nut"
    encode_segment(clip, info, segments[0], identity, first, codec="libx264")
    encode_segment(clip, info, segments[1], identity, second, codec="libx265")
    with pytest.raises(MediaError, match="other parameters"):
        join(clip, info, [first, second], tmp_path / "out.mp4")
    assert not list(tmp_path.glob("*out.mp4*"))


def _one_line_media_error(path: Path) -> str:
    """The message of the MediaError that probing, else encoding, the file raises."""
    with pytest.raises(MediaError) as caught:
        info = probe(path)
        for segment in plan_segments(info, 0.5):
            encode_segment(path, info, segment, identity, path.with_suffix(f".{segment.index}.nut"))
    message = str(caught.value)
    assert "\n" not in message and path.name in message
    return message


def test_bad_inputs_raise_one_line_media_errors(clip, tmp_path):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    _one_line_media_error(truncated)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    assert "not a readable media file" in _one_line_media_error(text)
    audio_only = make_clip(tmp_path / "song.mp4", video=False)
    assert "no video stream" in _one_line_media_error(audio_only)
