"""The face workload's quality and cost on generated images with known faces.

Measures, at the given settings (the defaults unless flags say otherwise):
recall (IoU >= 0.3) of faces at least 16 px tall on generated face images;
false positives per image on face images and on the same scenes without faces;
irreversibility (share of the faces found before anonymization that the detector,
run again on the whole output, finds again); and the cost per image of detect + anonymize against
the study's full-frame blur (61x61, sigma 10), interleaved on the same images, one
OpenCV thread, medians of wall and CPU time.

    python benchmarks/faces_quality.py --images 40 --size 2000 --seed 0
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import cv2
import numpy as np

from parablur import blur
from parablur.config import BlurParams, FaceParams
from parablur.ingestion.faces import available_sources, generate_face_image
from parablur.ingestion.generate import encode_jpeg, generate_image
from parablur.models import find_model
from parablur.workloads import face_quality
from parablur.workloads.faces import anonymize_faces, detect_faces


def _jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    """The image as the dataset stores it (JPEG, quality 92) and the pipeline decodes it."""
    return cv2.imdecode(np.frombuffer(encode_jpeg(image), np.uint8), cv2.IMREAD_COLOR)


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - wall, time.thread_time() - cpu


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=40)
    p.add_argument("--size", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--face-min-size", type=int, default=FaceParams.face_min_size)
    p.add_argument("--threshold", type=float, default=FaceParams.threshold)
    p.add_argument("--style", default=FaceParams.style)
    p.add_argument("--shape", default=FaceParams.shape)
    p.add_argument("--mask-scale", type=float, default=FaceParams.mask_scale)
    p.add_argument("--timing-images", type=int, default=10, help="images timed (0: no timing)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timings per image")
    p.add_argument("--model", default=None, help="model file (default: models.find_model())")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    a = p.parse_args(argv)

    cv2.setNumThreads(1)  # the caller's policy: one thread, as in every ParaBlur worker
    model = find_model(a.model)
    params = FaceParams(model=model, face_min_size=a.face_min_size, threshold=a.threshold,
                        style=a.style, shape=a.shape, mask_scale=a.mask_scale)
    print(f"{a.images} images {a.size}x{a.size}, seed {a.seed}, sources "
          f"{', '.join(s.name for s in available_sources())}; {params}", flush=True)

    with_faces, without, found_before, found_again = [], [], 0, 0
    images = []
    for i in range(a.images):
        image, truths = generate_face_image(i, a.size, a.size, a.seed, a.face_min_size)
        image = _jpeg_round_trip(image)
        images.append(image)
        out, record = anonymize_faces(image, params)
        faces = record["faces"]
        with_faces.append(face_quality.score_image(faces, truths))
        again = [f.to_dict() for f in detect_faces(out, params, model)]
        found_before += len(faces)
        found_again += face_quality.found_again(faces, again)
        scene = _jpeg_round_trip(generate_image(i, a.size, a.size, a.seed, "scene"))
        without.append(face_quality.score_image(
            [f.to_dict() for f in detect_faces(scene, params, model)], []))
    quality = face_quality.summarize(with_faces)
    scenes = face_quality.summarize(without)
    result = {"images": a.images, "size": a.size, "seed": a.seed, "threshold": a.threshold,
              "face_min_size": a.face_min_size, "style": a.style, "shape": a.shape,
              "faces": quality.to_dict(), "face_free": scenes.to_dict(),
              "found_before": found_before, "found_again": found_again,
              "found_again_share": found_again / found_before if found_before else None}
    print(f"recall {quality.recall:.3f} ({quality.found}/{quality.faces} faces >= "
          f"{face_quality.MIN_HEIGHT} px tall, IoU >= {face_quality.IOU_MIN}); false positives per image: "
          f"{quality.false_positives_per_image:.2f} on face images, "
          f"{scenes.false_positives_per_image:.2f} on face-free scenes")
    print(f"irreversibility ({a.style}, {a.shape}): {found_again}/{found_before} faces found "
          f"again = {result['found_again_share']:.3f}", flush=True)

    if a.timing_images:
        blur_params = BlurParams()
        walls = {"faces": [], "blur": []}
        cpus = {"faces": [], "blur": []}
        for _ in range(a.repeats):
            for image in images[: a.timing_images]:
                for name, fn in (("faces", lambda im=image: anonymize_faces(im, params)),
                                 ("blur", lambda im=image: blur(im, blur_params))):
                    wall, cpu = _timed(fn)
                    walls[name].append(wall)
                    cpus[name].append(cpu)
        med = {f"{k}_{name}_ms": statistics.median(v) * 1000
               for k, d in (("wall", walls), ("cpu", cpus)) for name, v in d.items()}
        result.update(med)
        result["cost_ratio_wall"] = med["wall_faces_ms"] / med["wall_blur_ms"]
        result["cost_ratio_cpu"] = med["cpu_faces_ms"] / med["cpu_blur_ms"]
        print(f"cost per image (median of {len(walls['faces'])}, one thread): face workload "
              f"{med['wall_faces_ms']:.0f} ms wall / {med['cpu_faces_ms']:.0f} ms CPU; full-frame "
              f"blur {med['wall_blur_ms']:.0f} ms wall / {med['cpu_blur_ms']:.0f} ms CPU; ratio "
              f"{result['cost_ratio_wall']:.2f} wall, {result['cost_ratio_cpu']:.2f} CPU")
    if a.json:
        with open(a.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2, default=str)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
