"""Synthetic stand-in images: a photo-like "scene" or the study's uniform "noise"."""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("scene", "noise")
JPEG_QUALITY = 92
_WORDS = ("PARABLUR", "EXIT 12", "OPEN", "CAFE", "NO PARKING", "MAIN ST", "SALE 50%", "HOTEL",
          "BUS 42", "PHARMACY", "TAXI", "STOP")


def _rng(seed: int, index: int, salt: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, salt])


def _color(rng: np.random.Generator, low: int = 0, high: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(low, high, 3))


def _scene(index: int, width: int, height: int, seed: int) -> np.ndarray:
    rng = _rng(seed, index, 1)
    # Sky and ground as a small image of gradients plus low-frequency blotches, resized up.
    lw, lh = max(2, width // 16), max(2, height // 16)
    horizon = rng.uniform(0.35, 0.65)
    t = np.linspace(0.0, 1.0, lh, dtype=np.float32)[:, None, None]
    sky_top, sky_low = np.array(_color(rng, 120, 256)), np.array(_color(rng, 150, 256))
    ground_top, ground_low = np.array(_color(rng, 30, 170)), np.array(_color(rng, 0, 120))
    ts = np.clip(t / horizon, 0, 1)
    tg = np.clip((t - horizon) / (1 - horizon), 0, 1)
    base = np.where(t < horizon, sky_top + (sky_low - sky_top) * ts,
                    ground_top + (ground_low - ground_top) * tg)
    base = np.broadcast_to(base, (lh, lw, 3)).astype(np.float32)
    blotch = rng.normal(0, 1, (max(2, lh // 8), max(2, lw // 8), 3)).astype(np.float32)
    base += cv2.resize(blotch, (lw, lh), interpolation=cv2.INTER_CUBIC) * 8
    img = cv2.resize(np.clip(base, 0, 255).astype(np.uint8), (width, height),
                     interpolation=cv2.INTER_CUBIC)

    scale = min(width, height)
    for _ in range(int(rng.integers(18, 34))):
        kind = int(rng.integers(0, 3))
        color = _color(rng)
        filled = rng.random() < 0.75
        thickness = -1 if filled else max(1, int(scale * rng.uniform(0.002, 0.01)))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = max(2, int(scale * rng.uniform(0.02, 0.18)))
        if kind == 0:
            cv2.circle(img, (cx, cy), size, color, thickness, cv2.LINE_AA)
        elif kind == 1:
            n = int(rng.integers(3, 8))
            angles = np.sort(rng.uniform(0, 2 * np.pi, n))
            radii = size * rng.uniform(0.4, 1.0, n)
            pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
            pts = pts.astype(np.int32).reshape(-1, 1, 2)
            if filled:
                cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], True, color, thickness, cv2.LINE_AA)
        else:
            w2, h2 = size, max(2, int(size * rng.uniform(0.4, 2.0)))
            cv2.rectangle(img, (cx - w2, cy - h2), (cx + w2, cy + h2), color, thickness)

    font_scale = scale / 400
    for _ in range(int(rng.integers(2, 6))):
        word = _WORDS[int(rng.integers(0, len(_WORDS)))]
        org = (int(rng.integers(0, max(1, width * 3 // 4))), int(rng.integers(scale // 20, height)))
        cv2.putText(img, word, org, cv2.FONT_HERSHEY_SIMPLEX, font_scale * rng.uniform(0.5, 1.5),
                    _color(rng), max(1, int(font_scale * 2)), cv2.LINE_AA)

    # Sensor-like grain: low-amplitude per-pixel luminance noise, cheap as int16 in one plane.
    grain = rng.integers(-7, 8, (height, width), dtype=np.int16)
    # Mid-frequency surface texture (foliage, fabric, asphalt) at one eighth resolution.
    tw, th = max(1, width // 8), max(1, height // 8)
    texture = rng.integers(-10, 11, (th, tw), dtype=np.int16)
    grain += cv2.resize(texture, (width, height), interpolation=cv2.INTER_CUBIC)
    grain = cv2.merge([grain, grain, grain])
    img = cv2.add(img, grain, dtype=cv2.CV_8U)
    return img


def generate_image(index: int, width: int, height: int, seed: int = 0,
                   kind: str = "scene") -> np.ndarray:
    """A deterministic BGR uint8 image for (seed, index): a photo-like scene or uniform noise."""
    if kind == "scene":
        return _scene(index, width, height, seed)
    if kind == "noise":
        return _rng(seed, index, 2).integers(0, 256, (height, width, 3), dtype=np.uint8)
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of a BGR image at ``quality`` (92 like the original study)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("could not encode image as JPEG")
    return buf.tobytes()
