"""The default detector's cost against its recall: points (faces.py constants) side by side.

Each point is a set of values for the named constants of ``parablur.workloads.faces`` (the
defaults, then each ``--point``); every point runs ``anonymize_faces`` (detection, close-ups,
CenterFace's confirmations, anonymization and the verification loop) on the same
``parablur fetch --fallback faces`` frames (``generate_face_frame``, saved as JPEG at the
frame's quality and decoded again), the points interleaved in an order that rotates per frame
and round, one OpenCV thread, CPU time of the thread (medians per frame). Recall by band and
false positives per frame as ``face_set.py`` gives them (faces of 16 px and over as bench scores
them). With ``--profile`` it prints instead where one frame's time goes at the defaults: the
face workload (``FaceWorkload.__call__``) and the worker's lossless JPEG edit (``jpeg_edit.edit``),
under cProfile with the thread's CPU clock.

    python benchmarks/operating_point.py --images 12 --seed 0 --rounds 3 \\
        --point former=CLOSE_UP_SCORE=0.1,CLOSE_UP_SURE=1.01,CENTERFACE_SIDE=96,CENTERFACE_PYRAMID=0.3
    python benchmarks/operating_point.py --profile --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import statistics
import sys
import time

import cv2
import numpy as np
from face_set import _Tally

from parablur import jpeg_edit
from parablur.config import FaceParams
from parablur.ingestion.face_frames import generate_face_frame
from parablur.ingestion.generate import encode_jpeg
from parablur.models import find_model
from parablur.workloads import faces as F

BAND_NAMES = ("0-20", "20-30", "30-45", ">=45")


def _point(text: str) -> tuple[str, dict[str, float]]:
    name, _, values = text.partition("=")
    out = {}
    for item in filter(None, values.split(",")):
        key, _, value = item.partition("=")
        if not hasattr(F, key):
            raise SystemExit(f"parablur.workloads.faces has no constant {key}")
        out[key] = type(getattr(F, key))(float(value))
    return name, out


def _profile(data: bytes, image: np.ndarray) -> None:
    workload = F.FaceWorkload()
    jpeg_edit.edit(data, image, workload(image)[0], ".jpg")  # warm: models, detectors
    profile = cProfile.Profile(time.thread_time)
    cpu = time.thread_time()
    profile.enable()
    out, record = workload(image)
    jpeg_edit.edit(data, image, out, ".jpg")
    profile.disable()
    print(f"one frame: {(time.thread_time() - cpu) * 1000:.0f} ms CPU, {len(record['faces'])} faces")
    stats = pstats.Stats(profile)
    stats.sort_stats("cumulative").print_stats(30)
    stats.print_callers(r"detect\b|_look_closer|forward|_still_seen|anonymize_regions|_faces\b")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=12)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--point", action="append", default=[], type=_point,
                   help="NAME=CONST=VALUE,CONST=VALUE,...: a point to set beside the defaults")
    p.add_argument("--profile", action="store_true", help="profile the first frame at the defaults")
    a = p.parse_args(argv)

    cv2.setNumThreads(1)
    model = find_model()
    params = FaceParams(model=model)
    frames = []
    for i in range(1 if a.profile else a.images):
        frame = generate_face_frame(i, a.size, a.size, a.seed)
        data = encode_jpeg(frame.image, frame.jpeg_quality)
        frames.append((data, cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), frame))
    if a.profile:
        _profile(frames[0][0], frames[0][1])
        return
    points = dict([("defaults", {}), *a.point])
    defaults = {k: getattr(F, k) for values in points.values() for k in values}
    names = list(points)
    tally = {k: _Tally() for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    asks = dict.fromkeys(names, 0)
    confirms = F._centerface_confirms
    current = [names[0]]

    def counted(image, ask, model):  # CenterFace's close-ups per point
        asks[current[0]] += len(ask)
        return confirms(image, ask, model)

    F.anonymize_faces(frames[0][1], params, model=model)  # warm
    F._centerface_confirms = counted
    try:
        for r in range(a.rounds):
            for i, (_, image, frame) in enumerate(frames):
                turn = (i + r) % len(names)
                for name in names[turn:] + names[:turn]:
                    for key, value in {**defaults, **points[name]}.items():
                        setattr(F, key, value)
                    current[0] = name
                    t = time.thread_time()
                    _, record = F.anonymize_faces(image, params, model=model)
                    cpu[name].append(time.thread_time() - t)
                    if r == 0:
                        tally[name].add(record["faces"], [[int(v) for v in b] for b in frame.faces],
                                        frame.tags)
    finally:
        F._centerface_confirms = confirms
        for key, value in defaults.items():
            setattr(F, key, value)
    base = statistics.median(cpu[names[0]])
    print(f"{a.images} frames {a.size}x{a.size}, seed {a.seed}, {a.rounds} rounds")
    print("| point | <20 px | 20-30 | 30-45 | >=45 | recall (>= 16 px) | FP / frame | CenterFace "
          "close-ups / frame | CPU ms / frame | vs defaults |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        t = tally[name]
        with contextlib.redirect_stdout(io.StringIO()):
            bench = t.result(name)["bench"]
        bands = " | ".join(f"{t.found[b]}/{t.faces[b]}" for b in BAND_NAMES)
        ms = statistics.median(cpu[name])
        print(f"| {name} {points[name] or ''} | {bands} | {bench['found']}/{bench['faces']} = "
              f"{100 * bench['recall']:.1f}% | {bench['false_positives_per_image']:.2f} | "
              f"{asks[name] / a.images / a.rounds:.0f} | {ms * 1000:.0f} | "
              f"{ms / base:.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
