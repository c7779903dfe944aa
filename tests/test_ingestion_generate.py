"""Generated stand-in images: deterministic, decodable, and the size of real photos."""

import cv2
import numpy as np
import pytest

from parablur.ingestion import encode_jpeg, generate_image


def test_scene_is_deterministic_per_seed_and_index():
    a = generate_image(3, 128, 96, seed=7)
    assert a.shape == (96, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, generate_image(3, 128, 96, seed=7))
    assert not np.array_equal(a, generate_image(4, 128, 96, seed=7))
    assert not np.array_equal(a, generate_image(3, 128, 96, seed=8))


def test_noise_is_deterministic_and_different_from_scene():
    a = generate_image(1, 64, 64, seed=0, kind="noise")
    assert np.array_equal(a, generate_image(1, 64, 64, seed=0, kind="noise"))
    assert not np.array_equal(a, generate_image(2, 64, 64, seed=0, kind="noise"))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        generate_image(0, 64, 64, kind="plasma")


def test_full_size_scene_jpeg_is_photo_sized_and_noise_is_bigger():
    scene = encode_jpeg(generate_image(0, 2000, 2000, seed=0))
    noise = encode_jpeg(generate_image(0, 2000, 2000, seed=0, kind="noise"))
    assert 500_000 < len(scene) < 3_000_000
    assert len(noise) > len(scene)
    decoded = cv2.imdecode(np.frombuffer(scene, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (2000, 2000, 3)
