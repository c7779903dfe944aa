"""Recognising an image body: its format from magic bytes and its size from the header alone."""

from __future__ import annotations

import struct

import cv2
import numpy as np

from ..errors import ValidationError

# Format name -> file extension ParaBlur stores it under (GIF is re-encoded as PNG).
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "gif": ".png"}
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff_format(data: bytes) -> str | None:
    """The image format named by the body's magic bytes, or None if it is not one we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24:
        return None
    if data[12:16] != b"IHDR":
        raise ValidationError("PNG without an IHDR header")
    return struct.unpack(">II", data[16:24])


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while True:
        while i < len(data) and data[i] != 0xFF:  # tolerate junk between segments
            i += 1
        while i < len(data) and data[i] == 0xFF:
            i += 1
        if i >= len(data):
            return None
        marker = data[i]
        i += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue
        if marker in (0xD9, 0xDA):
            raise ValidationError("JPEG without a frame header before its image data")
        if i + 2 > len(data):
            return None
        (length,) = struct.unpack(">H", data[i:i + 2])
        if length < 2:
            raise ValidationError("JPEG with a malformed segment length")
        if marker in _JPEG_SOF:
            if i + 7 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            return width, height
        i += length


def _gif_size(data: bytes) -> tuple[int, int] | None:
    return struct.unpack("<HH", data[6:10]) if len(data) >= 10 else None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26:
        return None
    (header,) = struct.unpack("<I", data[14:18])
    if header == 12:
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValidationError("WEBP (VP8) with a bad frame start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise ValidationError("WEBP (VP8L) with a bad signature")
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height
    raise ValidationError(f"WEBP with an unknown chunk {chunk!r}")


_PARSERS = {"png": _png_size, "jpeg": _jpeg_size, "gif": _gif_size, "bmp": _bmp_size,
            "webp": _webp_size}


def header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the header, or None while more bytes are needed."""
    return _PARSERS[fmt](data)


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuse empty images and decompression bombs before anything is decoded."""
    if width <= 0 or height <= 0:
        raise ValidationError(f"image declares an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ValidationError(
            f"image declares {width}x{height} = {width * height} pixels, over the "
            f"{max_pixels} pixel cap")


def validate_image(data: bytes, max_pixels: int) -> tuple[str, np.ndarray]:
    """The format and decoded BGR pixels of an acceptable image body, else ValidationError."""
    if not data:
        raise ValidationError("empty body")
    fmt = sniff_format(data)
    if fmt is None:
        head = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise ValidationError(f"not a recognised image format (body starts with {head!r})")
    size = header_size(fmt, data)
    if size is None:
        raise ValidationError(f"{fmt.upper()} header is truncated")
    check_pixels(*size, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValidationError(f"{fmt.upper()} body does not decode as an image")
    return fmt, image
