"""Faces left exposed in anonymized video, with ParaBlur's edge handling on and off, and its cost.

Generates face clips (``face_clips.generate_face_clip`` + ``write_face_clip``: real faces, a camera
that pans and zooms, exact per-frame true boxes), anonymizes each one segment at a time
(``video.plan_segments``, ``video_faces.anonymize_segment``, ``video.join``) with the edge handling
on and off, and counts the true face-frames left exposed: overall, for faces cut by the frame's
edge, and for whole faces. A face-frame is one true box (a face with at least half of its box in
the frame, clipped to it, longer side >= 32 px) in one frame. It is exposed

* by pixels: when the output differs from the source by at most 8 (mean absolute difference) over
  the box (``face_quality.exposed_face_frames``, as ``bench --workload faces`` counts);
* by masks: when less than ``MIN_COVER`` of the box lies under the masks (alpha >= 0.5) the
  segments' records say were hidden (stricter: a mask must cover the face, not only touch it).

Then it times ``detect_faces`` per frame on decoded frames of every clip, on and off interleaved
(``--repeats`` rounds, one OpenCV thread; medians of CPU and wall time). "off" sets the constants
in ``OFF`` to the values the main branch had before the change (faces.py: no mirrored padding, the
old close-ups; tracking.py: no entering/leaving faces):

    PYTHONPATH=src python benchmarks/video_recall.py --clips 3 --seconds 6 --fps 25 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from parablur import video
from parablur.config import FaceParams
from parablur.ingestion.face_clips import generate_face_clip, write_face_clip
from parablur.models import find_model
from parablur.workloads.face_quality import MIN_SIZE, exposed_face_frames
from parablur.workloads.faces import detect_faces, mask_alpha
from parablur.workloads.tracking import required_overlap
from parablur.workloads.video_faces import anonymize_segment, max_fps

MIN_COVER = 0.8  # share of a true box that must lie under the masks
# The edge handling's constants and their values before it (main at 602edc0).
OFF = {
    ("parablur.workloads.faces", "EDGE_PAD"): 0,
    ("parablur.workloads.faces", "CANDIDATE_SCORE"): 0.05,
    ("parablur.workloads.faces", "REFINE_SIDE"): 64,
    ("parablur.workloads.faces", "REFINE_CONTEXT"): 2.5,
    ("parablur.workloads.tracking", "EDGE_EXIT_S"): 0.0,
}


@contextlib.contextmanager
def mode(on: bool) -> Iterator[None]:
    """The edge handling on (as shipped) or off (``OFF``'s values; a constant not there is skipped)."""
    saved = []
    try:
        if not on:
            for (module, name), value in OFF.items():
                mod = importlib.import_module(module)
                if hasattr(mod, name):
                    saved.append((mod, name, getattr(mod, name)))
                    setattr(mod, name, value)
        yield
    finally:
        for mod, name, value in saved:
            setattr(mod, name, value)


def _decode(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            yield f.to_ndarray(format="bgr24")


def anonymize(path: Path, info: video.ClipInfo, out: Path, params: FaceParams, model: Path,
              segment_s: float, detect_every: int) -> tuple[dict[int, list], float, float]:
    """Anonymize ``path`` segment by segment into ``out``: each frame's mask boxes, detect and encode s."""
    files, masks, detect_s, encode_s = [], {}, 0.0, 0.0
    for seg in video.plan_segments(info, segment_s):
        dest = out.with_name(f"{out.stem}-{seg.index}{video.SEGMENT_SUFFIX}")
        rec = anonymize_segment(path, info, seg, dest, params=params, model=model,
                                detect_every=detect_every)
        detect_s += rec.detect_s
        encode_s += rec.encode_s
        masks.update({e["frame"]: [f["box"] for f in e["faces"]] for e in rec.faces})
        files.append(dest)
    video.join(path, info, files, out)
    for f in files:
        f.unlink()
    return masks, detect_s, encode_s


def mask_exposed(truth: list, masks: dict[int, list], size: tuple[int, int],
                 params: FaceParams) -> tuple[int, int, int, int]:
    """(exposed, face-frames, exposed whole faces, whole faces) by masks: < MIN_COVER under a mask."""
    width, height = size
    exposed = total = inner_exposed = inner = 0
    for i, boxes in enumerate(truth):
        cover = np.zeros((height, width), bool)
        for box in masks.get(i, []):
            (x0, y0, x1, y1), alpha = mask_alpha(box, params.shape, params.mask_scale, width, height)
            cover[y0:y1, x0:x1] |= alpha >= 0.5
        for x, y, w, h in boxes:
            x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
            x1, y1 = min(width, int(np.ceil(x + w))), min(height, int(np.ceil(y + h)))
            if x1 <= x0 or y1 <= y0 or max(x1 - x0, y1 - y0) < MIN_SIZE:
                continue
            still = bool(cover[y0:y1, x0:x1].mean() < MIN_COVER)
            total += 1
            exposed += still
            if x0 > 0 and y0 > 0 and x1 < width and y1 < height:
                inner += 1
                inner_exposed += still
    return exposed, total, inner_exposed, inner


def _pct(n: int, total: int) -> str:
    return f"{100 * n / max(total, 1):5.2f}% ({n}/{total})"


def _line(c: dict) -> str:
    px, mk = c["pixels"], c["masks"]
    return (f"all {_pct(px[0], px[1])} / masks {_pct(mk[0], mk[1])}; "
            f"edge {_pct(px[0] - px[2], px[1] - px[3])} / {_pct(mk[0] - mk[2], mk[1] - mk[3])}; "
            f"whole {_pct(px[2], px[3])} / {_pct(mk[2], mk[3])}")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1280x720,320x240", help="comma-separated WxH")
    p.add_argument("--clips", type=int, default=3, help="clips per size")
    p.add_argument("--first-clip", type=int, default=0, help="index of the first clip")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--face-min-size", type=int, default=32, help="smallest face in the clips")
    p.add_argument("--detect-min-size", type=int, default=None,
                   help="--face-min-size of the detector (default: the clips')")
    p.add_argument("--segment-s", type=float, default=2.0)
    p.add_argument("--detect-every", type=int, default=1)
    p.add_argument("--modes", default="off,on", help="which of off,on to run")
    p.add_argument("--timing-frames", type=int, default=20, help="frames per clip timed (0: none)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved timing rounds")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args(argv)

    cv2.setNumThreads(1)
    model = find_model()
    params = FaceParams(model=model, face_min_size=a.detect_min_size or a.face_min_size)
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    totals: dict[str, dict[str, dict]] = {m: {} for m in modes}
    seconds: dict[str, list[float]] = {m: [0.0, 0.0] for m in modes}
    timing_frames: dict[str, list[np.ndarray]] = {}
    for m in modes:
        with mode(m == "on"):
            print(f"{m}: overlap {required_overlap(a.fps)} frames each side of a segment at {a.fps:g} fps")
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            for index in range(a.first_clip, a.first_clip + a.clips):
                clip = generate_face_clip(index, width, height, seconds=a.seconds, fps=a.fps, seed=a.seed,
                                          face_min_size=a.face_min_size)
                path = Path(tmp) / f"clip-{width}x{height}-{index}.mp4"
                truth = write_face_clip(clip, path)["faces"]
                info = video.probe(path)
                assert abs(max_fps(info) - a.fps) < 1e-6 * a.fps
                if a.timing_frames:
                    step = max(1, info.frames // a.timing_frames)
                    timing_frames.setdefault(f"{width}x{height}", []).extend(
                        f for i, f in enumerate(_decode(path))
                        if i % step == 0 and i // step < a.timing_frames)
                for m in modes:
                    out = Path(tmp) / f"out-{m}.mp4"
                    with mode(m == "on"):
                        masks, detect_s, encode_s = anonymize(path, info, out, params, model, a.segment_s,
                                                              a.detect_every)
                    seconds[m][0] += detect_s
                    seconds[m][1] += encode_s
                    px = exposed_face_frames(_decode(path), _decode(out), truth)
                    counts = {"pixels": [px.exposed, px.total, px.inner_exposed, px.inner_total],
                              "masks": list(mask_exposed(truth, masks, (width, height), params))}
                    out.unlink()
                    for scope in ("total", f"{width}x{height}"):
                        t = totals[m].setdefault(scope, {"pixels": [0] * 4, "masks": [0] * 4})
                        for kind in ("pixels", "masks"):
                            t[kind] = [u + v for u, v in zip(t[kind], counts[kind], strict=True)]
                    print(f"{width}x{height} clip {index} {m:>3}: {_line(counts)}", flush=True)
    print(f"\nexposed face-frames ({a.clips} clips of {a.seconds:g} s at {a.fps:g} fps per size, seed "
          f"{a.seed}, {a.segment_s:g} s segments, detect_every {a.detect_every}): by pixels / by masks")
    for m in modes:
        for scope, counts in totals[m].items():
            print(f"  {m:>3} {scope:>9}: {_line(counts)}")
    for m in modes:
        print(f"  {m:>3}: anonymize_segment detect {seconds[m][0]:.1f} s (window: segment + overlap), "
              f"encode {seconds[m][1]:.1f} s")

    timing: dict[str, dict[str, dict[str, float]]] = {}
    if timing_frames:
        rounds = {s: {m: ([], []) for m in modes} for s in timing_frames}
        for m in modes:  # make every detector once before timing
            with mode(m == "on"):
                for images in timing_frames.values():
                    detect_faces(images[0], params, model)
        for r in range(a.repeats):
            for s, images in timing_frames.items():
                for m in modes if r % 2 == 0 else modes[::-1]:
                    with mode(m == "on"):
                        wall, cpu = time.perf_counter(), time.thread_time()
                        for image in images:
                            detect_faces(image, params, model)
                        rounds[s][m][0].append((time.thread_time() - cpu) / len(images))
                        rounds[s][m][1].append((time.perf_counter() - wall) / len(images))
        print(f"\ndetect_faces per frame, median of {a.repeats} interleaved rounds (one OpenCV thread), "
              "CPU / wall:")
        for s, by_mode in rounds.items():
            timing[s] = {m: {"cpu_ms": statistics.median(cpu) * 1000,
                             "wall_ms": statistics.median(wall) * 1000} for m, (cpu, wall) in by_mode.items()}
            line = ", ".join(f"{m} {t['cpu_ms']:.2f} / {t['wall_ms']:.2f} ms" for m, t in timing[s].items())
            if "on" in timing[s] and "off" in timing[s]:
                on, off = timing[s]["on"], timing[s]["off"]
                line += (f" (on: {on['cpu_ms'] / off['cpu_ms'] - 1:+.1%} CPU, "
                         f"{on['wall_ms'] / off['wall_ms'] - 1:+.1%} wall)")
            print(f"  {s}: {line}  [{len(timing_frames[s])} frames]")
    result = {"args": vars(a), "exposed": totals, "segment_seconds": seconds, "detect_ms": timing}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
