"""The faces-video generator: clips with real faces, a moving camera, audio, and per-frame true boxes."""

from __future__ import annotations

import json
import tracemalloc

import av
import numpy as np
import pytest

from parablur.config import FaceParams
from parablur.ingestion.face_clips import (
    GOP_SECONDS,
    ClipStopped,
    FaceClip,
    generate_face_clip,
    write_face_clip,
)
from parablur.workloads.face_quality import iou as _iou
from parablur.workloads.faces import detect_faces

FPS = 15
SECONDS = 2


def _decoded(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[FaceClip, dict, object]:
    clip = generate_face_clip(0, 160, 120, seconds=SECONDS, fps=FPS, seed=3, face_min_size=16)
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    return clip, write_face_clip(clip, path), path


def test_file_has_the_frames_size_rate_keyframes_and_audio_asked_for(written):
    clip, truth, path = written
    assert clip.frame_count == FPS * SECONDS and clip.seconds == SECONDS
    with av.open(str(path)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        assert (video.width, video.height) == (160, 120)
        assert video.average_rate == FPS and video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert audio.codec_context.name == "aac" and audio.sample_rate == 48000
        assert float(video.duration * video.time_base) == pytest.approx(SECONDS, abs=0.01)
        assert float(audio.duration * audio.time_base) == pytest.approx(SECONDS, abs=0.05)
        keys = [i for i, p in enumerate(p for p in c.demux(video) if p.size) if p.is_keyframe]
    assert keys == list(range(0, FPS * SECONDS, round(GOP_SECONDS * FPS)))
    frames = _decoded(path)
    assert len(frames) == len(truth["faces"]) == truth["frames"] == FPS * SECONDS
    assert frames[0].shape == (120, 160, 3)
    assert not list(path.parent.glob(".*part"))


def test_a_failed_write_leaves_no_file(written, tmp_path):
    clip = written[0]
    with pytest.raises(av.codec.codec.UnknownCodecError):
        write_face_clip(clip, tmp_path / "x.mp4", codec="no-such-codec")
    assert list(tmp_path.iterdir()) == []


def test_a_stopped_write_ends_at_once_and_leaves_no_file(written, tmp_path):
    asked = []

    def stop() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(ClipStopped, match="stopped at frame 3 of"):
        write_face_clip(written[0], tmp_path / "x.mp4", stop=stop)
    assert list(tmp_path.iterdir()) == []


def test_truth_is_json_ready_and_the_same_as_each_frame_gets(written):
    clip, truth, _ = written
    assert json.loads(json.dumps(truth)) == truth
    assert truth["fps"] == FPS and (truth["width"], truth["height"]) == (160, 120)
    assert truth["faces"] == [[list(b) for b in clip.frame(i)[1]] for i in range(clip.frame_count)]


def test_deterministic_from_seed_and_index(written, tmp_path):
    clip, truth, path = written
    again = generate_face_clip(0, 160, 120, seconds=SECONDS, fps=FPS, seed=3, face_min_size=16)
    assert write_face_clip(again, tmp_path / "again.mp4") == truth
    assert np.array_equal(_decoded(tmp_path / "again.mp4")[0], _decoded(path)[0])
    assert (tmp_path / "again.mp4").read_bytes() == path.read_bytes()  # bitexact, single-threaded x264
    assert np.array_equal(next(again.frames()), next(clip.frames()))
    other = generate_face_clip(1, 160, 120, seconds=SECONDS, fps=FPS, seed=3, face_min_size=16)
    assert not np.array_equal(next(other.frames()), next(clip.frames()))
    reseeded = generate_face_clip(0, 160, 120, seconds=SECONDS, fps=FPS, seed=4, face_min_size=16)
    assert not np.array_equal(next(reseeded.frames()), next(clip.frames()))


def _centres(clip: FaceClip, i: int) -> list[tuple[float, float]]:
    """Every face's centre in frame ``i``'s pixels, unclipped, in the scene's order."""
    matrix = clip._matrix(i)
    return [(x * matrix[0, 0] + matrix[0, 2] + w * matrix[0, 0] / 2,
             y * matrix[1, 1] + matrix[1, 2] + h * matrix[1, 1] / 2) for x, y, w, h in clip._scene_at(i)[1]]


def test_camera_pans_so_boxes_move_and_stay_inside_the_frame():
    for index in range(6):
        clip = generate_face_clip(index, 160, 120, seconds=1, fps=10, face_min_size=16)
        truth = clip.truth()
        assert any(truth) and truth[0] != truth[-1]
        for boxes in truth:
            for x, y, w, h in boxes:
                assert 0 <= x and 0 <= y and w > 0 and h > 0
                assert x + w <= 160 and y + h <= 120
        # Every face moves in the frame, smoothly: a visible distance overall, a few pixels a frame.
        first, last = _centres(clip, 0), _centres(clip, clip.frame_count - 1)
        assert all(np.hypot(a[0] - b[0], a[1] - b[1]) >= 20 for a, b in zip(first, last, strict=True))
        for i in range(1, clip.frame_count):
            steps = [np.hypot(a[0] - b[0], a[1] - b[1])
                     for a, b in zip(_centres(clip, i - 1), _centres(clip, i), strict=True)]
            assert max(steps) < 25


def test_faces_more_than_half_outside_are_dropped_and_partly_outside_are_clipped():
    clipped = dropped = 0
    for index in range(12):
        clip = generate_face_clip(index, 160, 120, seconds=1, fps=10, face_min_size=16)
        for i in range(clip.frame_count):
            matrix = clip._matrix(i)
            z, dx, dy = matrix[0, 0], matrix[0, 2], matrix[1, 2]
            expected = []
            for x, y, w, h in clip._scene_at(i)[1]:
                fx, fy, fw, fh = x * z + dx, y * z + dy, w * z, h * z
                x0, y0, x1, y1 = max(0, fx), max(0, fy), min(160, fx + fw), min(120, fy + fh)
                share = max(0, x1 - x0) * max(0, y1 - y0) / (fw * fh)
                if share < 0.5:
                    dropped += 1
                    continue
                clipped += share < 1
                expected.append((x0, y0, x1 - x0, y1 - y0))
            kept = clip.boxes(i)
            assert len(kept) == len(expected)
            for got, want in zip(kept, expected, strict=True):
                assert got == pytest.approx(want, abs=0.051)
    assert clipped > 0 and dropped > 0


def test_a_face_can_move_on_its_own():
    clip = next(c for c in (generate_face_clip(i, 160, 120, seconds=1, fps=10, face_min_size=16)
                            for i in range(40)) if c.mover is not None)
    first, last = clip._scene_at(0)[1][-1], clip._scene_at(clip.frame_count - 1)[1][-1]
    assert first[:2] != last[:2]  # in the scene itself, not only through the camera


def test_frames_are_made_lazily():
    clip = generate_face_clip(2, 160, 120, seconds=4, fps=25, face_min_size=16)
    frames = clip.frames()
    next(frames)
    tracemalloc.start()
    for _ in range(50):
        next(frames)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 10 * 160 * 120 * 3  # a few frames' worth, not 50


def test_detector_finds_the_faces_at_their_true_boxes(face_model, tmp_path):
    params = FaceParams(model=face_model)
    hits = sampled = boxes = matched = 0
    for index in range(2):
        clip = generate_face_clip(index, 320, 240, seconds=1, fps=10, seed=1, face_min_size=40)
        truth = write_face_clip(clip, tmp_path / f"{index}.mp4")["faces"]
        frames = _decoded(tmp_path / f"{index}.mp4")
        for i in (0, clip.frame_count // 2, clip.frame_count - 1):
            whole = [b for b in truth[i] if b[2] >= 30 and b[3] >= 30]
            if not whole:
                continue
            found = [f.box for f in detect_faces(frames[i], params, face_model)]
            sampled += 1
            hits += any(_iou(t, f) >= 0.3 for t in whole for f in found)
            boxes += len(whole)
            matched += sum(any(_iou(t, f) >= 0.3 for f in found) for t in whole)
    assert sampled >= 4 and hits >= 0.75 * sampled
    assert matched >= 0.8 * boxes  # most faces are found, not only one a frame (measured: 67 of 68)
