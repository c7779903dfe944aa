"""Small faces in large frames at the default settings, clutter without faces, and CenterFace's model."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from parablur.config import FaceParams
from parablur.errors import ModelError
from parablur.ingestion.faces import available_sources
from parablur.models import CENTERFACE_MODEL, find_model
from parablur.workloads import face_quality
from parablur.workloads import faces as F

CLUTTER = ("chelsea.png", "coffee.png", "coins.png", "rocket.jpg", "clock_motion.png", "gravel.png",
           "text.png", "motorcycle_left.png", "horse.png")


@pytest.fixture
def params(face_model, centerface_model) -> FaceParams:
    return FaceParams(model=face_model, centerface_model=centerface_model)


def clutter(size: int) -> np.ndarray:
    """A size x size collage of face-free photos from scikit-image's wheel (a cat, coins, a clock...)."""
    data = Path(importlib.util.find_spec("skimage").origin).parent / "data"
    photos = [cv2.imread(str(data / name)) for name in CLUTTER]
    cell = size // 3
    canvas = np.zeros((size, size, 3), np.uint8)
    for i, photo in enumerate(photos):
        y, x = divmod(i, 3)
        canvas[y * cell:(y + 1) * cell, x * cell:(x + 1) * cell] = cv2.resize(photo, (cell, cell))
    return canvas


def small_faces_frame(heights: tuple[int, ...]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A 2000x2000 clutter frame with each face photo shrunk whole (the face in its context) so
    that its face is each of ``heights`` px tall; the true boxes."""
    frame = clutter(2000)
    truths = []
    spots = iter((x, y) for y in range(100, 1700, 400) for x in range(100, 1700, 400))
    for height in heights:
        for source in available_sources():
            photo = cv2.imread(str(source.path))
            k = height / source.box[3]
            small = cv2.resize(photo, (round(photo.shape[1] * k), round(photo.shape[0] * k)),
                               interpolation=cv2.INTER_AREA)
            x, y = next(spots)
            frame[y:y + small.shape[0], x:x + small.shape[1]] = small
            bx, by, bw, bh = source.box
            truths.append((round(x + bx * k), round(y + by * k), round(bw * k), round(bh * k)))
    return frame, truths


def test_faces_16_to_18_px_tall_in_a_2000_px_frame_are_found_at_the_defaults(params):
    frame, truths = small_faces_frame((16, 17, 18))
    assert len(truths) == 9
    found = F.detect_faces(frame, params, params.model)
    quality = face_quality.score_image([f.to_dict() for f in found], truths)
    # Measured: 7 of 9 (the cameraman's half-profile at 16 px and Grace Hopper at 18 px on the
    # coins are missed), no false positive; YuNet alone finds the same 7 with 5 false positives,
    # and the former defaults (YuNet alone, faces from 32 px) 1 of 9.
    assert quality.found >= 7 and quality.false_positives <= 1, quality
    assert "close-up" in {f.look for f in found}
    old = F.detect_faces(frame, replace(params, detector="yunet", face_min_size=32), params.model)
    assert face_quality.score_image([f.to_dict() for f in old], truths).found <= 3


def test_clutter_gives_no_face(params):
    """A cat's face, coins, a clock, text, gravel: no face at the defaults, nor with CenterFace alone."""
    frame = clutter(2000)
    assert F.detect_faces(frame, params, params.model) == []
    assert len(F.detect_faces(frame, replace(params, detector="centerface"), params.model)) <= 1


def test_centerface_alone_finds_faces_and_says_so(params):
    frame, truths = small_faces_frame((24, 40))
    found = F.detect_faces(frame, replace(params, detector="centerface"), params.model)
    assert {f.look for f in found} == {"centerface"}
    quality = face_quality.score_image([f.to_dict() for f in found], truths)
    assert quality.found >= quality.faces - 1 and quality.false_positives <= 1, quality


def test_the_centerface_model_is_pinned_by_its_sha256(centerface_model, face_model, tmp_path):
    assert find_model(centerface_model, spec=CENTERFACE_MODEL, pip_spec=None, url=None) == centerface_model
    with pytest.raises(ModelError, match="sha256"):
        find_model(face_model, spec=CENTERFACE_MODEL, pip_spec=None, url=None)
    with pytest.raises(ModelError, match="--centerface-model"):
        find_model(cache=tmp_path, spec=CENTERFACE_MODEL, pip_spec=None, url=None)
