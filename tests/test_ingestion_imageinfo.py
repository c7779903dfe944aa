"""Header-only sniffing and size reading (Pillow's parsers), and validation of bodies."""

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from ingestion_support import png_bomb
from PIL import Image as PIL

from parablur.ceiling import ceiling_shape
from parablur.errors import ImageError, ValidationError
from parablur.imageinfo import (
    HeaderError,
    file_image_size,
    header_size,
    image_size,
    read_size,
    sniff_format,
)
from parablur.ingestion.validation import EXTENSIONS, validate_image
from parablur.worker import check_header


def _photo(h: int, w: int) -> np.ndarray:
    small = np.random.default_rng(4).integers(0, 256, size=(h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _pil_bytes(image: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(image[:, :, ::-1]).save(buf, fmt, **options)
    return buf.getvalue()


def _encoded(kind: str, image: np.ndarray) -> bytes:
    """``image`` encoded as ``kind``: by OpenCV (as ParaBlur writes), or by Pillow."""
    if kind.startswith("."):
        ok, buf = cv2.imencode(kind, image)
        assert ok
        return buf.tobytes()
    fmt, _, variant = kind.partition(" ")
    options = {"progressive": {"progressive": True}, "lossless": {"lossless": True},
               "rgba": {}, "": {}}[variant]
    if variant == "rgba":
        image = np.dstack([image, np.full(image.shape[:2], 200, np.uint8)])  # VP8X with alpha
        buf = io.BytesIO()
        PIL.fromarray(image, "RGBA").save(buf, fmt)
        return buf.getvalue()
    return _pil_bytes(image, fmt, **options)


@pytest.mark.parametrize("kind,fmt", [
    (".jpg", "jpeg"), ("JPEG progressive", "jpeg"), (".png", "png"), (".bmp", "bmp"),
    (".webp", "webp"), ("WEBP lossless", "webp"), ("WEBP rgba", "webp"), (".tiff", "tiff"),
    ("TIFF", "tiff"), ("GIF", "gif")])
def test_header_size_of_each_format_from_bytes_and_from_a_file(kind: str, fmt: str, tmp_path: Path):
    data = _encoded(kind, _photo(37, 53))
    assert sniff_format(data) == fmt
    assert header_size(fmt, data) == image_size(data) == read_size(data) == (53, 37)
    path = tmp_path / "image.bin"
    path.write_bytes(data)
    assert file_image_size(path) == read_size(path) == (53, 37)
    if fmt in EXTENSIONS:  # the formats a download may be
        assert validate_image(data, 10_000)[1].shape[:2] == (37, 53)


def test_exif_rotated_jpeg_reports_its_stored_size():
    # Stored 53 wide and 37 high with EXIF orientation 6 (rotate 90): the header gives the
    # stored size, while the decoder applies the rotation; the pixel count is the same.
    exif = PIL.Exif()
    exif[0x0112] = 6
    data = _pil_bytes(_photo(37, 53), "JPEG", exif=exif.tobytes())
    assert read_size(data) == (53, 37)
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (53, 37, 3)


def test_size_of_a_jpeg_whose_metadata_is_larger_than_64_kib(tmp_path: Path):
    # Phones write large ICC profiles and XMP before the frame header; the size is still read
    # from a file (the auto batch size and the ceiling's image shape depend on it).
    data = _pil_bytes(_photo(90, 120), "JPEG", icc_profile=bytes(range(256)) * 800)  # 200 KiB
    assert data.find(b"\xff\xc0") > 1 << 16
    path = tmp_path / "big-metadata.jpg"
    path.write_bytes(data)
    assert file_image_size(path) == (120, 90)
    assert ceiling_shape(file_image_size(path)) == (90, 120, 3)
    assert ceiling_shape(None) == (2000, 2000, 3)


def test_bomb_png_is_refused_from_its_header_without_touching_pillows_settings():
    bomb = png_bomb(30000, 30000)  # a complete 100-byte PNG whose header declares 900 MP
    assert len(bomb) < 200 and read_size(bomb) == (30000, 30000)
    limit = PIL.MAX_IMAGE_PIXELS
    filters = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageError, match="30000x30000 is 900000000 pixels, over the cap"):
            check_header(bomb, 100_000_000)
        with pytest.raises(ValidationError, match="30000x30000"):
            validate_image(bomb, 100_000_000)
    assert caught == []  # Pillow's own bomb warning (above 89 MP) is not triggered either
    assert PIL.MAX_IMAGE_PIXELS == limit and warnings.filters == filters


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on a cut TIFF
@pytest.mark.parametrize("body", [
    b"", b"\x00" * 64, b"<!DOCTYPE html><html>rate limited</html>", b"P6 60 40 255\n" + bytes(7200),
    b"\xff\xd8\xff\xe0" + b"\x00" * 40, b"\x89PNG\r\n\x1a\n" + b"\xff" * 40, b"BM" + b"\xff" * 60,
    b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 40, b"II*\x00" + b"\xff" * 60, b"GIF89a"])
def test_garbage_has_no_size_and_is_refused_without_an_exception(body: bytes):
    assert image_size(body) is None
    with pytest.raises(HeaderError):
        read_size(body)
    with pytest.raises(ImageError):
        check_header(body, 100_000_000)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on a cut TIFF
@pytest.mark.parametrize("kind", [".jpg", "JPEG progressive", ".png", ".bmp", ".webp", ".tiff", "GIF"])
def test_every_cut_of_a_header_reads_as_unknown_or_the_right_size(kind: str):
    data = _encoded(kind, _photo(37, 53))
    for end in range(len(data) if len(data) < 1200 else 1200):
        assert image_size(data[:end]) in (None, (53, 37)), end


def test_gif_size_covers_a_frame_larger_than_its_screen():
    # The screen says 1x1, the first frame 300x200: a decoder would allocate the frame.
    screen = b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = b",\x00\x00\x00\x00" + (300).to_bytes(2, "little") + (200).to_bytes(2, "little")
    data = screen + frame + b"\x00\x02\x02\x4c\x01\x00;"
    assert sniff_format(data) == "gif" and header_size("gif", data) == (300, 200)
    with pytest.raises(ImageError, match="300x200 is 60000 pixels, over the cap of 100"):
        check_header(data, 100)


def test_png_bomb_is_refused_from_its_header():
    with pytest.raises(ValidationError, match="30000x30000"):
        validate_image(png_bomb(), 100_000_000)


@pytest.mark.parametrize("body,message", [
    (b"", "empty body"),
    (b"<!DOCTYPE html><html>rate limited</html>", "not a recognised image"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, "JPEG"),
])
def test_bad_bodies_are_refused(body, message):
    with pytest.raises(ValidationError, match=message):
        validate_image(body, 10_000)
