"""Decoding a JPEG at 1/2, 1/4 or 1/8 size through libjpeg's DCT scaling, for the fast engine.

Where it applies the decode skips most of the inverse DCT and colour work; the
entropy decoding stays. It gives what the full decode (IMREAD_ANYCOLOR) would
give, reduced: EXIF orientation applied, grayscale kept gray, CMYK converted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..imageinfo import image_size

# OpenCV takes the scale from the REDUCED bits and the colour handling from the
# rest of the flags: REDUCED_GRAYSCALE_f | ANYCOLOR decodes as ANYCOLOR does, at 1/f.
_SCALE_FLAGS = {2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
                8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


@dataclass(frozen=True)
class ReducedImage:
    """A decode at 1/``factor`` size and the (height, width) the full decode would have."""

    image: np.ndarray
    full_shape: tuple[int, int]
    factor: int


def decode_reduced(data: bytes, factor: int) -> ReducedImage | None:
    """The JPEG ``data`` decoded at 1/``factor``; None where a reduced decode does not apply.

    It does not apply to other formats, to ``factor`` 1, to files without an
    end-of-image marker (the full decode reports those), or to sides that are not
    multiples of ``factor``: the partial last block would change sides with the
    EXIF orientation, and the fast engine's alignment with it.
    """
    if factor not in _SCALE_FLAGS or not data.startswith(b"\xff\xd8\xff") or b"\xff\xd9" not in data[-4096:]:
        return None
    size = image_size(data)
    if size is None or size[0] % factor or size[1] % factor:
        return None
    w, h = size
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_ANYCOLOR | _SCALE_FLAGS[factor])
    except cv2.error:
        return None
    if image is None:
        return None
    if image.shape[:2] == (h // factor, w // factor):
        return ReducedImage(image, (h, w), factor)
    if image.shape[:2] == (w // factor, h // factor):  # EXIF orientation 5 to 8 turned it
        return ReducedImage(image, (w, h), factor)
    return None
