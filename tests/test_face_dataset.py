"""The scenes of faces-video clips: generated scenes with real faces pasted in, and their true boxes
(``faces.generate_face_image``; the ``--fallback faces`` set is tested in test_face_frames.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from parablur.ingestion.faces import (
    CONTEXT,
    MAX_FACES,
    available_sources,
    generate_face_image,
)
from parablur.ingestion.generate import generate_image
from parablur.workloads import face_quality
from parablur.workloads.faces import detect_faces


def test_sources_are_the_photos_shipped_in_wheels():
    names = [s.name for s in available_sources()]
    assert names[0] == "grace_hopper"  # matplotlib: always there
    assert names[1:] == ["astronaut", "camera"]  # scikit-image, a test dependency
    for source in available_sources():
        assert source.path.is_file()


def test_deterministic_from_seed_and_index():
    a, boxes = generate_face_image(2, 480, 400, seed=5)
    b, same = generate_face_image(2, 480, 400, seed=5)
    assert np.array_equal(a, b) and boxes == same
    assert not np.array_equal(a, generate_face_image(3, 480, 400, seed=5)[0])
    assert not np.array_equal(a, generate_face_image(2, 480, 400, seed=6)[0])
    assert a.shape == (400, 480, 3) and a.dtype == np.uint8


def test_faces_vary_in_size_position_and_count_within_the_rules():
    sizes, counts, centres = [], [], []
    for i in range(30):
        _, boxes = generate_face_image(i, 600, 600, seed=1, face_min_size=32)
        counts.append(len(boxes))
        for x, y, w, h in boxes:
            sizes.append(max(w, h))
            centres.append((x + w / 2, y + h / 2))
            assert 0 <= x and 0 <= y and x + w <= 600 and y + h <= 600
        for (ax, ay, aw, ah), (bx, by, bw, bh) in itertools.combinations(boxes, 2):
            # patches (CONTEXT face sizes wide) never overlap: every true box is a whole face
            gap = np.hypot(ax + aw / 2 - bx - bw / 2, ay + ah / 2 - by - bh / 2)
            assert gap >= CONTEXT * (max(aw, ah) + max(bw, bh)) / 2
    assert 1 <= min(counts) and max(counts) <= MAX_FACES and len(set(counts)) >= 3
    assert min(sizes) >= 31.5 and max(sizes) <= 200.5
    assert min(sizes) < 45 and max(sizes) > 120  # from the minimum size to a third of the frame
    xs, ys = zip(*centres, strict=True)
    assert np.std(xs) > 80 and np.std(ys) > 80


def test_only_the_pasted_patches_differ_from_the_face_free_scene():
    image, boxes = generate_face_image(4, 500, 500, seed=2)
    scene = generate_image(4, 500, 500, seed=2)
    changed = np.any(image != scene, axis=2)
    inside = np.zeros_like(changed)
    yy, xx = np.mgrid[0:500, 0:500]
    for x, y, w, h in boxes:
        radius = CONTEXT * max(w, h) / 2 + 2
        inside |= np.hypot(xx - (x + w / 2), yy - (y + h / 2)) <= radius
        assert changed[int(y + h / 2), int(x + w / 2)]
    assert not changed[~inside].any()


def test_true_boxes_follow_the_faces_through_scale_rotation_and_shift(face_model):
    """The detector, run independently on the composites, lands on the true boxes."""
    from parablur.config import FaceParams

    params = FaceParams(model=face_model)
    overlaps = []
    for i in range(5):
        image, truths = generate_face_image(i, 640, 640, seed=3, face_min_size=48)
        faces = [f.to_dict() for f in detect_faces(image, params, face_model)]
        pairs = face_quality.match(faces, truths)
        overlaps += [face_quality.iou(faces[d]["box"], truths[t]) for d, t in pairs]
    assert len(overlaps) >= 10
    assert np.median(overlaps) > 0.6


def test_one_source_is_enough():
    grace = available_sources()[:1]
    image, boxes = generate_face_image(0, 400, 400, seed=0, sources=grace)
    assert boxes and image.shape == (400, 400, 3)
    with pytest.raises(ValueError, match="no face photo"):
        generate_face_image(0, 400, 400, sources=())


def test_a_frame_too_small_for_the_minimum_face_gets_no_face():
    image, boxes = generate_face_image(0, 64, 64, seed=0, face_min_size=32)
    assert boxes == [] and np.array_equal(image, generate_image(0, 64, 64, seed=0))
