"""The exact engine: the study's ``cv2.GaussianBlur``, a (6*sigma+1)-square kernel, reflected borders."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import kernel_size


def gaussian_blur(image: np.ndarray, sigma: float, passes: int = 1) -> np.ndarray:
    """``cv2.GaussianBlur``, a ``kernel_size(sigma)`` square kernel, BORDER_REFLECT_101, ``passes`` times."""
    k = kernel_size(sigma)
    out = image
    for _ in range(passes):
        out = cv2.GaussianBlur(out, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    return out


@dataclass(frozen=True)
class ExactEngine:
    """Today's blur, pixel for pixel: what the study measured."""

    name: str = "exact"

    def blur(self, image: np.ndarray, sigma: float, passes: int = 1) -> np.ndarray:
        """The full-resolution Gaussian blur of ``image``."""
        return gaussian_blur(image, sigma, passes)

    def reduced_decode_factor(self, sigma: float, passes: int = 1,
                              size: tuple[int, int] | None = None) -> int:
        """Always 1: the exact engine needs every decoded pixel."""
        return 1

    def blur_from_reduced(self, small: np.ndarray, full_shape: tuple[int, int], sigma: float,
                          passes: int = 1) -> np.ndarray:
        """Not applicable: the exact engine never asks for a reduced decode."""
        raise ValueError("the exact engine blurs full-resolution images only")
