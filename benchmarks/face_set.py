"""Recall by face-height band and false positives per frame on the ``--fallback faces`` set.

Each frame is made as ``parablur fetch --fallback faces`` makes it (``generate_face_frame``,
saved as JPEG at the frame's own quality and decoded again), the detector runs at the given
settings (one OpenCV thread), and its detections are matched to the true boxes
(``face_quality.match``, IoU >= 0.3). Recall is given per band of true box height (every
face of the band, whatever --face-min-size) and per degradation tag; also the median time to
generate a frame.

    python benchmarks/face_set.py --images 20 --size 2000 --seed 0
    python benchmarks/face_set.py --images 20 --size 2000 --seed 0 --face-min-size 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter

import cv2
import numpy as np

from parablur.config import FaceParams
from parablur.ingestion.face_frames import generate_face_frame
from parablur.ingestion.generate import encode_jpeg
from parablur.models import find_model
from parablur.workloads import face_quality
from parablur.workloads.faces import detect_faces

BANDS = ((0, 20), (20, 30), (30, 45), (45, None))  # true box height, px


def _band(height: float) -> str:
    for lo, hi in BANDS:
        if hi is None or height < hi:
            return f"{lo}-{hi}" if hi is not None else f">={lo}"
    raise AssertionError


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--face-min-size", type=int, default=FaceParams.face_min_size)
    p.add_argument("--threshold", type=float, default=FaceParams.threshold)
    p.add_argument("--model", default=None, help="model file (default: models.find_model())")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args(argv)

    cv2.setNumThreads(1)  # the caller's policy: one thread, as in every ParaBlur worker
    model = find_model(a.model)
    params = FaceParams(model=model, face_min_size=a.face_min_size, threshold=a.threshold)
    faces, found, tag_faces, tag_found = Counter(), Counter(), Counter(), Counter()
    false_positives, gen_s, detect_s = 0, [], []
    for i in range(a.images):
        t = time.perf_counter()
        frame = generate_face_frame(i, a.size, a.size, a.seed)
        gen_s.append(time.perf_counter() - t)
        image = cv2.imdecode(np.frombuffer(encode_jpeg(frame.image, frame.jpeg_quality), np.uint8),
                             cv2.IMREAD_COLOR)
        truths = [[int(v) for v in box] for box in frame.faces]  # as the manifest holds them
        t = time.perf_counter()
        detections = [f.to_dict() for f in detect_faces(image, params, model)]
        detect_s.append(time.perf_counter() - t)
        pairs = face_quality.match(detections, truths)
        matched = {j for _, j in pairs}
        false_positives += len(detections) - len(pairs)
        for j, (box, tags) in enumerate(zip(truths, frame.tags, strict=True)):
            band = _band(box[3])
            faces[band] += 1
            found[band] += j in matched
            kinds = {t.split(":")[0] for t in tags[1:]} or {"undegraded"}
            for tag in {tags[0].split(":")[0], *kinds}:
                tag_faces[tag] += 1
                tag_found[tag] += j in matched
    total_faces, total_found = sum(faces.values()), sum(found.values())
    result = {
        "images": a.images, "size": a.size, "seed": a.seed, "face_min_size": a.face_min_size,
        "threshold": a.threshold, "faces": total_faces, "found": total_found,
        "recall": total_found / total_faces if total_faces else None,
        "bands": {b: {"faces": faces[b], "found": found[b],
                      "recall": found[b] / faces[b] if faces[b] else None} for b in faces},
        "tags": {t: {"faces": tag_faces[t], "found": tag_found[t]} for t in sorted(tag_faces)},
        "false_positives": false_positives, "false_positives_per_image": false_positives / a.images,
        "generate_ms_median": statistics.median(gen_s) * 1000,
        "detect_ms_median": statistics.median(detect_s) * 1000,
    }
    print(f"{a.images} frames {a.size}x{a.size}, seed {a.seed}, face-min-size {a.face_min_size}, "
          f"threshold {a.threshold}: recall {total_found}/{total_faces} = {result['recall']:.3f}, "
          f"false positives per frame {result['false_positives_per_image']:.2f}")
    for lo, _ in BANDS:
        b = _band(lo)
        if faces[b]:
            print(f"  height {b:>6} px: {found[b]:4d}/{faces[b]:4d} = {found[b] / faces[b]:.3f}")
    for t in sorted(tag_faces):
        print(f"  {t:>13}: {tag_found[t]:4d}/{tag_faces[t]:4d} = {tag_found[t] / tag_faces[t]:.3f}")
    print(f"median per frame: generate {result['generate_ms_median']:.0f} ms, "
          f"detect {result['detect_ms_median']:.0f} ms (one thread)", flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
