"""Faces in video: detect per frame, track across frames, hide the tracked masks, one segment at a time.

``anonymize_segment`` processes one segment of a clip (``video.plan_segments``) on its own, so
segments can run in any order or place and be joined by ``video.join``:

1. it decodes the segment's frames plus ``tracking.required_overlap`` frames on each side (fewer
   at the clip's ends), one frame at a time, and keeps only each frame's detections (no pixels);
   faces are detected on every ``detect_every``-th frame of the CLIP (frame index divisible by it,
   so the choice does not depend on the segmentation); the other frames get no detections and
   rely on tracking to carry the masks across;
2. ``tracking.track_segment`` turns the window's detections into masks of the segment's frames;
3. ``video.encode_segment`` decodes the segment again and hides each frame's masks with
   ``faces.anonymize_regions`` (the FaceParams' style, shape and mask_scale).

Memory: one decoded frame (and its anonymized copy) at a time, plus the window's detections.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parablur.config import FaceParams
from parablur.records import record_line
from parablur.video import ClipInfo, Segment, Source, _frames, encode_segment
from parablur.workloads.face_quality import iou
from parablur.workloads.faces import Gaussian, anonymize_regions, default_gaussian, detect_faces
from parablur.workloads.tracking import (
    LEAD_FRAMES,
    MAX_GAP_S,
    Detection,
    Frame,
    TrackedFace,
    required_overlap,
    track_segment,
)

__all__ = ["SegmentRecord", "anonymize_segment", "clip_lines", "max_fps", "window"]

TRACK_MATCH_IOU = 0.3  # a track continues across a cut when its boxes on both sides overlap so


@dataclass(frozen=True)
class SegmentRecord:
    """What ``anonymize_segment`` did: the segment, its frames, and each frame with faces.

    ``faces`` holds, for each segment frame with at least one mask, ``{"frame": index, "pts":
    seconds, "faces": [{"box": [x, y, w, h], "score": s, "track": id, "tracked": bool}]}``;
    track ids are segment-local (see ``tracking.track_segment``).
    """

    segment: int
    frames: int
    window: tuple[int, int]  # first and last frame index decoded for tracking
    detected_frames: int  # frames the detector ran on
    faces: list[dict] = field(default_factory=list)
    detect_s: float = 0.0  # decoding the window and detecting
    encode_s: float = 0.0  # decoding the segment again, hiding and encoding


def max_fps(info: ClipInfo) -> float:
    """The clip's highest frame rate, from its smallest pts step (its nominal rate if one frame)."""
    step = info.smallest_step
    if step:
        return float(1 / (step * info.time_base))
    return float(info.rate) if info.rate else 30.0


def overlap_frames(info: ClipInfo, max_gap_s: float = MAX_GAP_S, lead_frames: int = LEAD_FRAMES) -> int:
    """Frames a segment decodes beyond each of its ends for tracking (``tracking.required_overlap``)."""
    return required_overlap(max_fps(info), max_gap_s, lead_frames)


def window(info: ClipInfo, segment: Segment, overlap: int) -> tuple[int, int, int, int]:
    """Frame indices (first, last) of the segment and (lo, hi) of it plus ``overlap`` on each side."""
    first = info.index_of(segment.start_pts)
    last = first + segment.frames - 1
    return first, last, max(0, first - overlap), min(info.frames - 1, last + overlap)


def _detections(source: Source, info: ClipInfo, lo: int, hi: int, params: FaceParams, model: Path,
                detect_every: int) -> tuple[list[Frame], int]:
    """The window's frames as (index, pts seconds, detections), decoding one frame at a time."""
    end = info.pts_at(hi + 1) if hi + 1 < info.frames else None
    span = Segment(-1, info.pts_at(lo), end, hi - lo + 1)
    frames: list[Frame] = []
    detected = 0
    for offset, frame in enumerate(_frames(source, info, span)):
        index = lo + offset
        seconds = float(frame.pts * info.time_base)
        found: list[Detection] = []
        if index % detect_every == 0:
            image = frame.to_ndarray(format="bgr24")
            found = [Detection(tuple(float(v) for v in f.box), float(f.score))
                     for f in detect_faces(image, params, model)]
            del image
            detected += 1
        del frame
        frames.append((index, seconds, found))
    return frames, detected


def _record(index: int, pts: float, faces: list[TrackedFace]) -> dict:
    return {"frame": index, "pts": round(pts, 6),
            "faces": [{"box": [round(v, 2) for v in f.box], "score": round(f.score, 4), "track": f.track,
                       "tracked": f.tracked} for f in faces]}


def anonymize_segment(source: Source, info: ClipInfo, segment: Segment, dest: str | os.PathLike[str], *,
                      params: FaceParams, model: Path, max_gap_s: float = MAX_GAP_S,
                      lead_frames: int = LEAD_FRAMES, detect_every: int = 1, codec: str | None = None,
                      crf: int = 18, gaussian: Gaussian = default_gaussian) -> SegmentRecord:
    """Encode ``segment`` to ``dest`` with its faces hidden; return what was hidden in which frame."""
    if detect_every < 1:
        raise ValueError(f"detect_every must be >= 1, got {detect_every}")
    started = time.perf_counter()
    overlap = overlap_frames(info, max_gap_s, lead_frames)
    first, last, lo, hi = window(info, segment, overlap)
    frames, detected = _detections(source, info, lo, hi, params, model, detect_every)
    masks = dict(track_segment(frames, first, last, max_gap_s, lead_frames, size=(info.width, info.height)))
    del frames
    detect_s = time.perf_counter() - started

    records: list[dict] = []

    def hide(image: np.ndarray, index: int, pts: float) -> np.ndarray:
        faces = masks.get(index, [])
        if not faces:
            return image
        records.append(_record(index, pts, faces))
        return anonymize_regions(image, [f.box for f in faces], style=params.style, shape=params.shape,
                                 mask_scale=params.mask_scale, gaussian=gaussian)

    started = time.perf_counter()
    written = encode_segment(source, info, segment, hide, dest, codec=codec, crf=crf)
    return SegmentRecord(segment.index, written, (lo, hi), detected, records, detect_s,
                         time.perf_counter() - started)


def clip_lines(name: str, segments: Sequence[dict]) -> list[str]:
    """A clip's record lines, one per frame with faces (``record_line``, "image" the clip's key),
    in frame order, its segments' track ids made clip-wide.

    A track that crosses a cut has a box in the last frame before it and in the first frame
    after it; the two overlap (the segments computed them from the same overlapping frames),
    so a track after a cut takes the id of the track before it whose box it overlaps most
    (IoU >= ``TRACK_MATCH_IOU``, each used once); any other gets the next free id.
    """
    lines: list[str] = []
    next_id = 0
    before: dict[int, list[float]] = {}  # clip-wide id -> box in the last frame of the previous segment
    last_frame = -2
    for seg in segments:
        entries = sorted(seg.get("records", []), key=lambda e: e["frame"])
        ids: dict[int, int] = {}
        first = entries[0] if entries else None
        if first is not None and first["frame"] == last_frame + 1 and before:
            pairs = sorted(((iou(f["box"], box), f["track"], gid)
                            for f in first["faces"] for gid, box in before.items()), reverse=True)
            used: set[int] = set()
            for score, local, gid in pairs:
                if score < TRACK_MATCH_IOU or local in ids or gid in used:
                    continue
                ids[local] = gid
                used.add(gid)
        before = {}
        for entry in entries:
            faces = []
            for face in entry["faces"]:
                if face["track"] not in ids:
                    ids[face["track"]] = next_id
                    next_id += 1
                faces.append({**face, "track": ids[face["track"]]})
            lines.append(record_line(name, {**entry, "faces": faces}))
        if entries:
            last = entries[-1]
            last_frame = last["frame"]
            before = {ids[f["track"]]: f["box"] for f in last["faces"]}
        else:
            last_frame = -2
    return lines
