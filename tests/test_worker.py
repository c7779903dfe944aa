"""The blur against an independent reference, and one image's path through the workload."""

from __future__ import annotations

import io
import math
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import local_task, make_images
from PIL import Image as PIL

from parablur import blur
from parablur.config import BlurParams, kernel_size
from parablur.worker import Job, decode, process_batch, process_image


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
    result = process_image(local_task(src, dst), Job.blur(BlurParams()))
    assert result.ok and result.error is None
    assert dst.is_file()
    assert all(getattr(result, s) > 0 for s in ("read_s", "decode_s", "blur_s", "encode_s", "write_s"))
    assert not list(dst.parent.glob("*.part")) and not list(dst.parent.glob(".*.part"))


def test_corrupt_image_is_a_recorded_failure_not_a_crash(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    batch = [local_task(p, tmp_path / "out" / p.name) for p in (bad, empty)]
    res = process_batch(batch, Job.blur(BlurParams()))
    assert [r.ok for r in res.images] == [False, False]
    assert "decode" in res.images[0].error
    assert "empty" in res.images[1].error
    assert not (tmp_path / "out" / "bad.jpg").exists()


def test_overlapped_io_gives_the_same_outputs(image_dir: Path, tmp_path: Path):
    srcs = sorted(image_dir.iterdir())
    plain = [local_task(p, tmp_path / "a" / p.name) for p in srcs]
    overlapped = [local_task(p, tmp_path / "b" / p.name) for p in srcs]
    missing = local_task(tmp_path / "gone.jpg", tmp_path / "b" / "gone.jpg")
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


def _photo_jpeg(h: int = 240, w: int = 320, *, progressive: bool = False, seed: int = 5) -> bytes:
    """A real photo-like JPEG: libjpeg through OpenCV (baseline) or Pillow (progressive)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if not progressive:
        return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    buf = io.BytesIO()
    PIL.fromarray(image).save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


def _motion_photo_tail(megabytes: float, seed: int = 1) -> bytes:
    """What a phone appends after the JPEG of a motion photo: an MP4 (here its box header
    and random bytes, which hold 0xFFD9 and 0xFFDA pairs by chance)."""
    body = np.random.default_rng(seed).integers(0, 256, int(megabytes * 2**20), np.uint8).tobytes()
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + body


def _second_scan(jpeg: bytes) -> int:
    """Where a progressive JPEG's second scan (SOS) starts."""
    first = jpeg.find(b"\xff\xda")
    return jpeg.find(b"\xff\xda", first + 2)


@pytest.mark.parametrize("case", ["motion photo", "zero padding", "progressive + motion photo"])
def test_jpeg_with_bytes_after_its_end_decodes_to_the_same_pixels(case: str, tmp_path: Path):
    bare = _photo_jpeg(progressive=case.startswith("progressive"))
    tail = b"\x00" * 16384 if case == "zero padding" else _motion_photo_tail(4)
    if tail[0] != 0:
        assert b"\xff\xd9" in tail and b"\xff\xda" in tail
    image = decode(bare + tail, ".jpg")
    assert image.shape == (240, 320, 3)
    assert np.array_equal(image, decode(bare, ".jpg"))
    src = tmp_path / "in.jpg"
    src.write_bytes(bare + tail)
    result = process_image(local_task(src, tmp_path / "out.jpg"), Job.blur(BlurParams()))
    assert result.ok, result.error


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` with a comment segment (COM) right after its start marker."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


@pytest.mark.parametrize("case", ["cut in its scan", "cut in its scan, then zero padding",
                                  "small, with a comment holding 0xFFD9, cut in its scan",
                                  "progressive, cut between scans", "progressive, cut in a scan"])
def test_truncated_jpeg_is_refused(case: str, tmp_path: Path):
    if case.startswith("progressive"):
        full = _photo_jpeg(progressive=True)
        cut = _second_scan(full) + (0 if "between" in case else 400)
    elif case.startswith("small"):
        full = _with_comment(_photo_jpeg(48, 64), b"edited \xff\xd9 with care")
        cut = (full.find(b"\xff\xda") + len(full)) // 2
    else:
        full = _photo_jpeg()
        cut = (full.find(b"\xff\xda") + len(full)) // 2
    data = full[:cut] + (b"\x00" * 16384 if "padding" in case else b"")
    assert decode(full, ".jpg").size  # the whole file is a valid JPEG
    src = tmp_path / "cut.jpg"
    src.write_bytes(data)
    result = process_image(local_task(src, tmp_path / "out.jpg"), Job.blur(BlurParams()))
    assert not result.ok and "decode: truncated JPEG" in result.error
    assert not (tmp_path / "out.jpg").exists()


def _gif_frame_larger_than_screen(width: int, height: int) -> bytes:
    """A GIF whose first frame (``width`` x ``height``) is larger than its 1x1 screen."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x4c\x01\x00"
    return screen + frame + b";"


@pytest.mark.parametrize("overlap_io", [False, True])
def test_any_exception_from_one_file_is_a_recorded_failure_and_the_batch_goes_on(
        overlap_io: bool, tmp_path: Path):
    # A caller (a notebook, ``python -W error``) that turns warnings into errors: ParaBlur
    # leaves that as it is, so Pillow's decompression-bomb warning, given while reading the
    # header of a GIF (named .png) whose frame declares 95 MP, is raised in the decode stage.
    images = make_images(tmp_path / "in", 2, size=(40, 56))
    odd = tmp_path / "in" / "frame-larger-than-screen.png"
    odd.write_bytes(_gif_frame_larger_than_screen(9500, 10000))
    tasks = [local_task(p, tmp_path / "out" / p.name)
             for p in (images[0], odd, images[1])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = process_batch(tasks, Job.blur(BlurParams(sigma=2, overlap_io=overlap_io)))
    assert [r.ok for r in res.images] == [True, False, True]
    assert res.images[1].error.startswith(
        "decode: PIL.Image.DecompressionBombWarning: Image size (95000000 pixels) exceeds limit")
    assert sorted(p.name for p in (tmp_path / "out").glob("[!.]*")) == [p.name for p in images]
