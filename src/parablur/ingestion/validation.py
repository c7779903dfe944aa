"""Accepting a downloaded body: a known image format, within the pixel cap, and decodable."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ValidationError
from ..imageinfo import header_size, sniff_format

# Format name -> file extension ParaBlur stores it under (GIF is re-encoded as PNG).
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "gif": ".png"}


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
    if fmt is None or fmt not in EXTENSIONS:
        head = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise ValidationError(f"not a recognised image format (body starts with {head!r})")
    size = header_size(fmt, data)
    if size is None:
        raise ValidationError(f"{fmt.upper()} header is truncated or unreadable")
    check_pixels(*size, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ValidationError(f"{fmt.upper()} body does not decode as an image")
    return fmt, image
