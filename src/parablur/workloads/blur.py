"""The study's workload: a full-frame Gaussian blur (sigma 10, 61x61), by the chosen engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import kernel_size
from ..engines import get_engine


@dataclass(frozen=True)
class BlurWorkload:
    """Blur every pixel: what the study measured (``exact``), or its fast approximation."""

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

    def annotate(self, image: np.ndarray, record: dict) -> np.ndarray | None:
        return None

    def score(self, records: dict, truths: dict) -> dict | None:
        return None

    def score_outputs(self, source, output, truths: dict) -> dict | None:
        return None

    def decode_factor(self, size: tuple[int, int] | None) -> int:
        return get_engine(self.engine).reduced_decode_factor(self.sigma, self.passes, size)

    def __call__(self, image: np.ndarray, full_shape: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, dict | None]:
        engine = get_engine(self.engine)
        if full_shape is not None and tuple(image.shape[:2]) != tuple(full_shape):
            return engine.blur_from_reduced(image, full_shape, self.sigma, self.passes), None
        return engine.blur(image, self.sigma, self.passes), None
