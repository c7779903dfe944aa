"""The blur against an independent reference, and one image's path through the workload."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from parablur.config import BlurParams, kernel_size
from parablur.workload import ImageTask, Job, blur, process_batch, process_image


def reference_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """An explicit (6*sigma+1)^2 Gaussian kernel built from the formula, applied by filter2D."""
    k = 2 * math.ceil(3 * sigma) + 1
    x = np.arange(k) - (k - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    g /= g.sum()
    kernel2d = np.outer(g, g)
    out = cv2.filter2D(image.astype(np.float64), -1, kernel2d, borderType=cv2.BORDER_REFLECT_101)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def test_kernel_side_is_six_sigma_plus_one():
    assert kernel_size(10) == 61
    assert BlurParams().kernel == 61
    assert kernel_size(1.5) == 11


@pytest.mark.parametrize("sigma", [10.0, 3.0])
def test_blur_matches_explicit_kernel_reference(sigma):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(150, 170, 3), dtype=np.uint8)
    ours = blur(image, BlurParams(sigma=sigma))
    ref = reference_blur(image, sigma)
    assert ours.shape == image.shape and ours.dtype == np.uint8
    # OpenCV's 8-bit path rounds in fixed point after each separable pass: a grey
    # level of difference is common, two are rare, more would be a different filter.
    diff = np.abs(ours.astype(int) - ref)
    assert int(diff.max()) <= 2
    assert float(diff.mean()) < 0.3
    assert float((diff > 1).mean()) < 1e-3
    # and it really blurs: neighbouring pixels become close
    roughness = np.abs(np.diff(image.astype(int), axis=1)).mean()
    assert np.abs(np.diff(ours.astype(int), axis=1)).mean() < roughness / 5


def test_blur_equals_the_study_call_and_is_pure():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(80, 90, 3), dtype=np.uint8)
    before = image.copy()
    assert np.array_equal(blur(image, BlurParams()), cv2.GaussianBlur(image, (0, 0), 10))
    assert np.array_equal(image, before)


def test_passes_apply_the_blur_repeatedly():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    once = blur(image, BlurParams(sigma=2))
    assert np.array_equal(blur(image, BlurParams(sigma=2, passes=2)), blur(once, BlurParams(sigma=2)))


def test_process_image_writes_output_and_times_each_stage(image_dir: Path, tmp_path: Path):
    src = sorted(image_dir.iterdir())[0]
    dst = tmp_path / "out" / src.name
    result = process_image(ImageTask(src.name, str(src), str(dst)), Job.blur(BlurParams()))
    assert result.ok and result.error is None
    assert dst.is_file()
    assert all(getattr(result, s) > 0 for s in ("read_s", "decode_s", "blur_s", "encode_s", "write_s"))
    assert not [p for p in dst.parent.iterdir() if p.name.startswith(".")]


def test_corrupt_image_is_a_recorded_failure_not_a_crash(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    batch = [ImageTask(p.name, str(p), str(tmp_path / "out" / p.name)) for p in (bad, empty)]
    res = process_batch(batch, Job.blur(BlurParams()))
    assert [r.ok for r in res.images] == [False, False]
    assert "decode" in res.images[0].error
    assert "empty" in res.images[1].error
    assert not (tmp_path / "out" / "bad.jpg").exists()


def test_overlapped_io_gives_the_same_outputs(image_dir: Path, tmp_path: Path):
    srcs = sorted(image_dir.iterdir())
    plain = [ImageTask(p.name, str(p), str(tmp_path / "a" / p.name)) for p in srcs]
    overlapped = [ImageTask(p.name, str(p), str(tmp_path / "b" / p.name)) for p in srcs]
    missing = ImageTask("gone.jpg", str(tmp_path / "gone.jpg"), str(tmp_path / "b" / "gone.jpg"))
    res_a = process_batch(plain, Job.blur(BlurParams(sigma=3)))
    res_b = process_batch([*overlapped[:3], missing, *overlapped[3:]],
                          Job.blur(BlurParams(sigma=3, overlap_io=True)))
    assert all(r.ok for r in res_a.images)
    assert [r.name for r in res_b.images] == [*(p.name for p in srcs[:3]), "gone.jpg",
                                              *(p.name for p in srcs[3:])]
    assert [r.ok for r in res_b.images].count(False) == 1
    assert "read" in next(r.error for r in res_b.images if not r.ok)
    for p in srcs:
        assert (tmp_path / "a" / p.name).read_bytes() == (tmp_path / "b" / p.name).read_bytes()
