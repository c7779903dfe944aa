"""Face tracks across video frames: per-frame detections in, steady per-frame masks out.

Pure functions of boxes ([x, y, width, height] in pixels) and frame times; no I/O, numpy only.
A clip is a sequence of frames ``(frame_index, pts_seconds, [Detection, ...])`` in decoding
order; pts may be irregular (variable frame rate).  Frames are counted by their POSITION in that
sequence, so every frame of the clip (or window) must be passed, with or without detections.

* ``link`` joins detections into tracks, frame by frame: every live track predicts its box at
  the frame's pts (its last box, centre moved at the velocity of its last two detections), and
  detection/track pairs are matched greedily by descending IoU with the predicted or the last
  box (whichever is higher: a velocity from two jittery boxes can overshoot), each used once,
  if IoU >= ``LINK_IOU``.  A detection
  left over starts a track.  A track ends when it has gone unmatched for more than
  ``max_gap_s`` seconds (``--track-gap``, default ``MAX_GAP_S``).
* ``track_faces`` turns the tracks into masks: frames of a track between two of its
  detections get the box interpolated linearly in pts; the mask starts ``lead_frames`` frames
  before a track's first detection and ends ``lead_frames`` after its last, at the first/last
  box, or, when that box is near the frame's edge (given ``size``), moving at the track's
  velocity for as long as it is in the frame, up to ``EDGE_EXIT_S`` seconds (a face entering
  or leaving); centre and size are then averaged over a centred window of ``smooth_frames`` frames,
  and at a detected frame the box is grown to cover the detection.  Masks not at a detection
  are marked ``tracked=True``.  Track ids count from 0 in order of first appearance (frame,
  then detection rank: descending score, then box).
* ``track_segment`` computes the masks of a segment's own frames from the segment plus
  ``required_overlap`` frames on each side, and gives the same boxes and flags as
  ``track_faces`` on the whole clip (see ``required_overlap`` for the reasoning and its one
  assumption).  Its track ids are SEGMENT-LOCAL (from 0 in order of first appearance in the
  segment's own frames): a track can start long before a segment, so a clip-wide id cannot be
  computed from a bounded window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .face_quality import iou

LINK_IOU = 0.3  # least IoU between a detection and a track's predicted box to link them
MAX_GAP_S = 0.3  # a track unmatched for longer than this (seconds) ends: --track-gap
LEAD_FRAMES = 3  # frames masked before a track's first and after its last detection
SMOOTH_FRAMES = 5  # centred moving-average window over a track's boxes (odd, frames)
PTS_EPS = 1e-9  # tolerance on pts comparisons (seconds)
# Faces entering or leaving the frame: the detector loses a face cut by the frame's edge before
# less than half of it is inside, and finds one coming in only once enough of it is. A track whose
# last (first) box is within EDGE_NEAR times its longer side of the frame's edge keeps its mask
# after (before) that box, moving at the track's velocity (fitted to its detections within
# VELOCITY_S of that end), until the box is out of the frame, for at most EDGE_EXIT_S seconds.
# Read when called (EDGE_EXIT_S = 0 turns this off); it needs the frame's size (``size``).
EDGE_EXIT_S = 1.0
EDGE_NEAR = 0.5
VELOCITY_S = 0.3

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One face detection in a frame: [x, y, width, height] in pixels and a score."""

    box: Box
    score: float


@dataclass(frozen=True)
class TrackedFace:
    """A face mask in a frame: box, score, track id, and whether it is inferred (not detected)."""

    box: Box
    score: float
    track: int
    tracked: bool


Frame = tuple[int, float, Sequence[Detection]]
Track = list[tuple[int, Detection]]  # (frame position, detection), in frame order


def _ranked(detections: Sequence[Detection]) -> list[Detection]:
    """Detections in rank order: descending score, then box."""
    return sorted(detections, key=lambda d: (-d.score, tuple(d.box)))


def _predict(track: Track, pts: Sequence[float], t: float) -> np.ndarray:
    """The track's box at time ``t``: its last box, moved at the velocity of its last two detections."""
    last_pos, last = track[-1]
    box = np.asarray(last.box, dtype=float)
    if len(track) < 2:
        return box
    prev_pos, prev = track[-2]
    dt = pts[last_pos] - pts[prev_pos]
    if dt <= 0:
        return box
    prev_box = np.asarray(prev.box, dtype=float)
    velocity = (box[:2] + box[2:] / 2 - prev_box[:2] - prev_box[2:] / 2) / dt  # of the centre
    return np.concatenate([box[:2] + velocity * (t - pts[last_pos]), box[2:]])


def link(frames: Sequence[Frame], max_gap_s: float = MAX_GAP_S, link_iou: float = LINK_IOU) -> list[Track]:
    """Tracks of detections, in order of first appearance (list index = track id)."""
    pts = [float(f[1]) for f in frames]
    tracks: list[Track] = []
    live: list[int] = []
    for pos, (_, t, detections) in enumerate(frames):
        live = [k for k in live if t - pts[tracks[k][-1][0]] <= max_gap_s + PTS_EPS]
        ranked = _ranked(detections)
        pairs = []
        for k in live:
            pred = _predict(tracks[k], pts, t)
            last_pos = tracks[k][-1][0]
            last_rank = _ranked(frames[last_pos][2]).index(tracks[k][-1][1])
            for r, det in enumerate(ranked):
                overlap = max(iou(pred, det.box), iou(tracks[k][-1][1].box, det.box))
                if overlap >= link_iou:
                    # tie-break on the track's last detection, which is the same in any window
                    pairs.append((-overlap, last_pos, last_rank, r, k))
        pairs.sort()
        used_tracks: set[int] = set()
        used_dets: set[int] = set()
        for _, _, _, r, k in pairs:
            if k in used_tracks or r in used_dets:
                continue
            used_tracks.add(k)
            used_dets.add(r)
            tracks[k].append((pos, ranked[r]))
        for r, det in enumerate(ranked):
            if r not in used_dets:
                tracks.append([(pos, det)])
                live.append(len(tracks) - 1)
    return tracks


def _centre(box: Sequence[float]) -> np.ndarray:
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2], dtype=float)


def _near_edge(box: np.ndarray, size: tuple[int, int]) -> bool:
    """Whether ``box`` is within EDGE_NEAR of its longer side from the frame's edge."""
    x, y, w, h = box
    margin = EDGE_NEAR * max(w, h)
    return x <= margin or y <= margin or x + w >= size[0] - margin or y + h >= size[1] - margin


def _in_frame(box: np.ndarray, size: tuple[int, int]) -> bool:
    x, y, w, h = box
    return x + w > 0 and y + h > 0 and x < size[0] and y < size[1]


def _end_velocity(track: Track, pts: Sequence[float], at_end: bool) -> np.ndarray:
    """The centre's velocity (px/s), least squares over the detections within VELOCITY_S of an end."""
    t_end = pts[track[-1][0] if at_end else track[0][0]]
    near = [(pts[p], _centre(d.box)) for p, d in track if abs(pts[p] - t_end) <= VELOCITY_S + PTS_EPS]
    t = np.array([n[0] for n in near])
    c = np.array([n[1] for n in near])
    spread = ((t - t.mean()) ** 2).sum()
    if len(near) < 2 or spread <= 0:
        return np.zeros(2)
    return ((t - t.mean())[:, None] * (c - c.mean(axis=0))).sum(axis=0) / spread


def _lead(track: Track, pts: Sequence[float], n: int, lead_frames: int, size: tuple[int, int] | None,
          at_end: bool) -> dict[int, tuple]:
    """Masks after a track's last detection (``at_end``) or before its first one.

    ``lead_frames`` frames at that detection's box; if the box is near the frame's edge, moving at
    the track's velocity, and on until the box is out of the frame or EDGE_EXIT_S has passed.
    """
    pos, det = track[-1] if at_end else track[0]
    box = np.asarray(det.box, dtype=float)
    edge = size is not None and EDGE_EXIT_S > 0 and _near_edge(box, size)
    velocity = _end_velocity(track, pts, at_end) if edge else np.zeros(2)
    step = 1 if at_end else -1
    out: dict[int, tuple] = {}
    for k, p in enumerate(range(pos + step, n if at_end else -1, step), start=1):
        dt = pts[p] - pts[pos]
        moved = np.concatenate([box[:2] + velocity * dt, box[2:]])
        if k > lead_frames and not (edge and abs(dt) <= EDGE_EXIT_S + PTS_EPS and _in_frame(moved, size)):
            break
        out[p] = (moved, det.score, None)
    return out


def _raw_boxes(track: Track, pts: Sequence[float], n: int, lead_frames: int,
               size: tuple[int, int] | None = None) -> dict[int, tuple]:
    """Per-position (box, score, detection or None) of a track before smoothing."""
    out = _lead(track, pts, n, lead_frames, size, at_end=False)
    for (pa, a), (pb, b) in zip(track, track[1:], strict=False):
        out[pa] = (np.asarray(a.box, dtype=float), a.score, a)
        span = pts[pb] - pts[pa]
        for p in range(pa + 1, pb):
            w = (pts[p] - pts[pa]) / span if span > 0 else 0.0
            box = (1 - w) * np.asarray(a.box, dtype=float) + w * np.asarray(b.box, dtype=float)
            out[p] = (box, (1 - w) * a.score + w * b.score, None)
    last_pos, last = track[-1]
    out[last_pos] = (np.asarray(last.box, dtype=float), last.score, last)
    out.update(_lead(track, pts, n, lead_frames, size, at_end=True))
    return out


def _smooth(raw: dict[int, tuple], smooth_frames: int) -> dict[int, np.ndarray]:
    """Boxes averaged in centre and size over a centred window, grown to cover detections."""
    half = max(0, smooth_frames // 2)
    positions = sorted(raw)
    cs = {p: np.concatenate([raw[p][0][:2] + raw[p][0][2:] / 2, raw[p][0][2:]]) for p in positions}
    out = {}
    for p in positions:
        window = [cs[q] for q in range(p - half, p + half + 1) if q in cs]
        cx, cy, w, h = np.mean(window, axis=0)
        box = np.array([cx - w / 2, cy - h / 2, w, h])
        det = raw[p][2]
        if det is not None:
            d = np.asarray(det.box, dtype=float)
            x0, y0 = min(box[0], d[0]), min(box[1], d[1])
            x1, y1 = max(box[0] + box[2], d[0] + d[2]), max(box[1] + box[3], d[1] + d[3])
            box = np.array([x0, y0, x1 - x0, y1 - y0])
        out[p] = box
    return out


def masks(frames: Sequence[Frame], tracks: Sequence[Track], lead_frames: int = LEAD_FRAMES,
          smooth_frames: int = SMOOTH_FRAMES, size: tuple[int, int] | None = None) -> list[list[TrackedFace]]:
    """Per-frame masks of linked tracks: gaps filled, lead-in/out added, boxes smoothed.

    ``size`` (width, height): the frame's, to carry tracks that enter or leave it (None: no edge).
    """
    pts = [float(f[1]) for f in frames]
    out: list[list[TrackedFace]] = [[] for _ in frames]
    for k, track in enumerate(tracks):
        raw = _raw_boxes(track, pts, len(frames), lead_frames, size)
        for p, box in _smooth(raw, smooth_frames).items():
            score, det = raw[p][1], raw[p][2]
            out[p].append(TrackedFace(tuple(float(v) for v in box), float(score), k, det is None))
    return out


def track_faces(frames: Sequence[Frame], max_gap_s: float = MAX_GAP_S, lead_frames: int = LEAD_FRAMES,
                smooth_frames: int = SMOOTH_FRAMES, size: tuple[int, int] | None = None
                ) -> list[list[TrackedFace]]:
    """Per-frame masks of a whole clip's detections (``size``: the frame's width and height)."""
    return masks(frames, link(frames, max_gap_s), lead_frames, smooth_frames, size)


def gap_frames(fps: float, max_gap_s: float = MAX_GAP_S) -> int:
    """Most frames a gap of ``max_gap_s`` can span at ``fps`` (the clip's highest frame rate)."""
    return math.ceil(max_gap_s * fps - PTS_EPS)


def required_overlap(fps: float, max_gap_s: float = MAX_GAP_S, lead_frames: int = LEAD_FRAMES,
                     smooth_frames: int = SMOOTH_FRAMES) -> int:
    """Frames of overlap on each side of a segment for ``track_segment`` to match the whole clip.

    With G = ``gap_frames(fps, max_gap_s)`` (fps: the clip's highest frame rate), R =
    ``smooth_frames // 2``, L = ``lead_frames`` and X = the frames that EDGE_EXIT_S plus
    VELOCITY_S span (0 when EDGE_EXIT_S is 0), a mask at frame f depends on the track's boxes at
    f +- R, each of which depends on the detections within max(G, L, X) frames of it
    (interpolation spans at most G frames, lead at most L, an entering or leaving face's mask at
    most EDGE_EXIT_S seconds from the detection it starts from, whose velocity is fitted to the
    detections within VELOCITY_S of it): reach = R + max(G, L, X).  Linking is causal, so after
    the segment ``reach`` frames suffice.  Before it, the linking must also have forgotten the
    frames cut off: a track unmatched for G frames has ended, and a track's state (its last two
    detections) lies within 2G frames, so 2G frames of warm-up are added.
    Assumption: a face's link decisions do not hinge on its velocity from before the window or
    on a track that ended before it (true when each face's consecutive boxes overlap by
    ``LINK_IOU`` and faces do not compete for a detection at the window's start).
    """
    edge = gap_frames(fps, EDGE_EXIT_S) + gap_frames(fps, VELOCITY_S) if EDGE_EXIT_S > 0 else 0
    reach = smooth_frames // 2 + max(gap_frames(fps, max_gap_s), lead_frames, edge)
    return reach + 2 * gap_frames(fps, max_gap_s)


def track_segment(frames: Sequence[Frame], first: int, last: int, max_gap_s: float = MAX_GAP_S,
                  lead_frames: int = LEAD_FRAMES, smooth_frames: int = SMOOTH_FRAMES,
                  size: tuple[int, int] | None = None) -> list[tuple[int, list[TrackedFace]]]:
    """Masks of frames ``first``..``last`` (frame indices, inclusive) from a window holding overlap.

    ``frames`` is the segment's frames plus ``required_overlap`` frames before and after (fewer
    at the clip's ends).  Returns ``(frame_index, masks)`` for the segment's own frames; track
    ids are segment-local, from 0 in order of first appearance in those frames.
    """
    result = track_faces(frames, max_gap_s, lead_frames, smooth_frames, size)
    own = [(f[0], faces) for f, faces in zip(frames, result, strict=True) if first <= f[0] <= last]
    ids: dict[int, int] = {}
    out = []
    for index, faces in own:
        for face in faces:
            ids.setdefault(face.track, len(ids))
        out.append((index, [TrackedFace(f.box, f.score, ids[f.track], f.tracked) for f in faces]))
    return out
