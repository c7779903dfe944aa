"""Generated scenes with real faces composited in, and the true box of every face.

The faces come from photos that ship inside wheels: matplotlib's Grace Hopper
(always installed) and, when scikit-image is installed, its astronaut (Eileen
Collins) and cameraman. Each photo's face box was measured once (YuNet, run on the
photo at full size) and is written below; a composited face's true box is that box
carried through the same scale, rotation and shift as its pixels (the box keeps
its scaled size: a face turned by a few degrees keeps its width and height).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .generate import generate_image

Box = tuple[float, float, float, float]  # x, y, width, height in pixels

MAX_FACES = 6  # per image: 1..MAX_FACES, fewer when they do not fit
MAX_ROTATION_DEG = 12.0
BRIGHTNESS = (0.65, 1.3)
CONTEXT = 2.0  # the pasted patch is an ellipse this many face boxes wide (hair, neck, shoulders)
_SALT = 3  # generate.py uses 1 (scenes) and 2 (noise)
_PLACEMENT_TRIES = 60


@dataclass(frozen=True)
class FaceSource:
    """A photo with one face, and that face's box in the photo's pixels."""

    name: str
    path: Path
    box: Box


def available_sources() -> tuple[FaceSource, ...]:
    """The face photos installed here: Grace Hopper always, two more with scikit-image."""
    import matplotlib

    sources = [FaceSource("grace_hopper", Path(matplotlib.get_data_path()) / "sample_data" /
                          "grace_hopper.jpg", (183.0, 120.0, 170.0, 212.0))]
    data = skimage_data()
    if data is not None:
        for name, box in (("astronaut", (178.0, 63.0, 90.0, 113.0)),
                          ("camera", (196.0, 113.0, 61.0, 81.0))):
            if (data / f"{name}.png").is_file():
                sources.append(FaceSource(name, data / f"{name}.png", box))
    return tuple(s for s in sources if s.path.is_file())


def skimage_data() -> Path | None:
    """scikit-image's folder of sample data, or None without scikit-image."""
    spec = importlib.util.find_spec("skimage")
    return Path(spec.origin).parent / "data" if spec is not None and spec.origin else None


@functools.lru_cache(maxsize=32)  # the face photos, and the clutter of face_frames.py
def _photo(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read photo {path}")
    return image


def _context_alpha(shape: tuple[int, int], box: Box) -> np.ndarray:
    """An elliptical alpha around the face: opaque over the face, fading out towards CONTEXT."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    dx = ((np.arange(shape[1], dtype=np.float32) + 0.5 - cx) / (w * CONTEXT / 2))[None, :]
    dy = ((np.arange(shape[0], dtype=np.float32) + 0.5 - cy) / (h * CONTEXT / 2))[:, None]
    r = np.sqrt(dx * dx + dy * dy)
    return np.clip((1.0 - r) / 0.25, 0.0, 1.0)


def _paste(canvas: np.ndarray, source: FaceSource, size: float, angle: float, brightness: float,
           center: tuple[float, float]) -> Box:
    """Composite ``source``'s face into ``canvas`` with its longer side ``size`` px; its box."""
    photo = _photo(source.path)
    x, y, w, h = source.box
    scale = size / max(w, h)
    if scale < 1:  # shrink with area averaging first, so that small faces are not aliased
        photo = cv2.resize(photo, (max(1, round(photo.shape[1] * scale)),
                                   max(1, round(photo.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = photo.shape[1] / _photo(source.path).shape[1], photo.shape[0] / _photo(source.path).shape[0]
        x, y, w, h, warp_scale = x * sx, y * sy, w * sx, h * sy, 1.0
    else:
        warp_scale = scale
    alpha = _context_alpha(photo.shape[:2], (x, y, w, h))
    radius = math.ceil(CONTEXT * max(w, h) * warp_scale / 2) + 2
    matrix = cv2.getRotationMatrix2D((x + w / 2, y + h / 2), angle, warp_scale)
    # Move the face's centre to the middle of a (2*radius+1)-square patch.
    matrix[:, 2] += (radius - (x + w / 2), radius - (y + h / 2))
    side = 2 * radius + 1
    face = cv2.warpAffine(photo, matrix, (side, side), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)
    a = cv2.warpAffine(alpha, matrix, (side, side), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT)[:, :, None]
    px, py = round(center[0]) - radius, round(center[1]) - radius
    target = canvas[py:py + side, px:px + side]
    mixed = target * (1 - a) + np.clip(face.astype(np.float32) * brightness, 0, 255) * a
    target[...] = np.rint(mixed).astype(np.uint8)
    fw, fh = w * warp_scale, h * warp_scale
    cx, cy = px + radius, py + radius
    return (round(cx - fw / 2, 1), round(cy - fh / 2, 1), round(fw, 1), round(fh, 1))


def generate_face_image(index: int, width: int, height: int, seed: int = 0,
                        face_min_size: int = 32,
                        sources: tuple[FaceSource, ...] | None = None) -> tuple[np.ndarray, list[Box]]:
    """A scene (as ``generate_image``) with 1..MAX_FACES real faces pasted in, and their true boxes.

    Faces get a longer side from ``face_min_size`` to a third of the frame (log-uniform),
    a position where they overlap no other face's patch, a rotation within
    +-MAX_ROTATION_DEG and a brightness factor; all drawn from (seed, index).
    Which photo each face comes from also depends on ``sources`` (by default the ones
    installed: see ``available_sources``).
    """
    sources = available_sources() if sources is None else sources
    if not sources:
        raise ValueError("no face photo available (matplotlib's sample data is missing)")
    image = generate_image(index, width, height, seed, "scene")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, _SALT])
    largest = min(width, height) / 3
    if largest < face_min_size:
        return image, []
    placed: list[tuple[float, float, float]] = []  # centre and radius of each pasted patch
    boxes: list[Box] = []
    for _ in range(int(rng.integers(1, MAX_FACES + 1))):
        pick, u_size, angle, brightness = rng.random(), rng.random(), rng.uniform(-1, 1), rng.random()
        positions = rng.random((_PLACEMENT_TRIES, 2))
        source = sources[int(pick * len(sources))]
        size = face_min_size * (largest / face_min_size) ** u_size
        radius = CONTEXT * size / 2 + 6  # the patch's half side, with room for rounding
        for u, v in positions:
            if 2 * radius >= min(width, height):
                break
            cx = radius + u * (width - 2 * radius)
            cy = radius + v * (height - 2 * radius)
            if all(math.hypot(cx - ox, cy - oy) > radius + orad for ox, oy, orad in placed):
                placed.append((cx, cy, radius))
                boxes.append(_paste(image, source, size, angle * MAX_ROTATION_DEG,
                                    BRIGHTNESS[0] + brightness * (BRIGHTNESS[1] - BRIGHTNESS[0]),
                                    (cx, cy)))
                break
    return image, boxes
