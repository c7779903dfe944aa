"""The equality check catches a real mismatch, a missing output and a stray one."""

from pathlib import Path

import cv2
import numpy as np
from conftest import make_images

from parablur.verify import compare_dirs


def test_identical_dirs_pass(tmp_path: Path):
    make_images(tmp_path / "a", 3)
    make_images(tmp_path / "b", 3)
    v = compare_dirs(tmp_path / "a", tmp_path / "b")
    assert v.ok and v.compared == 3 and v.identical == 3


def test_one_changed_pixel_is_caught(tmp_path: Path):
    make_images(tmp_path / "a", 3, suffix=".png")
    make_images(tmp_path / "b", 3, suffix=".png")
    target = tmp_path / "b" / "img_001.png"
    img = cv2.imread(str(target))
    img[5, 7, 1] = np.uint8((int(img[5, 7, 1]) + 1) % 256)
    cv2.imwrite(str(target), img)
    v = compare_dirs(tmp_path / "a", tmp_path / "b")
    assert not v.ok
    assert v.identical == 2
    # 96 x 128 x 3 values, exactly one off by one
    assert v.mismatches == ({"image": "img_001.png", "reason": "1 of 36864 values differ (max |d| 1)"},)


def test_missing_and_extra_outputs_are_caught(tmp_path: Path):
    make_images(tmp_path / "a", 3)
    make_images(tmp_path / "b", 4)
    (tmp_path / "b" / "img_000.jpg").unlink()
    v = compare_dirs(tmp_path / "a", tmp_path / "b")
    reasons = {m["image"]: m["reason"] for m in v.mismatches}
    assert reasons == {"img_000.jpg": "missing output", "img_003.jpg": "output without a sequential twin"}
