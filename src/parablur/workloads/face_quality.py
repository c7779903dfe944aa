"""Detection quality against true boxes: matches at IoU >= 0.3, recall and false positives;
and, for video, how many true faces an anonymized clip still shows.

Pure functions of boxes ([x, y, width, height] in pixels). Detections are matched
greedily, best score first, each to the unmatched true box it overlaps most (as in
the PASCAL VOC evaluation).

Recall counts the true faces at least ``MIN_HEIGHT`` (16 px) tall, whatever the
detector was asked to find (``--face-min-size``): a face the settings leave out is a
face left visible. It is given overall and by band of the true box's height
(``BANDS``: 16 to 20, 20 to 30, 30 to 45, 45 px and over; each band includes its
lower edge). A true face under ``MIN_HEIGHT`` counts nowhere: it is not in recall,
and a detection matching it is not a false positive (nor is it found).

``exposed_face_frames`` judges an anonymized clip by its pixels alone, frame by frame: a
true face whose region the output left (nearly) as it was is still exposed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

IOU_MIN = 0.3
MIN_SIZE = 32  # exposed_face_frames: a clipped box's longer side below this is not counted
#: The shortest true face (box height, px) that recall counts: the issue's target is
#: >= 99.5% of the faces at least 16 px tall.
MIN_HEIGHT = 16
#: Recall's bands of the true box's height: (name, lowest height, height it stays under).
BANDS: tuple[tuple[str, float, float], ...] = (
    ("16_to_20px", MIN_HEIGHT, 20), ("20_to_30px", 20, 30), ("30_to_45px", 30, 45),
    ("45px_up", 45, math.inf))
# A true face's region whose mean absolute difference to the source (over its pixels and
# channels, 0..255) is at most this was left as it was: the face is still exposed. Re-encoding
# alone (x264 CRF 18 to 28, generated 1280x720 face clips) moved a face's region by 2.1 to 6.5.
MIN_DIFF = 8.0


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x, y, width, height] boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match(detections: Sequence[Mapping], truths: Sequence[Sequence[float]],
          iou_min: float = IOU_MIN) -> list[tuple[int, int]]:
    """Pairs (detection index, truth index), greedily by descending score, each used once."""
    order = sorted(range(len(detections)), key=lambda i: -float(detections[i]["score"]))
    free = set(range(len(truths)))
    pairs = []
    for i in order:
        best, best_iou = None, iou_min
        for j in sorted(free):
            overlap = iou(detections[i]["box"], truths[j])
            if overlap >= best_iou:
                best, best_iou = j, overlap
        if best is not None:
            free.discard(best)
            pairs.append((i, best))
    return pairs


def band_of(height: float) -> int | None:
    """The index in ``BANDS`` of a true face ``height`` px tall; None under ``MIN_HEIGHT``."""
    return next((i for i, (_, low, high) in enumerate(BANDS) if low <= height < high), None)


@dataclass(frozen=True)
class ImageQuality:
    """One image's detections against its true faces at least ``MIN_HEIGHT`` tall."""

    faces: int  # true faces at least MIN_HEIGHT tall
    found: int  # of those, matched by a detection
    false_positives: int  # detections that match no true face
    band_faces: tuple[int, ...] = (0,) * len(BANDS)  # ``faces`` by band of BANDS
    band_found: tuple[int, ...] = (0,) * len(BANDS)  # ``found`` by band of BANDS


def score_image(detections: Sequence[Mapping], truths: Sequence[Sequence[float]], *,
                min_height: float = MIN_HEIGHT, iou_min: float = IOU_MIN) -> ImageQuality:
    """Score one image's detections (records with "box" and "score") against its true boxes.

    ``min_height`` (at least ``MIN_HEIGHT``) narrows what is counted, for a test that asks
    about the larger faces only: a true face shorter counts nowhere, as one under 16 px.
    """
    pairs = match(detections, truths, iou_min)
    matched = {j for _, j in pairs}
    band_faces, band_found = [0] * len(BANDS), [0] * len(BANDS)
    for j, t in enumerate(truths):
        band = band_of(t[3])
        if band is not None and t[3] >= min_height:
            band_faces[band] += 1
            band_found[band] += j in matched
    return ImageQuality(faces=sum(band_faces), found=sum(band_found),
                        false_positives=len(detections) - len(pairs),
                        band_faces=tuple(band_faces), band_found=tuple(band_found))


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Quality:
    """Detection quality over a dataset."""

    images: int
    faces: int
    found: int
    false_positives: int
    band_faces: tuple[int, ...] = (0,) * len(BANDS)
    band_found: tuple[int, ...] = (0,) * len(BANDS)

    @property
    def recall(self) -> float | None:
        """Share of the true faces at least ``MIN_HEIGHT`` tall that were found; None without any."""
        return _share(self.found, self.faces)

    @property
    def band_recall(self) -> tuple[float | None, ...]:
        """Recall by band of ``BANDS`` (None for a band without a face)."""
        return tuple(_share(f, n) for f, n in zip(self.band_found, self.band_faces, strict=True))

    @property
    def false_positives_per_image(self) -> float | None:
        return self.false_positives / self.images if self.images else None

    def to_dict(self) -> dict:
        """The figures, headline first: what ``bench`` prints, the summary JSON holds and the
        results CSV keeps (``results.QUALITY_COLUMNS``: nested keys joined by "_")."""
        names = [name for name, _, _ in BANDS]
        return {"recall": self.recall,
                "recall_by_height": dict(zip(names, self.band_recall, strict=True)),
                "false_positives_per_image": self.false_positives_per_image,
                "images": self.images, "faces": self.faces, "found": self.found,
                "false_positives": self.false_positives,
                "found_by_height": dict(zip(names, self.band_found, strict=True)),
                "faces_by_height": dict(zip(names, self.band_faces, strict=True))}


def summarize(images: Iterable[ImageQuality]) -> Quality:
    """Totals over images: recall pools every face, false positives are per image."""
    images = list(images)

    def by_band(attr: str) -> tuple[int, ...]:
        return tuple(sum(getattr(q, attr)[b] for q in images) for b in range(len(BANDS)))

    return Quality(images=len(images), faces=sum(q.faces for q in images),
                   found=sum(q.found for q in images),
                   false_positives=sum(q.false_positives for q in images),
                   band_faces=by_band("band_faces"), band_found=by_band("band_found"))


def found_again(before: Sequence[Mapping], after: Sequence[Mapping], iou_min: float = IOU_MIN) -> int:
    """How many faces detected before anonymization are detected again on its output."""
    return len(match(after, [face["box"] for face in before], iou_min))


@dataclass(frozen=True)
class Exposure:
    """True face-frames of a clip that its anonymized output still shows, of those counted.

    ``inner_*`` counts only the faces whose box does not touch the frame's edge (whole faces:
    a face cut by the edge is harder to find).
    """

    frames: int
    exposed: int
    total: int
    inner_exposed: int
    inner_total: int

    @property
    def exposed_fraction(self) -> float | None:
        """Share of the counted face-frames still exposed; None when none was counted."""
        return self.exposed / self.total if self.total else None

    @property
    def inner_exposed_fraction(self) -> float | None:
        """``exposed_fraction`` of the faces off the frame's edge."""
        return self.inner_exposed / self.inner_total if self.inner_total else None

    def to_dict(self) -> dict:
        return {"frames": self.frames, "exposed": self.exposed, "total": self.total,
                "inner_exposed": self.inner_exposed, "inner_total": self.inner_total,
                "exposed_fraction": self.exposed_fraction,
                "inner_exposed_fraction": self.inner_exposed_fraction}


def exposed_face_frames(source_frames: Iterable[np.ndarray], output_frames: Iterable[np.ndarray],
                        truth: Iterable[Sequence[Sequence[float]]], *, min_box: float = MIN_SIZE,
                        min_diff: float = MIN_DIFF) -> Exposure:
    """Count the true face-frames whose region ``output_frames`` left within ``min_diff`` of
    ``source_frames`` (mean absolute difference): faces still exposed, of all counted.

    The three iterables run in step, one frame at a time (BGR arrays, e.g. decoded by PyAV,
    and each frame's true boxes [x, y, w, h], e.g. a clip's manifest ``video["faces"]``), so
    memory stays flat however long the clip. Each box is taken as the pixels it touches,
    clipped to the frame; a clipped box whose longer side is under ``min_box`` is not counted.
    Raises ValueError when the three do not have the same number of frames, or a source frame
    and its output differ in size.
    """
    frames = exposed = total = inner_exposed = inner_total = 0
    end = object()
    sources, outputs, truths = iter(source_frames), iter(output_frames), iter(truth)
    while True:
        a, b, boxes = next(sources, end), next(outputs, end), next(truths, end)
        if a is end or b is end or boxes is end:
            if not (a is end and b is end and boxes is end):
                raise ValueError(f"source, output and truth differ in frame count: after {frames} "
                                 "frames only some of them go on")
            break
        if a.shape != b.shape:
            raise ValueError(f"frame {frames}: source {a.shape} and output {b.shape} differ in size")
        height, width = a.shape[:2]
        for x, y, w, h in boxes:
            x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
            x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
            if x1 <= x0 or y1 <= y0 or max(x1 - x0, y1 - y0) < min_box:
                continue
            region = np.abs(a[y0:y1, x0:x1].astype(np.int16) - b[y0:y1, x0:x1].astype(np.int16))
            still = bool(region.mean() <= min_diff)
            total += 1
            exposed += still
            if x0 > 0 and y0 > 0 and x1 < width and y1 < height:
                inner_total += 1
                inner_exposed += still
        frames += 1
    return Exposure(frames, exposed, total, inner_exposed, inner_total)
