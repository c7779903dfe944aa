"""The review page: one static HTML page of a run's outputs, the doubtful ones first.

``parablur review OUTPUT_DIR`` writes ``review.html`` into a run's output location
(``OUTPUT_DIR/<executor>/``), beside the outputs it links to. Each image gets a thumbnail of
its output with its masks outlined and a crop of the output under each mask; each clip gets a
thumbnail and, per track, a strip of frames cropped from the output clip. Crops of the
originals appear only with ``show_originals``, and the page then says so in its first line.

The small JPEGs live under ParaBlur's hidden prefix ``REVIEW_PREFIX`` of the output location,
named by the output's key, the tag of its record line (``records.line_tag``) and its size
(``asset_tag``), so that a redone output gets new ones. ``parablur run --review`` has the workers
write an image's thumbnail and crops from the output they hold in memory (``write_assets``);
``review`` makes only what is missing (a clip's strips, or everything after a run without
``--review``), reading the records, the listing and the outputs it must thumbnail.

Nothing of the user's is touched: the page is written only over a page ``review`` wrote,
crops of the originals go under their own hidden prefix (``ORIGINALS_PREFIX``), removed when
the page is made again without them.
"""

from __future__ import annotations

import hashlib
import html
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import cv2
import numpy as np

from .config import EXECUTORS, FaceParams
from .dataset import is_video_key
from .errors import DatasetError, ParaBlurError
from .files import OUTPUT_MARKER, marker_command
from .records import RecordLog
from .storage import Store, open_store
from .workloads.faces import _to_bgr8, region

PAGE_NAME = "review.html"
REVIEW_PREFIX = ".parablur-review"  # thumbnails and crops of the outputs
ORIGINALS_PREFIX = ".parablur-review-originals"  # crops of the originals (--show-originals)
# The record files a run leaves beside its outputs (faces', a MODULE:FUNCTION workload's).
RECORD_FILES = ("detections.jsonl", "records.jsonl")
# A face scoring less than this above the run's threshold is doubtful: YuNet scores most true
# faces over 0.8, and most of its false detections (glasses, a neck, patterns) under 0.65.
NEAR_THRESHOLD = 0.15
THUMB_SIDE = 240  # a thumbnail's longer side, in pixels
CROP_SIDE = 96  # a mask's crop: a square of this side, the crop fitted inside
# The longest review JPEG name: most file systems take 255 bytes, less a store's temporary
# name around it while it is written (".NAME.<8 hex>.part").
NAME_BYTES = 200
PAGE_ENTRIES = 120  # outputs per page of the review page (only the page shown loads its images)
STRIP_FRAMES = 6  # frames in a track's strip, spread evenly over the track
ASSET_QUALITY = 80  # JPEG quality of thumbnails and crops
CLIP_CONTEXT = 1.3  # a clip's crop: the box grown by this factor (its records keep no mask scale)
# A page review wrote carries this line: only such a page is ever written over.
PAGE_MARK = '<meta name="generator" content="parablur review">'
# How a face was found (its record's "look", from the detector) and what makes it doubtful.
ORDINARY_LOOKS = (None, "pyramid")
_LOOK_REASONS = {"close-up": "second look", "edge": "found past the edge",
                 "centerface": "found by CenterFace"}


# -- what a record holds ---------------------------------------------------------------------

def faces_of(record: Mapping | None) -> list[dict]:
    """The boxed detections of a record: each item ``{"box": [x, y, w, h], ...}`` of its
    ``"faces"`` (faces' records, and any workload's that keeps boxes the same way)."""
    if not record:
        return []
    return [f for f in record.get("faces") or [] if isinstance(f, dict) and _is_box(f.get("box"))]


def _is_box(box: object) -> bool:
    return isinstance(box, list | tuple) and len(box) == 4 and all(_number(v) is not None for v in box)


def _number(value: object) -> float | None:
    """``value`` when a record holds a finite number there (a user's record may hold anything)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


class Rule(NamedTuple):
    """What a record's detections are judged by: the run's threshold and detector."""

    threshold: float
    detector: str | None


def rule_of(record: Mapping | None) -> Rule:
    """The detector threshold the record was made with (a clip's lines keep none: the default),
    and its detector (the look of each face it found alone is an ordinary one)."""
    params = (record or {}).get("params")
    value = params.get("threshold") if isinstance(params, dict) else None
    detector = params.get("detector") if isinstance(params, dict) else None
    return Rule(float(value) if isinstance(value, int | float) else FaceParams().threshold,
                detector if isinstance(detector, str) else None)


def face_doubts(face: Mapping, rule: Rule) -> list[str]:
    """Why one detection is doubtful: a score within ``NEAR_THRESHOLD`` of the threshold, found
    by a second look or past the edge, or by a detector other than the run's own (its
    ``"look"``), or kept by tracking; [] when it is not."""
    why = []
    score = face.get("score")
    if isinstance(score, int | float) and score < rule.threshold + NEAR_THRESHOLD:
        why.append("near threshold")
    look = face.get("look")
    if look not in ORDINARY_LOOKS and look != rule.detector:
        why.append(_LOOK_REASONS.get(look, f"found by {look}"))
    if face.get("tracked"):
        why.append("kept by tracking")
    return why


def mask_rects(record: Mapping, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Each face's mask region (x0, y0, x1, y1): its box grown by its ``mask_scale``."""
    params = record.get("params")
    scale = _number(params.get("mask_scale")) if isinstance(params, dict) else None
    return [region(f["box"], float(_number(f.get("mask_scale")) or scale or 1.0), width, height)
            for f in faces_of(record)]


# -- small JPEGs -----------------------------------------------------------------------------

def asset_tag(line_tag: str, size: int) -> str:
    """What an output's review JPEGs are named by: the tag of its record line and its size in
    bytes, so that an output redone with the same record but other pixels (another function,
    ParaBlur version or encoding) gets new ones. The size is in every listing; an output of
    another content and the very same size and record (an uncompressed format) is not told apart."""
    return f"{line_tag}-{size}"


def asset_key(prefix: str, output: str, tag: str, kind: str = "") -> str:
    """The hidden key of one of ``output``'s review JPEGs: its thumbnail (``kind`` ""), its
    crops (".crops") or its tracks' strips (".tracks"). A name too long to take the suffix
    (over ``NAME_BYTES`` with it) is replaced by its digest."""
    folder, _, name = output.rpartition("/")
    leaf = f"{name}.{tag}{kind}.jpg"
    if len(leaf.encode()) > NAME_BYTES:
        leaf = f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.{tag}{kind}.jpg"
    return f"{prefix}/{folder}/{leaf}" if folder else f"{prefix}/{leaf}"


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, ASSET_QUALITY])
    if not ok:
        raise ParaBlurError("could not encode a review JPEG")
    return buf.tobytes()


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` scaled so that its longer side is ``side`` (never enlarged).

    First shrunk by a whole factor (OpenCV's fast path of INTER_AREA: 8 ms for a 2000x2000
    image, against 24 ms for a fractional one), then by what is left.
    """
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return image
    k = int(max(h, w) // side)
    if k > 1 and h >= k and w >= k:
        image = cv2.resize(image[:h // k * k, :w // k * k], (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def _tile(image: np.ndarray, rect: Sequence[int]) -> np.ndarray:
    """The crop ``rect`` of ``image`` fitted into a gray CROP_SIDE square."""
    tile = np.full((CROP_SIDE, CROP_SIDE, 3), 128, np.uint8)
    x0, y0, x1, y1 = rect
    part = image[y0:y1, x0:x1]
    if part.size == 0:
        return tile
    h, w = part.shape[:2]
    scale = CROP_SIDE / max(h, w)
    size = (max(1, min(CROP_SIDE, round(w * scale))), max(1, min(CROP_SIDE, round(h * scale))))
    part = cv2.resize(part, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (CROP_SIDE - size[1]) // 2, (CROP_SIDE - size[0]) // 2
    tile[top:top + size[1], left:left + size[0]] = part
    return tile


def image_assets(image: np.ndarray, record: Mapping) -> dict[str, bytes]:
    """An image's review JPEGs by kind: its thumbnail, and its masks' crops side by side."""
    image = _to_bgr8(image)
    h, w = image.shape[:2]
    found = {"": _jpeg(_fit(image, THUMB_SIDE))}
    rects = mask_rects(record, w, h)
    if rects:
        found[".crops"] = _jpeg(np.hstack([_tile(image, r) for r in rects]))
    return found


def write_assets(store: Store, output: str, image: np.ndarray, record: Mapping, tag: str) -> None:
    """``parablur run --review`` on a worker: the thumbnail and crops of the output ``image`` it
    holds, under ``REVIEW_PREFIX`` of the output store."""
    for kind, data in image_assets(image, record).items():
        store.write(asset_key(REVIEW_PREFIX, output, tag, kind), data)


@dataclass
class Track:
    """One track of a clip: the frames it holds, with each frame's box and detection."""

    id: int
    frames: list[tuple[int, list[float], dict]] = field(default_factory=list)

    def strip(self) -> list[tuple[int, list[float], dict]]:
        """Up to STRIP_FRAMES of its frames, spread evenly from its first to its last."""
        n = len(self.frames)
        picks = sorted({round(i * (n - 1) / max(1, STRIP_FRAMES - 1)) for i in range(min(n, STRIP_FRAMES))})
        return [self.frames[i] for i in picks]


def clip_tracks(record: Mapping) -> list[Track]:
    """A clip's tracks from its record (``{"frames": [each frame's line]}``), by track id."""
    tracks: dict[int, Track] = {}
    for line in record.get("frames") or [record]:
        for face in faces_of(line):
            tid = face.get("track", 0)
            tracks.setdefault(tid, Track(tid)).frames.append((int(line.get("frame", 0)), face["box"], face))
    return [tracks[t] for t in sorted(tracks)]


def clip_assets(source, tracks: Sequence[Track], *, thumbnail: bool = True) -> dict[str, bytes]:
    """A clip's review JPEGs from its frames (``source``: a file of the clip): a thumbnail of the
    first frame with a face, its boxes drawn, and one row per track of its strip's crops."""
    from .video import decoded_frames

    wanted: dict[int, list[tuple[int, int, list[float]]]] = {}  # frame -> (row, column, box)
    for row, track in enumerate(tracks):
        for col, (frame, box, _) in enumerate(track.strip()):
            wanted.setdefault(frame, []).append((row, col, box))
    first = min((f for t in tracks for f, _, _ in t.frames), default=0)
    boxes_at_first = [box for t in tracks for f, box, _ in t.frames if f == first]
    sheet = np.full((CROP_SIDE * max(1, len(tracks)), CROP_SIDE * STRIP_FRAMES, 3), 128, np.uint8)
    found: dict[str, bytes] = {}
    last = max([*wanted, first])
    for index, frame in enumerate(decoded_frames(source)):
        if index > last:
            break
        h, w = frame.shape[:2]
        if thumbnail and index == first:
            drawn = frame.copy()
            for x, y, bw, bh in boxes_at_first:
                cv2.rectangle(drawn, (round(x), round(y)), (round(x + bw), round(y + bh)), (0, 200, 255),
                              max(2, round(max(h, w) / 300)))
            found[""] = _jpeg(_fit(drawn, THUMB_SIDE))
        for row, col, box in wanted.get(index, []):
            sheet[row * CROP_SIDE:(row + 1) * CROP_SIDE, col * CROP_SIDE:(col + 1) * CROP_SIDE] = \
                _tile(frame, region(box, CLIP_CONTEXT, w, h))
    if tracks:
        found[".tracks"] = _jpeg(sheet)
    return found


# -- the page's entries ----------------------------------------------------------------------

@dataclass
class Entry:
    """One output on the page: its record, and why it is doubtful ([] when it is not)."""

    name: str
    tag: str
    record: dict | None
    clip: bool
    doubts: list[str]
    tracks: list[Track] = field(default_factory=list)

    @property
    def faces(self) -> list[dict]:
        return faces_of(self.record) if not self.clip else [f for t in self.tracks for _, _, f in t.frames]


def make_entry(name: str, record: dict | None, tag: str) -> Entry:
    """``name``'s entry, with the reasons it is doubtful: a face near the threshold, found by a
    second look or past the edge, or kept by tracking; no face found; no record."""
    clip = is_video_key(name)
    tracks = clip_tracks(record) if clip and record else []
    if record is None:
        return Entry(name, tag, None, clip, ["no face found" if clip else "no record"])
    rule = rule_of(record)
    faces = [f for t in tracks for _, _, f in t.frames] if clip else faces_of(record)
    doubts = list(dict.fromkeys(why for f in faces for why in face_doubts(f, rule)))
    if not faces:
        doubts.append("no face found")
    return Entry(name, tag, record, clip, doubts, tracks)


def ordered(entries: Iterable[Entry]) -> list[Entry]:
    """The doubtful entries first, each group by name."""
    return sorted(entries, key=lambda e: (not e.doubts, e.name))


# -- the page --------------------------------------------------------------------------------

# Shows the page the address names (#pN), loading its images; links between pages change it.
_SCRIPT = """
function show(){var p=document.getElementById('p'+location.hash.replace('#page-',''));
if(!p||!p.classList.contains('pg'))p=document.getElementById('p1');
document.querySelectorAll('section.pg').forEach(function(s){s.hidden=s!==p;});
p.querySelectorAll('img[data-src]').forEach(function(i){i.src=i.dataset.src;i.removeAttribute('data-src');});
document.querySelectorAll('nav a').forEach(function(a){
a.classList.toggle('on',a.hash==='#page-'+p.id.slice(1));});}
addEventListener('hashchange',function(){show();scrollTo(0,0);});show();
"""

_STYLE = """
body{font:14px system-ui,sans-serif;margin:16px;background:#f4f4f4;color:#222}
.warn{background:#b00020;color:#fff;padding:8px 12px;font-weight:bold;margin:0 0 12px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:20px 0 8px}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;background:#fff;padding:8px;border:1px solid #ccc;width:260px}
figure.d{border:2px solid #d08000}
figure.v{width:auto;max-width:620px}
.t{position:relative;display:block;width:fit-content;margin:auto;background:#ddd}
.t img{display:block}
.m{position:absolute;border:2px solid #00d0ff;box-sizing:border-box;min-width:8px;min-height:8px}
.m.e{border-radius:50%}.m.q{border-color:#ff8000;border-style:dashed}
figcaption{margin:6px 0;word-break:break-all}figcaption b{color:#a05000;font-weight:600}
.c img,.s img{object-fit:none;object-position:0 0;margin:1px;vertical-align:top}
.c img.q,.s img.q{outline:2px dashed #ff8000;outline-offset:-2px}
.o{border-top:1px dashed #b00020;padding-top:2px}
.s{font-size:12px;margin-top:4px}.s div{white-space:nowrap;overflow-x:auto}
.n{color:#666;font-size:12px}
.c img,.s img{width:96px;height:96px}
nav{margin:8px 0;line-height:1.9}
nav a{padding:1px 5px;margin:0 1px;border:1px solid #aaa;text-decoration:none}
nav a.dp{border-color:#d08000;color:#a05000}nav a.on{background:#222;color:#fff}
"""


def _url(key: str) -> str:
    return quote(key, safe="/")


def _crops(sheet: str, faces: Sequence[dict], rule: Rule, cls: str = "c") -> str:
    """One row of crops cut from ``sheet`` (tiles side by side), a doubtful one marked."""
    tiles = []
    for i, face in enumerate(faces):
        why = face_doubts(face, rule)
        title = _face_title(f"face {i + 1}", face, rule)
        tiles.append(f'<img src="{_url(sheet)}" style="object-position:-{i * CROP_SIDE}px 0"'
                     f'{" class=q" if why else ""} title="{html.escape(title)}">')
    return f'<div class="{cls}">{"".join(tiles)}</div>'


def _face_title(what: str, face: Mapping, rule: Rule) -> str:
    why = face_doubts(face, rule)
    score = _number(face.get("score"))
    text = what + (f", score {score:.2f}" if score is not None else "")
    return text + (f": {', '.join(why)}" if why else "")


def _image_html(e: Entry, show_originals: bool) -> str:
    record = e.record or {}
    faces = faces_of(record)
    rule = rule_of(record)
    size = record.get("size")
    thumb = asset_key(REVIEW_PREFIX, e.name, e.tag)
    if isinstance(size, list) and len(size) == 2 and all((_number(v) or 0) > 0 for v in size):
        w, h = size
        scale = min(1.0, THUMB_SIDE / max(w, h))
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        params = record.get("params")
        ellipse = " e" if not isinstance(params, dict) or params.get("shape", "ellipse") == "ellipse" else ""
        marks = "".join(
            f'<i class="m{ellipse}{" q" if face_doubts(f, rule) else ""}" style="left:{x0 / w:.1%};'
            f'top:{y0 / h:.1%};width:{(x1 - x0) / w:.1%};height:{(y1 - y0) / h:.1%}"></i>'
            for f, (x0, y0, x1, y1) in zip(faces, mask_rects(record, w, h), strict=True))
        dims = f' width="{tw}" height="{th}"'
        box = f' style="width:{tw}px;height:{th}px"'
    else:
        marks, dims, box = "", "", ""
    parts = [f'<a class="t" href="{_url(e.name)}"{box}><img src="{_url(thumb)}" loading="lazy"{dims} '
             f'alt="{html.escape(e.name)}">{marks}</a>', _caption(e, f"{len(faces)} face(s)")]
    if faces:
        parts.append(_crops(asset_key(REVIEW_PREFIX, e.name, e.tag, ".crops"), faces, rule))
        if show_originals:
            parts.append(_crops(asset_key(ORIGINALS_PREFIX, e.name, e.tag, ".crops"), faces, rule,
                                "c o"))
    return "".join(parts)


def _caption(e: Entry, count: str) -> str:
    why = f"<br><b>{html.escape(', '.join(e.doubts))}</b>" if e.doubts else ""
    return f"<figcaption>{html.escape(e.name)}{why}<br><span class=n>{count}</span></figcaption>"


def _clip_html(e: Entry, show_originals: bool) -> str:
    rule = rule_of(e.record)
    thumb = asset_key(REVIEW_PREFIX, e.name, e.tag)
    parts = [f'<a class="t" href="{_url(e.name)}"><img src="{_url(thumb)}" loading="lazy" '
             f'alt="{html.escape(e.name)}"></a>', _caption(e, f"{len(e.tracks)} track(s)")]
    sources = [(REVIEW_PREFIX, "")] + ([(ORIGINALS_PREFIX, " o")] if show_originals else [])
    for row, track in enumerate(e.tracks):
        tracked = sum(1 for _, _, f in track.frames if f.get("tracked"))
        near = sum(1 for _, _, f in track.frames if "near threshold" in face_doubts(f, rule))
        first, last = track.frames[0][0], track.frames[-1][0]
        note = f"track {track.id}: frames {first} to {last}, {len(track.frames)} with the face"
        note += f", {tracked} kept by tracking" if tracked else ""
        note += f", {near} near threshold" if near else ""
        for prefix, cls in sources:
            sheet = _url(asset_key(prefix, e.name, e.tag, ".tracks"))
            tiles = "".join(
                f'<img src="{sheet}" style="object-position:-{col * CROP_SIDE}px -{row * CROP_SIDE}px"'
                f'{" class=q" if face_doubts(face, rule) else ""} '
                f'title="{html.escape(_face_title(f"frame {frame}", face, rule))}">'
                for col, (frame, _, face) in enumerate(track.strip()))
            label = f"the ORIGINAL of {note}" if cls else note
            parts.append(f'<div class="s{cls}" data-track="{track.id}">{html.escape(label)}'
                         f'<div>{tiles}</div></div>')
    return "".join(parts)


def render(entries: Sequence[Entry], *, title: str, show_originals: bool, made_at: str) -> str:
    """The page: ``entries`` (already ``ordered``) as figures, the doubtful ones in a first section."""
    doubtful = [e for e in entries if e.doubts]
    rest = [e for e in entries if not e.doubts]
    faces = sum(len(e.faces) if not e.clip else len(e.tracks) for e in entries)
    head = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', PAGE_MARK,
        f"<title>ParaBlur review: {html.escape(title)}</title><style>{_STYLE}</style></head><body>",
    ]
    if show_originals:
        head.append('<p class="warn">This page shows faces: under each output\'s crops are crops of '
                    "the ORIGINALS (--show-originals). Do not publish it; make it again without "
                    "--show-originals to remove them.</p>")
    head.append(f"<h1>ParaBlur review of {html.escape(title)}</h1>")
    head.append(
        f"<p>{len(entries)} outputs, {len(doubtful)} doubtful, {faces} faces or tracks; made "
        f"{html.escape(made_at)}. Doubtful: a face scoring less than {NEAR_THRESHOLD} above the "
        "run's threshold, found by a second look or past the image's edge, or kept by tracking "
        "(dashed orange), and outputs where no face was found. Thumbnails and crops are of the "
        "anonymized outputs; a thumbnail links to its output.</p>")

    figures = []
    for i, e in enumerate(entries):
        if i == 0 or (i == len(doubtful) and rest):
            name, items = ("Doubtful", doubtful) if e.doubts else ("The rest", rest)
            figures.append(f'<h2 id="{"doubtful" if e.doubts else "rest"}">{name} ({len(items)})</h2>')
        body = _clip_html(e, show_originals) if e.clip else _image_html(e, show_originals)
        doubt = f' data-doubts="{html.escape(", ".join(e.doubts))}"' if e.doubts else ""
        cls = ("d" if e.doubts else "k") + (" v" if e.clip else "")
        figures.append(f'<figure class="{cls}" data-image="{html.escape(e.name)}"{doubt}>{body}</figure>')
    pages = _paginate(figures)
    nav = " ".join(f'<a href="#page-{n + 1}"{" class=dp" if n * PAGE_ENTRIES < len(doubtful) else ""}>'
                  f'{n + 1}</a>' for n in range(len(pages)))
    nav = f"<nav>Pages (those with doubtful outputs in orange): {nav}</nav>" if len(pages) > 1 else ""
    body = [nav]
    for n, page in enumerate(pages):
        text = "\n".join(page)
        if n:  # only the page shown loads its images (``_SCRIPT`` swaps them in)
            text = text.replace(' src="', ' data-src="')
        body.append(f'<section class="pg" id="p{n + 1}"{" hidden" if n else ""}>\n{text}\n</section>')
    body.append(nav)
    return "\n".join([*head, *body, f"<script>{_SCRIPT}</script>" if len(pages) > 1 else "",
                      "</body></html>", ""])


def _paginate(figures: Sequence[str]) -> list[list[str]]:
    """``figures`` (and the headings before their groups) in pages of ``PAGE_ENTRIES`` figures."""
    pages: list[list[str]] = [[]]
    count = 0
    for item in figures:
        if count == PAGE_ENTRIES:
            pages.append([])
            count = 0
        pages[-1].append(item)
        count += item.startswith("<figure")
    return [_grid(page) for page in pages]


def _grid(items: Sequence[str]) -> list[str]:
    """A page's figures in grids, a heading between two."""
    out, open_grid = [], False
    for item in items:
        if item.startswith("<h2"):
            if open_grid:
                out.append("</div>")
            out.append(item)
            open_grid = False
            continue
        if not open_grid:
            out.append('<div class="grid">')
            open_grid = True
        out.append(item)
    if open_grid:
        out.append("</div>")
    return out


# -- the command -----------------------------------------------------------------------------

@dataclass(frozen=True)
class ReviewSummary:
    """What ``review`` did for one output location."""

    page: str
    outputs: int
    doubtful: int
    made: int  # outputs whose thumbnails or crops review made itself
    originals: int  # outputs whose originals were cropped (--show-originals)
    seconds: float
    failures: tuple[dict, ...] = ()

    def to_dict(self) -> dict:
        return {"page": self.page, "outputs": self.outputs, "doubtful": self.doubtful,
                "made": self.made, "originals": self.originals, "seconds": round(self.seconds, 3),
                "failures": list(self.failures)}


def output_locations(root: Store) -> list[Store]:
    """The output locations ``root`` names: itself when a run or bench made it, else each
    ``<executor>`` below it that one made; refused when there is none."""
    found = [s for s in (root, *(root.child(e) for e in EXECUTORS)) if _made_by_parablur(s)]
    if root in found[:1]:
        return [root]
    if not found:
        raise DatasetError(f"{root.location()} is not a ParaBlur output: neither it nor an executor "
                           f"folder in it ({', '.join(EXECUTORS)}) holds the {OUTPUT_MARKER} marker "
                           "that 'parablur run' leaves")
    return found


def _made_by_parablur(store: Store) -> bool:
    try:
        if store.info(OUTPUT_MARKER) is None:
            return False
        return marker_command(store.read(OUTPUT_MARKER)) in ("run", "bench")
    except (OSError, ParaBlurError):
        return False


def _record_file(store: Store) -> str:
    for name in RECORD_FILES:
        if store.info(name) is not None:
            return name
    raise DatasetError(f"{store.location()} holds no records ({' or '.join(RECORD_FILES)}): nothing to "
                       "review (the page shows what a faces run, or a workload with records, found)")


def check_page(store: Store) -> None:
    """Refuse, before anything is written, a ``review.html`` that ``review`` did not write."""
    if store.info(PAGE_NAME) is None:
        return
    if PAGE_MARK.encode() not in store.read(PAGE_NAME, length=4096):
        raise DatasetError(f"refusing to overwrite {store.location(PAGE_NAME)}: it is not a page "
                           "'parablur review' wrote (move it away, then review again)")


def _existing(store: Store, prefix: str) -> set[str]:
    """The review JPEGs already under ``prefix`` (one listing, not a request per output)."""
    try:
        return {f"{prefix}/{key}" for key in store.child(prefix).list_images()}
    except (OSError, ParaBlurError):
        return set()


def _work(tasks: Sequence[Callable[[], None]], label: str, progress: bool) -> list[dict]:
    """Run ``tasks`` on a few threads (decoding and resizing release the GIL); their failures."""
    from tqdm import tqdm

    errors: list[dict] = []
    if not tasks:
        return errors

    def one(task: Callable[[], None]) -> None:
        try:
            task()
        except Exception as exc:  # noqa: BLE001 - one output that cannot be shown is reported
            from .worker import failure_reason

            errors.append({"image": getattr(task, "name", "?"), "reason": failure_reason(exc)})

    with ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool, \
            tqdm(total=len(tasks), desc=label, unit="img", disable=not progress or None,
                 leave=False) as bar:
        for _ in pool.map(one, tasks):
            bar.update(1)
    return errors


@dataclass
class _Make:
    """Make the review JPEGs of one output from ``source`` (its output, or its original)."""

    name: str
    entry: Entry
    source: Store
    target: Store
    prefix: str
    kinds: tuple[str, ...]  # the kinds to write

    def __call__(self) -> None:
        from .worker import Job, check_header, decode

        e = self.entry
        if e.clip:
            with self.source.open(e.name) as handle:
                found = clip_assets(handle, e.tracks, thumbnail="" in self.kinds)
        else:
            data = self.source.read(e.name)
            check_header(data, Job().max_pixels)
            found = image_assets(decode(data, Path(e.name).suffix), e.record or {})
        for kind in self.kinds:
            if kind in found:
                self.target.write(asset_key(self.prefix, e.name, e.tag, kind), found[kind])


def review_location(out: Store, *, inp: Store | None = None, progress: bool = False,
                    echo: Callable[[str], None] = lambda line: None) -> ReviewSummary:
    """Write ``review.html`` into the output location ``out`` (crops of the originals from
    ``inp`` when given), making the thumbnails and crops the workers did not."""
    started = time.perf_counter()
    record_file = _record_file(out)
    check_page(out)
    with out.lock("parablur review", echo=echo):
        log = RecordLog(out, record_file)
        sizes = {item.key: item.size for item in out.scan_images()}
        entries = ordered(make_entry(n, log.get(n), asset_tag(log.tag(n), size)) for n, size in sizes.items())
        have = _existing(out, REVIEW_PREFIX)
        todo = []
        for e in entries:
            kinds = _kinds(e)
            missing = tuple(k for k in kinds if asset_key(REVIEW_PREFIX, e.name, e.tag, k) not in have)
            if missing:
                todo.append(_Make(e.name, e, out, out, REVIEW_PREFIX, missing))
        if todo:
            echo(f"review: making the thumbnails of {len(todo)} of {len(entries)} outputs here "
                 "('parablur run --review' has the workers make those of images during the run)")
        errors = _work(todo, "thumbnails", progress)
        originals: list[_Make] = []
        if inp is not None:
            have = _existing(out, ORIGINALS_PREFIX)
            originals = [_Make(e.name, e, inp, out, ORIGINALS_PREFIX, (".tracks",) if e.clip else (".crops",))
                         for e in entries if e.faces and asset_key(
                             ORIGINALS_PREFIX, e.name, e.tag, ".tracks" if e.clip else ".crops") not in have]
            errors += _work(originals, "originals", progress)
        elif _existing(out, ORIGINALS_PREFIX):
            out.delete_tree(ORIGINALS_PREFIX)  # an earlier page's faces go with it
        title = out.location()
        page = render(entries, title=title, show_originals=inp is not None,
                      made_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        out.write(PAGE_NAME, page.encode("utf-8"))
    failures = tuple(errors)
    return ReviewSummary(out.location(PAGE_NAME), len(entries), sum(1 for e in entries if e.doubts),
                         len(todo), len(originals), time.perf_counter() - started, failures)


def _kinds(e: Entry) -> tuple[str, ...]:
    """The review JPEGs an entry shows: a thumbnail, and its crops or its tracks' strips."""
    if e.clip:
        return ("", ".tracks") if e.tracks else ("",)
    return ("", ".crops") if faces_of(e.record) else ("",)


def review(location: Path | str, *, options: Mapping | None = None, input_dir: Path | str | None = None,
           progress: bool = False, echo: Callable[[str], None] = lambda line: None
           ) -> list[ReviewSummary]:
    """``parablur review``: a page in each output location ``location`` names (itself, or its
    ``<executor>`` folders); with ``input_dir``, crops of the originals too."""
    root = open_store(location, dict(options or {}))
    outs = output_locations(root)
    inp = open_store(input_dir, dict(options or {})) if input_dir is not None else None
    if inp is not None and next(iter(inp.list_images()), None) is None:  # a missing folder: its line
        raise DatasetError(f"--input-dir {inp.location()} holds no images: the originals are read from "
                           "the run's --input-dir")
    for out in outs:  # every refusal before any page is written
        _record_file(out)
        check_page(out)
    return [review_location(out, inp=inp, progress=progress, echo=echo) for out in outs]


def summary_json(summaries: Sequence[ReviewSummary]) -> dict:
    return {"review": [s.to_dict() for s in summaries]}


__all__ = ["CROP_SIDE", "NEAR_THRESHOLD", "ORIGINALS_PREFIX", "PAGE_NAME", "REVIEW_PREFIX", "Entry",
           "ReviewSummary", "asset_key", "clip_assets", "face_doubts", "image_assets", "make_entry",
           "ordered", "render", "review", "review_location", "write_assets"]
