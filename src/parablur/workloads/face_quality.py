"""Detection quality against true boxes: matches at IoU >= 0.3, recall and false positives.

Pure functions of boxes ([x, y, width, height] in pixels). Detections are matched
greedily, best score first, each to the unmatched true box it overlaps most (as in
the PASCAL VOC evaluation). True faces smaller than ``min_size`` (longer side) are
not counted in recall, and a detection matching one is not a false positive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

IOU_MIN = 0.3
MIN_SIZE = 32


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


@dataclass(frozen=True)
class ImageQuality:
    """One image's detections against its true faces."""

    faces: int  # true faces at least min_size
    found: int  # of those, matched by a detection
    false_positives: int  # detections that match no true face


def score_image(detections: Sequence[Mapping], truths: Sequence[Sequence[float]], *,
                min_size: float = MIN_SIZE, iou_min: float = IOU_MIN) -> ImageQuality:
    """Score one image's detections (records with "box" and "score") against its true boxes."""
    pairs = match(detections, truths, iou_min)
    counted = [j for j, t in enumerate(truths) if max(t[2], t[3]) >= min_size]
    matched = {j for _, j in pairs}
    return ImageQuality(faces=len(counted), found=sum(1 for j in counted if j in matched),
                        false_positives=len(detections) - len(pairs))


@dataclass(frozen=True)
class Quality:
    """Detection quality over a dataset."""

    images: int
    faces: int
    found: int
    false_positives: int

    @property
    def recall(self) -> float | None:
        """Share of true faces (at least the minimum size) that were found; None without faces."""
        return self.found / self.faces if self.faces else None

    @property
    def false_positives_per_image(self) -> float | None:
        return self.false_positives / self.images if self.images else None

    def to_dict(self) -> dict:
        return {"images": self.images, "faces": self.faces, "found": self.found,
                "false_positives": self.false_positives, "recall": self.recall,
                "false_positives_per_image": self.false_positives_per_image}


def summarize(images: Iterable[ImageQuality]) -> Quality:
    """Totals over images: recall pools every face, false positives are per image."""
    images = list(images)
    return Quality(images=len(images), faces=sum(q.faces for q in images),
                   found=sum(q.found for q in images),
                   false_positives=sum(q.false_positives for q in images))


def found_again(before: Sequence[Mapping], after: Sequence[Mapping], iou_min: float = IOU_MIN) -> int:
    """How many faces detected before anonymization are detected again on its output."""
    return len(match(after, [face["box"] for face in before], iou_min))
