"""anonymize_segment: a face clip cut into segments, each anonymized on its own, then joined."""

from __future__ import annotations

import time
from collections.abc import Iterator

import av
import numpy as np
import pytest

from parablur import video
from parablur.config import FaceParams
from parablur.ingestion.face_clips import generate_face_clip, write_face_clip
from parablur.workloads.face_quality import exposed_face_frames
from parablur.workloads.tracking import required_overlap
from parablur.workloads.video_faces import SegmentRecord, anonymize_segment, max_fps, window

W, H, SECONDS, FPS = 320, 240, 2.0, 12
PARAMS = FaceParams(face_min_size=32)
MIN_BOX = 30  # true boxes at least this long (longer side) are checked
MIN_DIFF = 8.0  # a hidden box's mean absolute difference to the source, at least


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2 s, 12 fps, 320x240 face clip with keyframes every 9 frames (so 3 segments of 0.5+ s)."""
    faces = generate_face_clip(1, W, H, seconds=SECONDS, fps=FPS, seed=5, face_min_size=40)
    path = tmp_path_factory.mktemp("vf") / "clip.mp4"
    manifest = write_face_clip(faces, path, gop_s=0.75)
    info = video.probe(path)
    return path, info, manifest


def _decode(path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="bgr24")


def _run(clip, tmp_path, model, detect_every: int) -> tuple[object, list[SegmentRecord], float]:
    path, info, _ = clip
    segments = video.plan_segments(info, 0.5)
    files, records = [], []
    started = time.perf_counter()
    for seg in segments:
        dest = tmp_path / f"seg{seg.index}{video.SEGMENT_SUFFIX}"
        records.append(anonymize_segment(path, info, seg, dest, params=PARAMS, model=model,
                                         detect_every=detect_every))
        files.append(dest)
    out = tmp_path / "out.mp4"
    video.join(path, info, files, out)
    return out, records, (time.perf_counter() - started) / info.frames


def hidden_fraction(source, output, manifest) -> tuple[float, int, float, int]:
    """The fraction of true boxes (>= MIN_BOX) whose region differs from the source by > MIN_DIFF,
    and their count; then the same for the boxes that do not touch the frame's edge (whole faces)."""
    seen = exposed_face_frames(_decode(source), _decode(output), manifest["faces"], min_box=MIN_BOX,
                               min_diff=MIN_DIFF)
    assert seen.frames == len(manifest["faces"])
    return (1 - (seen.exposed_fraction or 0.0), seen.total, 1 - (seen.inner_exposed_fraction or 0.0),
            seen.inner_total)


def test_window_covers_the_overlap_clamped(clip):
    _, info, _ = clip
    segments = video.plan_segments(info, 0.5)
    assert len(segments) == 3
    overlap = required_overlap(max_fps(info))
    assert max_fps(info) == pytest.approx(FPS)
    first, last, lo, hi = window(info, segments[1], overlap)
    assert (first, last) == (9, 17)
    assert (lo, hi) == (max(0, 9 - overlap), min(info.frames - 1, 17 + overlap))
    assert window(info, segments[0], overlap)[2] == 0
    assert window(info, segments[-1], overlap)[3] == info.frames - 1


def test_detect_every_must_be_positive(clip, tmp_path, face_model):
    path, info, _ = clip
    with pytest.raises(ValueError, match="detect_every"):
        anonymize_segment(path, info, video.plan_segments(info, 0.5)[0], tmp_path / "x.nut",
                          params=PARAMS, model=face_model, detect_every=0)


def test_segments_hide_the_faces(clip, tmp_path, face_model, capsys):
    path, info, manifest = clip
    out, records, per_frame = _run(clip, tmp_path, face_model, 1)
    # (a) same frames, audio kept
    after = video.probe(out)
    assert after.frames == info.frames
    assert [s.type for s in after.streams] == ["audio"]
    assert sum(r.frames for r in records) == info.frames
    assert all(r.detected_frames == r.window[1] - r.window[0] + 1 for r in records)
    # records: one per frame with faces, in the segment, well-formed
    for rec, seg in zip(records, video.plan_segments(info, 0.5), strict=True):
        first = info.frame_pts.index(seg.start_pts)
        for entry in rec.faces:
            assert first <= entry["frame"] < first + seg.frames
            seconds = float(info.frame_pts[entry["frame"]] * info.time_base)
            assert entry["pts"] == pytest.approx(seconds, abs=1e-6)
            for face in entry["faces"]:
                assert set(face) == {"box", "score", "track", "tracked"} and len(face["box"]) == 4
    # (b) the true faces are hidden
    fraction, total, inner_fraction, inner = hidden_fraction(path, out, manifest)
    with capsys.disabled():
        print(f"\ndetect_every=1: hidden {fraction:.3f} of {total} true boxes ({inner_fraction:.3f} of the"
              f" {inner} off the frame's edge), {per_frame * 1000:.0f} ms/frame")
    assert total > 0
    # Measured 1.000 (65 of 65). Before the edge handling 0.938: the 4 misses were faces cut by
    # the frame's edge, which YuNet did not find; the mirrored padding finds them (faces.EDGE_PAD).
    assert fraction == 1.0
    assert inner_fraction == 1.0


def test_detect_every_3_still_hides(clip, tmp_path, face_model, capsys):
    path, info, manifest = clip
    out, records, per_frame = _run(clip, tmp_path, face_model, 3)
    assert video.probe(out).frames == info.frames
    assert any(face["tracked"] for rec in records for entry in rec.faces for face in entry["faces"])
    fraction, total, inner_fraction, inner = hidden_fraction(path, out, manifest)
    with capsys.disabled():
        print(f"\ndetect_every=3: hidden {fraction:.3f} of {total} true boxes ({inner_fraction:.3f} of the"
              f" {inner} off the frame's edge), {per_frame * 1000:.0f} ms/frame")
    # Measured 1.000. Before the edge handling 0.908 (the edge-cut faces, as with detect_every=1,
    # plus a corner face at a track's end); with the padding alone 0.969, with the tracking of
    # entering and leaving faces alone 0.954.
    assert fraction == 1.0
    assert inner_fraction == 1.0


def test_same_segment_twice_gives_the_same_bytes(clip, tmp_path, face_model):
    path, info, _ = clip
    seg = video.plan_segments(info, 0.5)[1]
    a, b = tmp_path / "a.nut", tmp_path / "b.nut"
    ra = anonymize_segment(path, info, seg, a, params=PARAMS, model=face_model)
    rb = anonymize_segment(path, info, seg, b, params=PARAMS, model=face_model)
    assert a.read_bytes() == b.read_bytes()
    assert ra.faces == rb.faces and ra.frames == seg.frames == 9


def test_segment_masks_equal_a_one_segment_run(clip, tmp_path, face_model):
    """The masks (boxes and tracked flags, not the segment-local ids) do not depend on the cuts."""
    path, info, _ = clip
    (whole,) = video.plan_segments(info, 100.0)
    one = anonymize_segment(path, info, whole, tmp_path / "all.nut", params=PARAMS, model=face_model)
    cut = [anonymize_segment(path, info, seg, tmp_path / f"s{seg.index}.nut", params=PARAMS, model=face_model)
           for seg in video.plan_segments(info, 0.5)]

    def masks(entries):
        return {e["frame"]: sorted((f["box"], f["tracked"]) for f in e["faces"]) for e in entries}

    assert masks(one.faces) == masks([e for rec in cut for e in rec.faces])
    assert one.frames == info.frames and one.window == (0, info.frames - 1)
