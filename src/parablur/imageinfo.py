"""Image format and dimensions from the first bytes of a file, before anything is decoded.

Enough of PNG, JPEG, GIF, BMP, WEBP and TIFF to find width and height, so that an
image over the pixel cap (a decompression bomb) is rejected without allocating
its pixels. Used by ingestion (downloads) and by the workload (files on disk).
"""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import ValidationError

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
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
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


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    try:
        return _tiff_dims(data)
    except (struct.error, IndexError):  # the first directory lies beyond these bytes
        return None


def _tiff_dims(data: bytes) -> tuple[int, int] | None:
    e = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(e + "I", data[4:8])[0]
    count = struct.unpack(e + "H", data[offset:offset + 2])[0]
    dims: dict[int, int] = {}
    for k in range(count):
        entry = data[offset + 2 + 12 * k: offset + 14 + 12 * k]
        tag, kind = struct.unpack(e + "HH", entry[:4])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            dims[tag] = struct.unpack(e + ("H" if kind == 3 else "I"),
                                      entry[8:10] if kind == 3 else entry[8:12])[0]
    if 256 in dims and 257 in dims:
        return dims[256], dims[257]
    return None


_PARSERS = {"png": _png_size, "jpeg": _jpeg_size, "gif": _gif_size, "bmp": _bmp_size,
            "webp": _webp_size, "tiff": _tiff_size}


def header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the header, or None while more bytes are needed."""
    return _PARSERS[fmt](data)


def file_image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its first 64 KiB, or None when unknown."""
    try:
        with open(path, "rb") as handle:
            return image_size(handle.read(1 << 16))
    except OSError:
        return None


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of an encoded image, or None when unknown."""
    fmt = sniff_format(head)
    if fmt is None:
        return None
    try:
        return header_size(fmt, head)
    except (ValidationError, struct.error, IndexError):
        return None
