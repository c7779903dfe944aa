"""The ``--fallback faces`` set: real photos shrunk into mosaic frames, clutter, degradations, truths."""

from __future__ import annotations

import json

import cv2
import numpy as np

from parablur.cli import main
from parablur.config import FaceParams
from parablur.ingestion.face_frames import (
    HELD_OUT_LFW,
    HELD_OUT_SEED,
    JPEG_QUALITY,
    MIN_FACE,
    generate_face_frame,
)
from parablur.ingestion.generate import encode_jpeg
from parablur.workloads import face_quality
from parablur.workloads.faces import detect_faces


def _frames(n: int, size: int, seed: int = 0):
    return [generate_face_frame(i, size, size, seed) for i in range(n)]


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_deterministic_from_seed_and_index():
    a, b = generate_face_frame(3, 700, 500, seed=7), generate_face_frame(3, 700, 500, seed=7)
    assert np.array_equal(a.image, b.image)
    assert (a.faces, a.tags, a.clutter, a.jpeg_quality) == (b.faces, b.tags, b.clutter, b.jpeg_quality)
    assert a.image.shape == (500, 700, 3) and a.image.dtype == np.uint8
    assert not np.array_equal(a.image, generate_face_frame(4, 700, 500, seed=7).image)
    assert not np.array_equal(a.image, generate_face_frame(3, 700, 500, seed=8).image)


def test_truths_lie_inside_the_frame_and_are_never_under_the_smallest_size():
    for frame in _frames(6, 800) + [generate_face_frame(0, 900, 300)]:
        h, w = frame.image.shape[:2]
        assert frame.faces
        for x, y, bw, bh in frame.faces:
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
            assert bh >= MIN_FACE and bw > 0


def test_every_height_band_is_well_filled_over_a_few_frames():
    heights = np.array([b[3] for f in _frames(6, 1000) for b in f.faces])
    bands = [int(((heights >= lo) & (heights < hi)).sum())
             for lo, hi in ((14, 20), (20, 30), (30, 45), (45, 10_000))]
    assert min(bands) >= 10, bands


def test_clutter_has_no_true_face_and_faces_are_degraded_in_every_way():
    frames = _frames(6, 1000)
    assert all(f.clutter for f in frames)
    for f in frames:
        assert not any(_overlap(face, tile) for face in f.faces for tile in f.clutter)
    tags = {t.split(":")[0] for f in frames for face in f.tags for t in face}
    assert {"grace_hopper", "astronaut", "camera", "lfw", "blur", "dark", "occluded"} <= tags
    qualities = {f.jpeg_quality for f in _frames(12, 200)}
    assert len(qualities) > 3 and all(JPEG_QUALITY[0] <= q <= JPEG_QUALITY[1] for q in qualities)


def test_held_out_seeds_show_lfw_faces_the_others_never_show():
    def lfw(seed: int) -> set[int]:
        return {int(t.split(":")[1]) for i in range(3) for face in
                generate_face_frame(i, 800, 800, seed).tags for t in face if t.startswith("lfw:")}

    tuning, held_out = lfw(0) | lfw(1), lfw(HELD_OUT_SEED) | lfw(HELD_OUT_SEED + 1)
    assert tuning and held_out
    assert max(tuning) < 100 - HELD_OUT_LFW <= min(held_out)


def test_true_boxes_sit_on_the_faces_the_detector_sees(face_model):
    """The box convention is YuNet's: on clear faces of 45 px and over, YuNet's boxes match the
    truths closely (a box carried wrongly through crop, flip, scale or shift would not)."""
    params = FaceParams(model=face_model, face_min_size=32)
    overlaps, clear = [], 0
    for frame in _frames(4, 1000, seed=3):
        found = [f.to_dict() for f in detect_faces(frame.image, params, face_model)]
        for box, tags in zip(frame.faces, frame.tags, strict=True):
            if box[3] >= 45 and len(tags) == 1 and tags[0] in ("grace_hopper", "astronaut"):
                clear += 1
                overlaps.append(max((face_quality.iou(f["box"], box) for f in found), default=0.0))
    assert clear >= 5
    assert np.median(overlaps) > 0.75 and min(overlaps) > 0.5, overlaps


def test_fetch_writes_the_frames_at_their_quality_with_their_truths_in_the_manifest(tmp_path):
    folder = tmp_path / "faces"
    assert main(["fetch", "--fallback", "faces", "--num-images", "2", "--width", "640", "--height", "480",
                 "--seed", "5", "--input-dir", str(folder), "--quiet",
                 "--source-url", "http://127.0.0.1:9/x"]) == 0
    entries = {e["file"]: e for e in json.loads((folder / "manifest.json").read_text())["images"]}
    assert sorted(entries) == ["img_0000.jpg", "img_0001.jpg"]
    for i in range(2):
        frame = generate_face_frame(i, 640, 480, seed=5)
        data = (folder / f"img_{i:04d}.jpg").read_bytes()
        assert data == encode_jpeg(frame.image, frame.jpeg_quality)
        assert entries[f"img_{i:04d}.jpg"]["faces"] == [[int(v) for v in b] for b in frame.faces]
        assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
