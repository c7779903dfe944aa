"""The study's workload: a full-frame Gaussian blur (sigma 10, 61x61), by the chosen engine."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import kernel_size


def gaussian_exact(image: np.ndarray, sigma: float, passes: int = 1) -> np.ndarray:
    """``cv2.GaussianBlur`` with a (6*sigma+1)-square kernel and BORDER_REFLECT_101, ``passes`` times."""
    k = kernel_size(sigma)
    out = image
    for _ in range(passes):
        out = cv2.GaussianBlur(out, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    return out


@dataclass(frozen=True)
class BlurWorkload:
    """Blur every pixel: what the study measured."""

    sigma: float = 10.0
    passes: int = 1
    engine: str = "exact"

    @property
    def name(self) -> str:
        return "blur"

    @property
    def record_file(self) -> str | None:
        return None

    def describe(self) -> dict:
        return {"sigma": self.sigma, "kernel": kernel_size(self.sigma), "passes": self.passes,
                "engine": self.engine}

    def preflight(self) -> str | None:
        return None

    def decode_factor(self, suffix: str) -> int:
        return 1

    def __call__(self, image: np.ndarray, full_shape: tuple[int, ...] | None = None
                 ) -> tuple[np.ndarray, dict | None]:
        return gaussian_exact(image, self.sigma, self.passes), None
