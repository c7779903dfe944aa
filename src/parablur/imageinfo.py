"""What an encoded image declares about itself, read before anything is decoded.

The width and height come from Pillow's header parsers, so that an image over the
pixel cap (a decompression bomb) is refused without allocating its pixels; the
JPEG walk finds where a JPEG's data really ends, so that a truncated file is told
apart from one with bytes after its end (a phone's motion photo, padding). Used
by ingestion (downloads) and by the workload (files on disk).
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path

from PIL import BmpImagePlugin, GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from .errors import ImageError

# Pillow's parser of each format, called directly: ``Image.open`` would also apply
# Pillow's process-wide decompression-bomb limit (a warning above 89 MP, an error
# above 179 MP) to every image; ParaBlur applies its own cap to the size read here.
# (Only a GIF frame larger than the GIF's screen still meets Pillow's check.)
_OPENERS = {"jpeg": JpegImagePlugin.JpegImageFile, "png": PngImagePlugin.PngImageFile,
            "gif": GifImagePlugin.GifImageFile, "bmp": BmpImagePlugin.BmpImageFile,
            "tiff": TiffImagePlugin.TiffImageFile}

# What Pillow's parsers raise for a header they cannot read (SyntaxError is
# Pillow's "not this format / malformed"). Anything else (a bug, or a warning that
# the caller's filters turn into an error) propagates.
_UNREADABLE = (SyntaxError, OSError, ValueError, EOFError, struct.error, Image.DecompressionBombError)

# In a JPEG's entropy-coded data 0xFF is followed by 0x00 (a stuffed byte), a
# restart marker (0xD0-0xD7) or more 0xFF (fill); anything else is the next marker.
SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class HeaderError(ImageError):
    """An image header that does not declare a readable size."""


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
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # TIFF, BigTIFF
        return "tiff"
    return None


def _webp_size(head: bytes) -> tuple[int, int]:
    """The canvas size from a WebP's first chunk.

    By hand because Pillow's WebP parser reads the whole file and creates the
    decoder, which allocates the canvas, before it reports a size.
    """
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    raise HeaderError(f"unreadable WEBP header (first chunk {chunk!r})")


def _read_size(stream: io.BufferedIOBase | io.BytesIO) -> tuple[int, int]:
    head = stream.read(32)
    if not head:
        raise HeaderError("empty file")
    fmt = sniff_format(head)
    if fmt is None:
        raise HeaderError(f"not a recognised image format (starts with {head[:16]!r})")
    if fmt == "webp":
        size = _webp_size(head)
    else:
        stream.seek(0)
        try:
            size = _OPENERS[fmt](stream).size
        except _UNREADABLE as exc:
            raise HeaderError(f"unreadable or truncated {fmt.upper()} header ({exc})") from exc
    if size[0] <= 0 or size[1] <= 0:
        raise HeaderError(f"{fmt.upper()} header declares an empty size {size[0]}x{size[1]}")
    return size


def read_size(source: bytes | Path) -> tuple[int, int]:
    """(width, height) declared by an image's header, without decoding a pixel.

    The stored size: a JPEG with an EXIF rotation of 90 degrees decodes to
    (height, width), the same pixel count. Raises HeaderError when the bytes are not
    an image in a format we accept or its header is unreadable (OSError when a file
    cannot be read).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return _read_size(io.BytesIO(source))
    with open(source, "rb") as handle:
        return _read_size(handle)


def header_size(fmt: str, data: bytes) -> tuple[int, int] | None:
    """(width, height) declared by the ``fmt`` header in ``data``; None while incomplete or unreadable."""
    if sniff_format(data[:16]) != fmt:
        return None
    return image_size(data)


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the encoded bytes of an image, or None when unknown."""
    try:
        return read_size(head)
    except HeaderError:
        return None


def file_image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header, or None when unknown (an estimate)."""
    try:
        return read_size(path)
    except Exception:  # any failure: the callers only want an estimate and have a default
        return None


def jpeg_end(data: bytes) -> int | None:
    """Where a JPEG's end-of-image marker ends, or None when its data stops before one.

    Walks the segments from SOI: a marker with a length is skipped whole, a scan
    (SOS, several in a progressive JPEG) runs to the next marker. The first EOI
    reached this way ends the image: bytes after it (a motion photo's video,
    padding) are not part of it, and an EOI-like pair inside them is never reached.
    """
    n = len(data)
    i = 2
    while True:
        i = data.find(b"\xff", i)  # junk between segments is skipped, as libjpeg does
        if i < 0 or i + 1 >= n:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
        elif marker == 0xD9:
            return i + 2
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif i + 4 > n:
            return None
        else:
            i += 2 + ((data[i + 2] << 8) | data[i + 3])
            if marker == 0xDA:
                found = SCAN_END.search(data, i)
                if found is None:
                    return None
                i = found.start()
