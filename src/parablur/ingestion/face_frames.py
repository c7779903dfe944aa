"""The ``--fallback faces`` set: whole real photos shrunk into large frames, with their true face boxes.

A frame is a mosaic, row by row, of tiles on a textured ground, like a crowd, a class or a
contact sheet seen from afar (docs/faces.md has the sources' licences and measured figures):

- **photo tiles**: a real photo from a wheel (matplotlib's Grace Hopper; scikit-image's
  astronaut and camera, the last a real half-profile), cropped around its face (or whole)
  and shrunk so that its face gets a height drawn for the row, so each face keeps its real
  context (body, background, what stands beside it);
- **LFW tiles**: scikit-image's ``lfw_subset`` faces (real 25x25 grayscale face crops),
  each on a plain mat, like an ID wall;
- **clutter tiles**, with no true box: round things (coins, clock, coffee cup, the moon,
  drawn rings), glasses-like shapes (drawn spectacles), a cat's face (chelsea), patterns
  and textures (checkerboard, brick, gravel, grass) and LFW's non-face crops. A detection on
  them is a false positive.

Each tile may be degraded (drawn from (seed, index)): motion blur and low light (dark and
noisy), clutter as well as faces, and a face may get an occluder over part of it (the true box
stays the face's box). The frame is
saved as JPEG at a quality from 50 to 70, drawn per frame (``FaceFrame.jpeg_quality``).

Box convention (as ``faces.generate_face_image``): a face's true box is YuNet's box measured
once on its source at full size (written below), carried through the crop, flip, scale and
shift of its tile. For an LFW crop (too small for YuNet) the box was measured on the crop
upscaled 8x (bicubic, on a grey margin) and divided by 8; it may reach past the crop's edge.

Held-out split: frames with ``seed >= HELD_OUT_SEED`` draw their LFW faces only from the
last ``HELD_OUT_LFW`` faces of the subset, which frames with a smaller seed never show
(their degradations and layouts are draws of their own seed anyway). Tune on seeds below
``HELD_OUT_SEED`` (the default seed is 0) and measure held out with ``--seed 1000`` or more.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from .faces import Box, FaceSource, _photo, available_sources, skimage_data

_SALT = 4  # generate.py uses 1 and 2, faces.py 3
HELD_OUT_SEED = 1000
HELD_OUT_LFW = 20  # LFW faces 80..99 appear only in held-out frames
JPEG_QUALITY = (50, 70)  # inclusive
MIN_FACE = 14.0  # the smallest true face height, px (drawn from 14.5: a resize rounds)
# Face heights (px) drawn per row: (low, high, weight). The last band gives a few large faces.
# Rows of small faces hold many more of them: these weights give about 30/30/20/20% of the faces
# under 20, 20-30, 30-45 and 45 px and over.
BANDS = ((14.5, 20.0, 0.15), (20.0, 30.0, 0.22), (30.0, 45.0, 0.24), (45.0, 70.0, 0.25),
         (70.0, 160.0, 0.14))
P_BLUR, P_DARK, P_OCCLUDED = 0.15, 0.15, 0.12  # per tile (blur, dark) and per face (occluded)
P_CLUTTER, P_LFW = 0.3, 0.1  # per tile: clutter, an LFW face, else a photo tile
GAP = (2, 14)  # px between tiles
MARGIN = 8  # px kept free at the frame's edges

# YuNet's box (x, y, w, h) on each of lfw_subset's 100 faces (see the module's docstring).
_LFW_BOXES = (
    (1.8, 0.3, 18.2, 24.6), (0.3, -1.9, 20.3, 27.5), (1.0, -0.1, 20.0, 24.7), (1.6, 0.8, 18.4, 23.6),
    (0.7, 1.7, 17.7, 21.5), (1.7, -1.4, 20.6, 25.3), (0.1, -1.3, 20.5, 26.2), (2.0, -1.7, 19.7, 25.3),
    (2.0, -0.5, 18.8, 23.6), (3.2, -1.1, 17.7, 24.5), (0.9, -2.3, 20.5, 28.2), (2.9, 0.1, 18.2, 25.7),
    (3.0, 3.6, 17.6, 20.8), (0.2, -0.6, 18.7, 25.3), (0.4, -4.1, 20.8, 30.1), (2.6, 0.6, 18.2, 22.6),
    (1.1, -4.2, 20.2, 25.9), (3.0, 0.6, 17.9, 22.5), (1.7, -0.9, 20.3, 25.0), (0.9, -3.5, 19.2, 28.0),
    (1.5, -0.1, 19.5, 24.3), (0.7, -3.6, 20.4, 26.9), (3.2, -1.4, 18.2, 25.2), (1.8, -0.1, 18.8, 23.4),
    (2.4, 1.3, 17.7, 21.6), (1.2, -0.5, 19.9, 24.7), (0.1, 0.6, 20.0, 24.3), (1.5, -0.2, 19.5, 23.9),
    (2.6, -1.3, 18.6, 25.3), (1.2, 1.3, 20.1, 24.8), (0.9, 0.7, 20.5, 23.3), (1.2, -0.6, 20.0, 25.3),
    (1.1, 0.1, 19.2, 25.3), (1.6, 1.0, 19.4, 23.4), (1.4, 1.4, 18.9, 23.3), (0.9, -1.0, 20.3, 24.5),
    (2.3, 1.1, 18.7, 23.5), (1.9, 0.7, 19.2, 24.1), (1.8, 0.1, 19.4, 23.0), (1.1, -0.1, 18.8, 25.0),
    (2.9, 0.7, 17.5, 24.8), (1.6, -2.2, 19.3, 26.4), (1.1, -3.1, 21.2, 27.6), (2.5, 2.0, 18.9, 22.0),
    (0.9, 2.0, 19.9, 22.8), (1.7, -0.4, 18.5, 24.9), (1.4, 0.7, 19.1, 23.0), (2.0, 2.0, 16.9, 20.2),
    (4.4, 3.0, 17.0, 20.6), (1.4, 0.5, 20.0, 24.9), (1.1, -0.7, 20.3, 25.5), (2.4, 1.5, 18.8, 24.1),
    (0.6, -3.7, 21.1, 28.1), (1.3, -1.3, 19.1, 25.1), (1.6, -1.4, 19.5, 25.7), (1.0, -2.4, 20.3, 26.5),
    (1.1, -0.5, 19.4, 26.3), (1.8, -2.6, 21.3, 27.9), (2.9, -0.2, 17.7, 24.5), (0.2, -1.2, 17.8, 26.0),
    (1.0, -3.4, 20.8, 28.3), (1.0, -0.8, 19.2, 25.2), (1.8, 0.6, 18.2, 22.9), (0.6, -2.8, 20.3, 27.4),
    (1.5, -0.6, 19.7, 24.3), (0.5, -2.9, 20.5, 26.6), (1.9, 1.0, 18.9, 23.3), (2.7, 3.6, 17.9, 20.5),
    (1.0, 0.9, 19.3, 23.6), (1.6, -0.7, 18.9, 25.4), (3.9, 2.3, 17.5, 20.4), (1.8, -0.2, 19.2, 25.2),
    (1.2, -1.8, 19.5, 26.4), (2.0, 1.1, 19.3, 22.8), (2.1, 0.4, 19.1, 24.7), (2.2, 0.2, 18.9, 24.1),
    (1.5, -2.5, 19.5, 27.7), (1.5, -0.6, 19.0, 25.5), (1.6, -3.6, 19.7, 28.1), (2.3, 0.9, 17.8, 23.8),
    (1.2, 0.8, 19.0, 23.9), (1.6, -0.4, 19.1, 24.5), (2.5, -0.6, 18.8, 25.0), (0.2, -6.0, 24.4, 34.7),
    (1.4, 1.4, 17.7, 23.2), (0.8, -2.6, 20.5, 27.4), (1.3, -2.1, 19.8, 25.4), (1.5, -0.7, 18.9, 26.1),
    (1.1, -1.5, 19.5, 25.5), (0.4, -2.3, 21.2, 27.7), (1.2, -0.4, 18.7, 25.0), (1.6, 0.4, 18.7, 24.5),
    (2.0, 1.0, 17.8, 22.1), (1.3, 0.0, 19.5, 24.2), (1.0, -1.2, 19.9, 25.7), (1.1, -2.3, 20.5, 26.6),
    (1.8, 1.6, 19.0, 22.9), (2.1, -0.3, 17.8, 24.9), (1.5, -1.8, 19.9, 25.5), (3.8, -0.9, 18.4, 26.4),
)


@dataclass(frozen=True)
class FaceFrame:
    """A generated frame, its true face boxes and how it is to be saved."""

    image: np.ndarray  # BGR uint8
    faces: list[Box]
    jpeg_quality: int
    tags: list[tuple[str, ...]] = field(default_factory=list)  # per face: its source and degradations
    clutter: list[Box] = field(default_factory=list)  # the face-free tiles (no true box in them)


@functools.lru_cache(maxsize=1)
def _lfw() -> tuple[np.ndarray, np.ndarray] | None:
    """lfw_subset as uint8: (100 faces, the non-face crops kept as clutter), or None."""
    data = skimage_data()
    if data is None or not (data / "lfw_subset.npy").is_file():
        return None
    crops = np.rint(np.load(data / "lfw_subset.npy") * 255).astype(np.uint8)
    # Non-face crops that show part of a face (an eye, a mouth) are left out of the clutter.
    partial = {114, 125, 126, 130, 155, 180, 193, 196}
    return crops[:100], crops[[i for i in range(100, 200) if i not in partial]]


CLUTTER_PHOTOS = ("coins", "clock_motion", "coffee", "chelsea", "moon", "brick", "gravel", "grass")


def _clutter_photos() -> tuple[np.ndarray, ...]:
    data = skimage_data()
    if data is None:
        return ()
    return tuple(_photo(data / f"{n}.png") for n in CLUTTER_PHOTOS if (data / f"{n}.png").is_file())


def _band(rng: np.random.Generator, highest: float) -> tuple[float, float]:
    """A band of face heights (low, high) for a row, among those whose low end is below ``highest``."""
    bands = [(lo, min(hi, highest), w) for lo, hi, w in BANDS if lo < highest]
    weights = np.array([w for _, _, w in bands])
    lo, hi, _ = bands[int(rng.choice(len(bands), p=weights / weights.sum()))]
    return lo, hi


def _photo_tile(rng: np.random.Generator, source: FaceSource, face_h: float) -> tuple[np.ndarray, Box]:
    """``source`` cropped around its face (60% to all of each side) and flipped or not, shrunk so
    that its face is ``face_h`` px tall (never enlarged); the tile and its face's box."""
    photo = _photo(source.path)
    ph, pw = photo.shape[:2]
    x, y, w, h = source.box
    fx, fy = rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0)
    ux, uy, flip = rng.random(), rng.random(), rng.random()
    cw = int(min(pw, max(w * 1.4, fx * pw)))
    ch = int(min(ph, max(h * 1.4, fy * ph)))
    lo_x, hi_x = max(0, math.ceil(x + w) - cw), min(int(x), pw - cw)
    lo_y, hi_y = max(0, math.ceil(y + h) - ch), min(int(y), ph - ch)
    x0 = lo_x + int(ux * (hi_x - lo_x + 1)) if hi_x >= lo_x else max(0, min(pw - cw, int(x)))
    y0 = lo_y + int(uy * (hi_y - lo_y + 1)) if hi_y >= lo_y else max(0, min(ph - ch, int(y)))
    crop = photo[y0:y0 + ch, x0:x0 + cw]
    scale = min(1.0, face_h / h)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    tile = cv2.resize(crop, size, interpolation=cv2.INTER_AREA) if scale < 1 else crop.copy()
    sx, sy = size[0] / cw, size[1] / ch
    bx = x - x0
    if flip < 0.5:  # a mirror image (not a profile: the set's profiles are real, see camera)
        tile = np.ascontiguousarray(tile[:, ::-1])
        bx = cw - (bx + w)
    return tile, (bx * sx, (y - y0) * sy, w * sx, h * sy)


def _lfw_tile(rng: np.random.Generator, crops: np.ndarray, pool: range,
              face_h: float) -> tuple[tuple[np.ndarray, Box] | None, tuple[str]]:
    """An LFW face on a plain mat, its face ``face_h`` px tall (None if that needs enlarging it
    by more than a third), and its tag ``lfw:INDEX``."""
    i = pool[int(rng.integers(len(pool)))]
    x, y, w, h = _LFW_BOXES[i]
    scale = face_h / h
    grey, flip = int(rng.integers(40, 216)), rng.random()
    if scale > 1.34:
        return None, (f"lfw:{i}",)
    side = max(8, round(25 * scale))
    s = side / 25
    face = cv2.resize(crops[i], (side, side), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    pad = math.ceil(0.35 * side) + 2  # the box may reach past the crop
    tile = np.full((side + 2 * pad, side + 2 * pad), grey, np.uint8)
    tile[pad:pad + side, pad:pad + side] = face
    bx = x
    if flip < 0.5:
        tile = np.ascontiguousarray(tile[:, ::-1])
        bx = 25 - (x + w)
    return (cv2.cvtColor(tile, cv2.COLOR_GRAY2BGR), (pad + bx * s, pad + y * s, w * s, h * s)), (f"lfw:{i}",)


def _occlude(rng: np.random.Generator, tile: np.ndarray, box: Box) -> str:
    """Cover part of the face in ``box``: a mask over its lower half, a hand or object from one
    side, or a bar (a microphone, a cup) in front. The face's box stays its true box."""
    x, y, w, h = box
    kind, a, b, c = int(rng.integers(3)), rng.random(), rng.random(), rng.random()
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind == 0:  # a face mask over the mouth and nose: the lower 40 to 50% of the box
        top = y + h * (0.5 + 0.1 * a)
        cv2.ellipse(tile, (round(x + w / 2), round(top + (y + h - top) / 2)),
                    (round(w * 0.55), max(1, round((y + h - top) * 0.6))), 0, 0, 360, colour, -1,
                    cv2.LINE_AA)
        return "occluded:mask"
    if kind == 1:  # a hand or object from one side: 20 to 35% of the width
        cover = w * (0.2 + 0.15 * a)
        cx = x + cover / 2 - w * 0.15 if b < 0.5 else x + w - cover / 2 + w * 0.15
        cv2.ellipse(tile, (round(cx), round(y + h * (0.45 + 0.3 * c))),
                    (max(1, round(cover / 2 + w * 0.15)), max(1, round(h * 0.35))), 0, 0, 360, colour, -1,
                    cv2.LINE_AA)
        return "occluded:side"
    bar = max(2, round(w * (0.12 + 0.08 * a)))  # a bar up from below, left of centre or right
    left = round(x + w * (0.25 + 0.5 * b) - bar / 2)
    cv2.rectangle(tile, (left, round(y + h * (0.55 + 0.15 * c))), (left + bar, tile.shape[0]), colour, -1)
    return "occluded:bar"


def _motion_blur(rng: np.random.Generator, tile: np.ndarray, length: float) -> np.ndarray:
    k = max(3, round(length)) | 1
    angle = rng.uniform(0, math.pi)
    kernel = np.zeros((k, k), np.float32)
    r = (k - 1) / 2
    cv2.line(kernel, (round(r - r * math.cos(angle)), round(r - r * math.sin(angle))),
             (round(r + r * math.cos(angle)), round(r + r * math.sin(angle))), 1.0, 1, cv2.LINE_AA)
    return cv2.filter2D(tile, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def _dark(rng: np.random.Generator, tile: np.ndarray) -> np.ndarray:
    """Low light: 25 to 50% of the light, and sensor noise."""
    gain, sigma = rng.uniform(0.25, 0.5), rng.uniform(2.0, 6.0)
    noise = rng.standard_normal(tile.shape, dtype=np.float32) * sigma
    return np.clip(tile.astype(np.float32) * gain + noise, 0, 255).astype(np.uint8)


def _degrade(rng: np.random.Generator, tile: np.ndarray, box: Box | None,
             blur_length: float) -> tuple[np.ndarray, tuple[str, ...]]:
    """Maybe occlude (face tiles), motion-blur and darken a tile, in that order (the occluder is
    in the scene, the blur and the noise in the camera); the tags of what was done."""
    u_occ, u_blur, u_dark, u_len = rng.random(), rng.random(), rng.random(), rng.random()
    tags = []
    if box is not None and u_occ < P_OCCLUDED:
        tags.append(_occlude(rng, tile, box))
    if u_blur < P_BLUR:
        tile = _motion_blur(rng, tile, blur_length * (0.08 + 0.17 * u_len))
        tags.append("blur")
    if u_dark < P_DARK:
        tile = _dark(rng, tile)
        tags.append("dark")
    return tile, tuple(tags)


def _shape_tile(rng: np.random.Generator, height: int) -> np.ndarray:
    """Drawn clutter about ``height`` px tall: spectacles, rings and discs, or a pattern."""
    kind = int(rng.integers(3))
    ground = tuple(int(v) for v in rng.integers(0, 256, 3))
    ink = tuple(int(v) for v in rng.integers(0, 256, 3))
    if kind == 0:  # spectacles: two rims, a bridge, the temples
        h = max(8, height)
        w = round(h * rng.uniform(1.8, 2.6))
        tile = np.full((h, w, 3), ground, np.uint8)
        r = max(3, round(h * rng.uniform(0.22, 0.3)))
        thick = max(1, round(r / 6))
        cy, gap = h // 2, round(r * rng.uniform(0.3, 0.7))
        cx = (w // 2 - gap // 2 - r, w // 2 + gap // 2 + r)
        for x in cx:
            cv2.ellipse(tile, (x, cy), (r, round(r * 0.8)), 0, 0, 360, ink, thick, cv2.LINE_AA)
        cv2.line(tile, (cx[0] + r, cy), (cx[1] - r, cy), ink, thick, cv2.LINE_AA)
        cv2.line(tile, (cx[0] - r, cy), (0, cy - r // 2), ink, thick, cv2.LINE_AA)
        cv2.line(tile, (cx[1] + r, cy), (w - 1, cy - r // 2), ink, thick, cv2.LINE_AA)
        return tile
    if kind == 1:  # rings and discs: buttons, plates, an ashtray
        h = max(8, height)
        w = round(h * rng.uniform(1.0, 2.5))
        tile = np.full((h, w, 3), ground, np.uint8)
        for _ in range(int(rng.integers(1, 5))):
            r = max(2, round(h * rng.uniform(0.12, 0.45)))
            c = (int(rng.integers(r, max(r + 1, w - r))), int(rng.integers(r, max(r + 1, h - r))))
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            cv2.circle(tile, c, r, colour, -1 if rng.random() < 0.4 else max(1, r // 4), cv2.LINE_AA)
            cv2.circle(tile, c, max(1, r // 2), ink, max(1, r // 6), cv2.LINE_AA)
        return tile
    cell = int(rng.integers(2, max(3, height // 4)))  # a checkerboard or stripes
    h, w = max(8, height), max(8, round(height * rng.uniform(0.8, 2.0)))
    yy, xx = np.mgrid[0:h, 0:w]
    on = ((yy // cell + xx // cell) % 2 == 0) if rng.random() < 0.5 else (xx // cell % 2 == 0)
    tile = np.empty((h, w, 3), np.uint8)
    tile[...] = ground
    tile[on] = ink
    return tile


def _clutter_tile(rng: np.random.Generator, height: int, photos: tuple[np.ndarray, ...],
                  non_faces: np.ndarray | None) -> np.ndarray:
    """A face-free tile about ``height`` px tall: a photo of things, an LFW background crop, or a
    drawn shape."""
    u = rng.random()
    if photos and u < 0.5:
        photo = photos[int(rng.integers(len(photos)))]
        ph, pw = photo.shape[:2]
        f, ux, uy = rng.uniform(0.35, 1.0), rng.random(), rng.random()
        ch, cw = max(1, int(ph * f)), max(1, int(pw * f))
        y0, x0 = int(uy * (ph - ch)), int(ux * (pw - cw))
        scale = height / ch
        size = (max(1, round(cw * scale)), max(1, height))
        return cv2.resize(photo[y0:y0 + ch, x0:x0 + cw], size,
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if non_faces is not None and u < 0.62:
        side = max(8, min(height, 34))
        crop = non_faces[int(rng.integers(len(non_faces)))]
        return cv2.cvtColor(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_GRAY2BGR)
    return _shape_tile(rng, height)


def _ground(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """The frame's ground: a texture photo (brick, gravel, grass) enlarged, or a plain gradient."""
    data = skimage_data()
    names = [n for n in ("brick", "gravel", "grass") if data is not None and (data / f"{n}.png").is_file()]
    u, gain = rng.random(), rng.uniform(0.4, 1.0)
    if names and u < 0.6:
        texture = _photo(data / f"{names[int(u / 0.6 * len(names))]}.png")
        return cv2.convertScaleAbs(cv2.resize(texture, (width, height), interpolation=cv2.INTER_LINEAR),
                                   alpha=gain)
    a, b = rng.integers(0, 256, 3).astype(np.float32), rng.integers(0, 256, 3).astype(np.float32)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    column = (a[None, :] * (1 - t) + b[None, :] * t).astype(np.uint8)[:, None, :]
    return np.ascontiguousarray(np.broadcast_to(column, (height, width, 3)))


def generate_face_frame(index: int, width: int, height: int, seed: int = 0) -> FaceFrame:
    """Frame ``index`` of the set made with ``seed``: tiles of real photos with faces, LFW faces
    and face-free clutter, row by row (see the module's docstring); deterministic from
    (seed, index) and the photos installed (scikit-image adds all but Grace Hopper)."""
    sources = available_sources()
    if not sources:
        raise ValueError("no face photo available (matplotlib's sample data is missing)")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, _SALT])
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    image = _ground(rng, width, height)
    lfw = _lfw()
    held_out = seed >= HELD_OUT_SEED
    pool = range(100 - HELD_OUT_LFW, 100) if held_out else range(100 - HELD_OUT_LFW)
    photos = _clutter_photos()
    faces: list[Box] = []
    tags: list[tuple[str, ...]] = []
    clutter: list[Box] = []
    y = MARGIN
    while (height - MARGIN - y) / 2.2 > BANDS[0][0]:  # room for a row of the smallest faces
        lo, hi = _band(rng, (height - MARGIN - y) / 2.2)
        x, row_h, misses = MARGIN, 0, 0
        while misses < 6 and x < width - MARGIN:
            u_kind, u_h, u_src, u_gap, u_drop = (rng.random() for _ in range(5))
            face_h = lo + (hi - lo) * u_h
            box = None
            if u_kind < P_CLUTTER:
                tile = _clutter_tile(rng, max(8, round(face_h * (1.5 + 2.5 * u_src))), photos,
                                     None if lfw is None else lfw[1])
                tag: tuple[str, ...] = ()
            else:
                made = None
                if lfw is not None and u_kind < P_CLUTTER + P_LFW:
                    made, tag = _lfw_tile(rng, lfw[0], pool, face_h)
                if made is None:
                    source = sources[int(u_src * len(sources))]
                    made, tag = _photo_tile(rng, source, face_h), (source.name,)
                tile, box = made
            tile, done = _degrade(rng, tile, box, face_h)
            th, tw = tile.shape[:2]
            if x + tw > width - MARGIN or y + th > height - MARGIN:
                misses += 1
                continue
            ty = y + int(u_drop * min(th, row_h) * 0.3)  # rows are not ruled lines
            if ty + th > height - MARGIN:
                ty = y
            image[ty:ty + th, x:x + tw] = tile
            if box is not None:
                bx, by, bw, bh = box
                faces.append((round(x + bx, 1), round(ty + by, 1), round(bw, 1), round(bh, 1)))
                tags.append(tag + done)
            else:
                clutter.append((x, ty, tw, th))
            x += tw + int(rng.integers(GAP[0], GAP[1] + 1))
            row_h = max(row_h, ty - y + th)
        if row_h == 0:
            break
        y += row_h + int(rng.integers(GAP[0], GAP[1] + 1))
    return FaceFrame(image, faces, quality, tags, clutter)
