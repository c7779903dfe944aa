"""Header-only sniffing and size parsing, and validation of bodies."""

import cv2
import numpy as np
import pytest
from ingestion_support import png_bomb

from parablur.errors import ValidationError
from parablur.imageinfo import header_size, sniff_format
from parablur.ingestion.validation import validate_image


@pytest.mark.parametrize("ext,fmt", [(".jpg", "jpeg"), (".png", "png"), (".bmp", "bmp"),
                                     (".webp", "webp")])
def test_header_size_matches_encoded_size(ext, fmt):
    data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))[1].tobytes()
    assert sniff_format(data) == fmt
    assert header_size(fmt, data) == (53, 37)
    assert validate_image(data, 10_000)[1].shape == (37, 53, 3)


def test_gif_header_is_parsed():
    data = b"GIF89a" + (300).to_bytes(2, "little") + (200).to_bytes(2, "little") + b"\0" * 8
    assert sniff_format(data) == "gif" and header_size("gif", data) == (300, 200)


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
