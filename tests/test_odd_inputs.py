"""Odd inputs are processed correctly or reported with a reason; the rest is processed."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_images
from ingestion_support import png_bomb
from PIL import Image as PIL

from parablur import cli
from parablur.config import BlurParams, RunConfig
from parablur.imageinfo import image_size
from parablur.pipeline import anonymize
from parablur.verify import compare_dirs


def _photo(h: int, w: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    small = rng.integers(0, top, size=(h // 8 + 1, w // 8 + 1, channels)).astype(dtype)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return img if channels > 1 else img.reshape(h, w)


def _png_header_only(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def _jpeg_bytes(rgb: np.ndarray, mode: str = "RGB", exif_orientation: int | None = None) -> bytes:
    im = PIL.fromarray(rgb).convert(mode)
    buf = io.BytesIO()
    kw = {}
    if exif_orientation:
        exif = PIL.Exif()
        exif[0x0112] = exif_orientation
        kw["exif"] = exif.tobytes()
    im.save(buf, "JPEG", quality=95, **kw)
    return buf.getvalue()


@pytest.fixture
def odd_dir(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    make_images(d, 2, size=(40, 56))
    make_images(d / "nested" / "deeper", 2, size=(48, 40), seed=1, suffix=".png")
    good = _photo(40, 60)
    (d / "empty.jpg").write_bytes(b"")
    ok, buf = cv2.imencode(".jpg", good)
    (d / "truncated.jpg").write_bytes(buf.tobytes()[: len(buf) // 2])
    (d / "text.jpg").write_text("this is not an image\n")
    (d / "huge.png").write_bytes(png_bomb(20_000, 20_000))  # 400 MP from its header, 100 bytes
    (d / "huge-header-only.png").write_bytes(_png_header_only(20_000, 20_000))
    assert cv2.imwrite(str(d / "alpha.png"), _photo(40, 60, 4, seed=2))
    assert cv2.imwrite(str(d / "deep.png"), _photo(40, 60, 3, np.uint16, seed=3))
    assert cv2.imwrite(str(d / "gray.png"), _photo(40, 60, 1, seed=4))
    assert cv2.imwrite(str(d / "gray.jpg"), _photo(40, 60, 1, seed=5))
    (d / "cmyk.jpg").write_bytes(_jpeg_bytes(good[:, :, ::-1].copy(), "CMYK"))
    (d / "exif-rotated.jpg").write_bytes(_jpeg_bytes(good[:, :, ::-1].copy(), exif_orientation=6))
    # A phone's motion photo (the JPEG, then its video) and a JPEG with trailing padding.
    video = np.random.default_rng(7).integers(0, 256, 2**20, np.uint8).tobytes()
    (d / "motion-photo.jpg").write_bytes(buf.tobytes() + b"\x00\x00\x00\x18ftypmp42" + video)
    (d / "padded.jpg").write_bytes(buf.tobytes() + b"\x00" * 8192)
    # Not a format whose header ParaBlur reads (a PPM named .png): its size is unknown.
    (d / "ppm-named.png").write_bytes(b"P6 60 40 255\n" + good.tobytes())
    assert cv2.imwrite(str(d / "spaces and é ü 名前.png"), _photo(32, 32, seed=6))
    return d


BROKEN = {"empty.jpg": "empty file", "truncated.jpg": "truncated JPEG",
          "text.jpg": "not a recognised image format", "huge.png": "over the cap",
          "huge-header-only.png": "unreadable or truncated PNG header",
          "ppm-named.png": "not a recognised image format"}


@pytest.mark.slow
def test_odd_inputs_are_processed_or_reported(odd_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = cli.main(["run", "--input-dir", str(odd_dir), "--output-dir", str(out), "--quiet",
                   "--summary-json", str(tmp_path / "s.json")])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert rc == 1
    assert {f["image"]: f["reason"] for f in summary["failures"]}.keys() == BROKEN.keys()
    for f in summary["failures"]:
        assert BROKEN[f["image"]] in f["reason"], f
    assert summary["ok"] == summary["images"] - len(BROKEN) == 13

    seq = out / "sequential"

    def load(name: str) -> np.ndarray:
        return cv2.imdecode(np.fromfile(seq / name, np.uint8), cv2.IMREAD_UNCHANGED)

    assert load("alpha.png").shape == (40, 60, 4)
    assert load("deep.png").dtype == np.uint16
    assert load("gray.png").ndim == 2 and load("gray.jpg").ndim == 2
    assert load("cmyk.jpg").shape == (40, 60, 3)
    assert load("exif-rotated.jpg").shape == (60, 40, 3)  # orientation applied
    # The same JPEG whatever follows it, and the same as its bare bytes would give.
    assert np.array_equal(load("motion-photo.jpg"), load("padded.jpg"))
    assert load("motion-photo.jpg").shape == (40, 60, 3)
    assert load("spaces and é ü 名前.png").shape == (32, 32, 3)
    assert (seq / "nested" / "deeper" / "img_001.png").is_file()
    for name in BROKEN:
        assert not (seq / name).exists()

    # Parallel workers decide the same way, image by image.
    assert cli.main(["run", "--input-dir", str(odd_dir), "--output-dir", str(out), "--quiet",
                     "--executor", "processes", "--workers", "2", "--batch-size", "3"]) == 1
    assert compare_dirs(seq, out / "processes").ok


def test_pixel_cap_rejects_from_the_header(tmp_path: Path) -> None:
    make_images(tmp_path / "in", 2, size=(64, 64))
    summary = anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                  blur=BlurParams(max_pixels=4000)))
    assert summary.failed == 2 and "64x64 is 4096 pixels, over the cap of 4000" in \
        summary.failures[0]["reason"]


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp", ".tiff",
                                    ".gif", "progressive.jpg"])
def test_header_dimensions(suffix: str) -> None:
    img = _photo(23, 37)
    if suffix in (".gif", "progressive.jpg"):
        buf = io.BytesIO()
        if suffix == ".gif":
            PIL.fromarray(img).save(buf, "GIF")
        else:
            PIL.fromarray(img).save(buf, "JPEG", progressive=True)
        data = buf.getvalue()
    else:
        ok, enc = cv2.imencode(suffix, img)
        assert ok
        data = enc.tobytes()
    assert image_size(data) == (37, 23)
    assert image_size(b"not an image") is None
