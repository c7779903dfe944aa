"""Shared fixtures: small seeded image folders made in tmp_path."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def make_images(folder: Path, count: int, size: tuple[int, int] = (96, 128), seed: int = 0,
                suffix: str = ".jpg") -> list[Path]:
    """Write ``count`` seeded, photo-like images (smooth noise) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
        image = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        path = folder / f"img_{i:03d}{suffix}"
        assert cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    make_images(folder, 7)
    return folder


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One real SeaweedFS S3 store for the whole session (tests/seaweed.py); stopped by its PID at the end."""
    from seaweed import start_seaweed

    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()
