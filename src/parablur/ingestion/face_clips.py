"""Generated video clips with real faces, a moving camera, an audio track, and every face's true box.

A clip is a still scene larger than the frame (``SCENE_MARGIN`` times each side) with 1..MAX_FACES real
faces pasted in (``faces.generate_face_image``), and maybe one more face that walks across the scene on
its own. A camera pans smoothly across the scene (an eased straight path from one window position to
another) while zooming in or out a little, so the faces move and change size in the frame. Frame ``i``
is the camera's window at time ``i / fps`` resampled to the frame size, made only when asked for: a
clip's memory does not grow with its length.

Every face's true box in a frame is its box in the scene carried through the same camera transform
as the pixels (an exact affine map), clipped to the frame; a face more than half outside the frame is
not in that frame's truth. ``write_face_clip`` writes the clip as an .mp4 (H.264 yuv420p at a constant
frame rate, a keyframe every ``gop_s`` seconds (``GOP_SECONDS`` by default), and an AAC chirp of
the same duration) and returns the truth in a JSON-ready form for a manifest entry.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .faces import CONTEXT, MAX_ROTATION_DEG, Box, FaceSource, _paste, available_sources, generate_face_image

__all__ = ["ClipStopped", "FaceClip", "generate_face_clip", "write_face_clip"]

SCENE_MARGIN = 1.3  # the scene is this many times the frame on each side
ZOOM = (1.0, 1.15)  # the camera's magnification (frame pixels per scene pixel) stays in this range
MIN_PAN = 0.5  # the pan covers at least this share of the scene's free room, on the longer axis
MOVER_CHANCE = 0.5  # the share of clips with one face that moves on its own
MIN_VISIBLE = 0.5  # a face with less than this share of its box inside the frame is not in its truth
GOP_SECONDS = 2.0
AUDIO_RATE = 48_000
_SALT = 4  # generate.py uses 1 and 2, faces.py 3
_MOVER_TRIES = 60


class ClipStopped(Exception):
    """``write_face_clip`` was told to stop before the clip was whole: no file was left."""


@dataclass(frozen=True)
class _Mover:
    """A face that walks in a straight line across the scene, in scene pixels."""

    source: FaceSource
    size: float
    angle: float
    brightness: float
    start: tuple[float, float]
    end: tuple[float, float]


@dataclass(frozen=True)
class FaceClip:
    """A generated clip: its frames (made lazily by ``frames``) and its faces' true boxes (``truth``)."""

    index: int
    width: int
    height: int
    fps: Fraction
    frame_count: int
    seed: int
    scene: np.ndarray = field(repr=False)  # BGR, the still faces pasted in
    scene_boxes: tuple[Box, ...]  # the still faces' boxes in scene pixels
    camera: tuple[tuple[float, float, float], tuple[float, float, float]]  # (cx, cy, zoom) from, to
    mover: _Mover | None = None
    audio_hz: tuple[float, float] = (330.0, 660.0)  # the chirp's start and end frequency

    @property
    def seconds(self) -> float:
        return float(self.frame_count / self.fps)

    def _time(self, i: int) -> float:
        """Frame ``i``'s place on the camera path, 0..1 eased (smooth start and stop)."""
        t = i / (self.frame_count - 1) if self.frame_count > 1 else 0.0
        return t * t * (3 - 2 * t)

    def camera_at(self, i: int) -> tuple[float, float, float]:
        """The camera at frame ``i``: the scene point at the frame's centre and the magnification."""
        e = self._time(i)
        (x0, y0, z0), (x1, y1, z1) = self.camera
        return x0 + (x1 - x0) * e, y0 + (y1 - y0) * e, z0 + (z1 - z0) * e

    def _matrix(self, i: int) -> np.ndarray:
        """The affine map from scene to frame coordinates (continuous: pixel k spans [k, k+1))."""
        cx, cy, zoom = self.camera_at(i)
        return np.array([[zoom, 0.0, self.width / 2 - cx * zoom],
                         [0.0, zoom, self.height / 2 - cy * zoom]])

    def _mover_center(self, i: int) -> tuple[float, float]:
        assert self.mover is not None
        t = i / (self.frame_count - 1) if self.frame_count > 1 else 0.0
        (x0, y0), (x1, y1) = self.mover.start, self.mover.end
        return x0 + (x1 - x0) * t, y0 + (y1 - y0) * t

    def _scene_at(self, i: int) -> tuple[np.ndarray, list[Box]]:
        """The scene at frame ``i`` and every face's box in it (scene pixels)."""
        boxes = list(self.scene_boxes)
        if self.mover is None:
            return self.scene, boxes
        scene = self.scene.copy()
        m = self.mover
        boxes.append(_paste(scene, m.source, m.size, m.angle, m.brightness, self._mover_center(i)))
        return scene, boxes

    def _frame_boxes(self, matrix: np.ndarray, boxes: list[Box]) -> list[Box]:
        zoom, dx, dy = float(matrix[0, 0]), float(matrix[0, 2]), float(matrix[1, 2])
        kept = []
        for x, y, w, h in boxes:
            fx, fy, fw, fh = x * zoom + dx, y * zoom + dy, w * zoom, h * zoom
            x0, y0 = max(0.0, fx), max(0.0, fy)
            x1, y1 = min(float(self.width), fx + fw), min(float(self.height), fy + fh)
            if x1 <= x0 or y1 <= y0 or (x1 - x0) * (y1 - y0) < MIN_VISIBLE * fw * fh:
                continue
            kept.append((round(float(x0), 1), round(float(y0), 1), round(float(x1 - x0), 1),
                         round(float(y1 - y0), 1)))
        return kept

    def frame(self, i: int) -> tuple[np.ndarray, list[Box]]:
        """Frame ``i`` (BGR uint8, height x width x 3) and the true boxes of the faces in it."""
        if not 0 <= i < self.frame_count:
            raise IndexError(f"frame {i} is not in 0..{self.frame_count - 1}")
        scene, boxes = self._scene_at(i)
        matrix = self._matrix(i)
        # warpAffine maps pixel centres: shift the continuous map by half a pixel on both sides.
        centred = matrix.copy()
        centred[:, 2] += (matrix[0, 0] - 1) * 0.5
        image = cv2.warpAffine(scene, centred, (self.width, self.height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        return image, self._frame_boxes(matrix, boxes)

    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order, one at a time."""
        for i in range(self.frame_count):
            yield self.frame(i)[0]

    def boxes(self, i: int) -> list[Box]:
        """The true boxes of frame ``i`` alone (no pixels are made, except a moving face's paste)."""
        if not 0 <= i < self.frame_count:
            raise IndexError(f"frame {i} is not in 0..{self.frame_count - 1}")
        boxes = list(self.scene_boxes)
        if self.mover is not None:
            # Paste onto a blank canvas (zeroed lazily): the same box as ``frame`` gets, bit for bit.
            m = self.mover
            boxes.append(_paste(np.zeros_like(self.scene), m.source, m.size, m.angle, m.brightness,
                                self._mover_center(i)))
        return self._frame_boxes(self._matrix(i), boxes)

    def truth(self) -> list[list[Box]]:
        """The true boxes of every frame."""
        return [self.boxes(i) for i in range(self.frame_count)]

    def manifest(self) -> dict:
        """The clip's truth for a manifest entry: fps, frame count, size and each frame's boxes."""
        fps: int | float = int(self.fps) if self.fps.denominator == 1 else float(self.fps)
        return {"fps": fps, "frames": self.frame_count, "width": self.width, "height": self.height,
                "faces": [[list(b) for b in frame] for frame in self.truth()]}

    def audio(self, start: int, count: int) -> np.ndarray:
        """Mono float32 samples ``start`` .. ``start + count`` of the clip's chirp at AUDIO_RATE."""
        t = np.arange(start, start + count, dtype=np.float64) / AUDIO_RATE
        f0, f1 = self.audio_hz
        rate = (f1 - f0) / max(self.seconds, 1e-9)
        phase = 2 * np.pi * (f0 * t + rate * t * t / 2)
        return (0.25 * np.sin(phase)).astype(np.float32)


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index) & 0xFFFFFFFF, _SALT])


def _camera(rng: np.random.Generator, width: int, height: int, scene_w: int, scene_h: int
            ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Start and end (cx, cy, zoom): the window stays inside the scene and travels far enough to see."""
    zooms = rng.uniform(*ZOOM, 2)
    ends = []
    for zoom in zooms:
        half_w, half_h = width / zoom / 2, height / zoom / 2
        ends.append(((half_w, scene_w - half_w), (half_h, scene_h - half_h), float(zoom)))
    # Pick the main axis and direction, then place both ends so the pan covers >= MIN_PAN of the room.
    u = rng.random((2, 2))
    flip = rng.random(2) < 0.5
    points = []
    for k, ((xlo, xhi), (ylo, yhi), zoom) in enumerate(ends):
        ux, uy = u[k]
        # End k sits in the first (k=0) or last (k=1) part of the room on each axis, mirrored by flip.
        ax = (1 - MIN_PAN) / 2 * ux if k == 0 else 1 - (1 - MIN_PAN) / 2 * ux
        ay = (1 - MIN_PAN) / 2 * uy if k == 0 else 1 - (1 - MIN_PAN) / 2 * uy
        ax = 1 - ax if flip[0] else ax
        ay = 1 - ay if flip[1] else ay
        points.append((float(xlo + ax * (xhi - xlo)), float(ylo + ay * (yhi - ylo)), zoom))
    return points[0], points[1]


def _mover(rng: np.random.Generator, scene_w: int, scene_h: int, boxes: list[Box], face_min_size: int,
           sources: tuple[FaceSource, ...]) -> _Mover | None:
    """Maybe a face that walks across the scene, its whole path clear of the still faces' patches."""
    chance, pick, u_size, angle, brightness = rng.random(5)
    tries = rng.random((_MOVER_TRIES, 4))
    largest = min(scene_w, scene_h) / 4
    if chance >= MOVER_CHANCE or largest < face_min_size:
        return None
    size = face_min_size * (largest / face_min_size) ** u_size
    radius = CONTEXT * size / 2 + 6
    if 2 * radius >= min(scene_w, scene_h):
        return None
    others = [(x + w / 2, y + h / 2, CONTEXT * max(w, h) / 2 + 6) for x, y, w, h in boxes]
    for u0, v0, u1, v1 in tries:
        start = (radius + u0 * (scene_w - 2 * radius), radius + v0 * (scene_h - 2 * radius))
        end = (radius + u1 * (scene_w - 2 * radius), radius + v1 * (scene_h - 2 * radius))
        if math.dist(start, end) < size:  # too little motion to matter
            continue
        steps = np.linspace(0.0, 1.0, 33)
        path = [(start[0] + (end[0] - start[0]) * s, start[1] + (end[1] - start[1]) * s) for s in steps]
        if all(math.hypot(px - ox, py - oy) > radius + orad + 2
               for px, py in path for ox, oy, orad in others):
            return _Mover(sources[int(pick * len(sources))], size, float(angle * 2 - 1) * MAX_ROTATION_DEG,
                          0.65 + float(brightness) * 0.65, start, end)
    return None


def generate_face_clip(index: int, width: int, height: int, *, seconds: float, fps: float | Fraction,
                       seed: int = 0, face_min_size: int = 32,
                       sources: tuple[FaceSource, ...] | None = None) -> FaceClip:
    """Clip ``index`` of the faces-video set: ``seconds`` long at ``fps``, ``width`` x ``height``.

    Deterministic from (seed, index) (and the face photos installed, as ``generate_face_image``).
    Faces are at least ``face_min_size`` pixels (longer side) in the scene, so at least that in every
    frame (the camera only magnifies), except where a box is clipped at the frame's edge.
    """
    if width < 16 or height < 16:
        raise ValueError(f"a clip must be at least 16x16, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    frame_count = round(seconds * rate)
    if frame_count < 1:
        raise ValueError(f"a clip needs at least one frame: {seconds} s at {fps} fps")
    sources = available_sources() if sources is None else sources
    scene_w, scene_h = math.ceil(width * SCENE_MARGIN), math.ceil(height * SCENE_MARGIN)
    scene, boxes = generate_face_image(index, scene_w, scene_h, seed, face_min_size, sources)
    rng = _rng(seed, index)
    camera = _camera(rng, width, height, scene_w, scene_h)
    mover = _mover(rng, scene_w, scene_h, boxes, face_min_size, sources)
    f0 = float(rng.uniform(220.0, 440.0))
    return FaceClip(index, width, height, rate, frame_count, seed, scene, tuple(boxes), camera, mover,
                    (f0, f0 * float(rng.uniform(1.5, 2.5))))


def write_face_clip(clip: FaceClip, dest: str | os.PathLike[str], *, codec: str = "libx264",
                    crf: int = 23, gop_s: float = GOP_SECONDS,
                    stop: Callable[[], bool] | None = None) -> dict:
    """Write ``clip`` to ``dest`` (.mp4: video and AAC audio); return its truth (``FaceClip.manifest``).

    ``dest`` is written under a hidden temporary name beside it and renamed when whole. ``stop``
    is asked before each frame: once it says True the write ends with ``ClipStopped`` (a fetch
    interrupted does not wait for its clips to be finished).
    """
    import av

    from parablur.video import ENCODER_OPTIONS

    dest = Path(dest)
    # Named as files.write_atomic names its temporary files, so files.remove_stale_temps clears
    # what a killed writer leaves, and two writers never share one.
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    gop = max(1, round(gop_s * clip.fps))
    options = {k: v.format(crf=crf) for k, v in ENCODER_OPTIONS.get(codec, {"crf": "{crf}"}).items()}
    if codec == "libx264":  # keyframes exactly every gop frames, none at scene cuts
        options["x264-params"] += f":keyint={gop}:min-keyint={gop}:scenecut=0"
    total_samples = round(clip.seconds * AUDIO_RATE)
    try:
        with av.open(os.fspath(tmp), "w", format="mp4",
                     container_options={"fflags": "+bitexact", "movflags": "+faststart"}) as out:
            video = out.add_stream(codec, rate=clip.fps, options=options)
            video.width, video.height, video.pix_fmt = clip.width, clip.height, "yuv420p"
            video.codec_context.gop_size = gop
            video.codec_context.max_b_frames = 0
            audio = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            chunk = audio.codec_context.frame_size or 1024
            sent = 0
            for i, image in enumerate(clip.frames()):
                if stop is not None and stop():
                    raise ClipStopped(f"stopped at frame {i} of {clip.frame_count}")
                frame = av.VideoFrame.from_ndarray(image, format="bgr24")
                frame.pts, frame.time_base = i, 1 / clip.fps
                out.mux(video.encode(frame))
                # Audio up to the end of this frame, in encoder-sized chunks (the last one may be short).
                upto = min(total_samples, round((i + 1) / clip.fps * AUDIO_RATE))
                while sent < upto and (upto - sent >= chunk or upto == total_samples):
                    count = min(chunk, upto - sent)
                    samples = av.AudioFrame.from_ndarray(clip.audio(sent, count)[None], format="fltp",
                                                         layout="mono")
                    samples.sample_rate, samples.pts = AUDIO_RATE, sent
                    samples.time_base = Fraction(1, AUDIO_RATE)
                    out.mux(audio.encode(samples))
                    sent += count
            out.mux(video.encode())
            out.mux(audio.encode())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return clip.manifest()
