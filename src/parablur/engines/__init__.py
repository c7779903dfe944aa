"""Blur engines: the exact study blur and a fast multirate approximation of it.

An engine is a pure function of an array (no I/O, no threads) plus a hint for the
decoder: ``reduced_decode_factor`` says at what 1/f size an image may be decoded,
``decode_reduced`` decodes a JPEG so (libjpeg's DCT scaling) where that applies,
and ``blur_from_reduced`` blurs such a reduced decode::

    engine = get_engine("fast")
    f = engine.reduced_decode_factor(sigma, passes, image_size(data))
    reduced = decode_reduced(data, f)  # None: not a JPEG, factor 1, ...
    if reduced is None:
        out = engine.blur(decode(data, suffix), sigma, passes)
    else:
        out = engine.blur_from_reduced(reduced.image, reduced.full_shape, sigma, passes)
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .exact import ExactEngine
from .fast import FastEngine
from .reduced import ReducedImage, decode_reduced

ENGINES = ("exact", "fast")


class Engine(Protocol):
    """What the workload needs from a blur engine."""

    name: str

    def blur(self, image: np.ndarray, sigma: float, passes: int = 1) -> np.ndarray: ...

    def reduced_decode_factor(self, sigma: float, passes: int = 1,
                              size: tuple[int, int] | None = None) -> int: ...

    def blur_from_reduced(self, small: np.ndarray, full_shape: tuple[int, int], sigma: float,
                          passes: int = 1) -> np.ndarray: ...


_BY_NAME: dict[str, Engine] = {"exact": ExactEngine(), "fast": FastEngine()}


def get_engine(name: str) -> Engine:
    """The engine called ``name``; ValueError naming the choices otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}") from None


__all__ = ["ENGINES", "Engine", "ExactEngine", "FastEngine", "ReducedImage", "decode_reduced", "get_engine"]
