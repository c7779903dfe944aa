"""The faces run's stage costs per 2000x2000 JPEG against the exact full-frame blur, with lossless
JPEG output (``parablur.jpeg_edit``) and with the whole re-encode it replaces.

Part 1, in this process (one OpenCV thread, the worker's own functions), interleaved rounds on
the same images, medians per image of each stage: decode, workload (detect + anonymize, or the
blur), output (``worker.encode_output``: the lossless edit, or the fallback encode) and, for
faces, the whole re-encode of the same output (``worker.encode``, what a faces run did before).
Part 2, whole runs: ``parablur run --workload faces`` against ``parablur run --workload blur
--engine exact``, both ``--executor sequential --force``, interleaved rounds, the run's task
seconds per image (``--summary-json``), medians.

    python benchmarks/jpeg_output.py --images 8 --rounds 5
    python benchmarks/jpeg_output.py --images 8 --rounds 5 --fallback scene   # photos without faces
    python benchmarks/jpeg_output.py --input-dir my_jpegs --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from parablur.config import FaceParams
from parablur.workloads import BlurWorkload
from parablur.workloads.faces import FaceWorkload

ARMS = ("faces", "blur")


def _stage_times(job, data: bytes, name: str, whole: bool) -> dict[str, float]:
    from parablur.imageinfo import read_size
    from parablur.worker import decode_for, encode, encode_output

    t0 = time.perf_counter()
    image, full_shape = decode_for(job, data, ".jpg", read_size(data))
    t1 = time.perf_counter()
    out, record = job.workload(image, full_shape)
    t2 = time.perf_counter()
    _, record = encode_output(data, None if full_shape else image, out, name, job, record)
    t3 = time.perf_counter()
    times = {"decode": t1 - t0, "workload": t2 - t1, "output": t3 - t2, "total": t3 - t0}
    if whole:
        t4 = time.perf_counter()
        encode(out, ".jpg", job)
        times["whole_encode"] = time.perf_counter() - t4
        times["lossless"] = float(bool(record and record.get("jpeg", {}).get("lossless")))
    return times


def stages(files: list[Path], rounds: int, face_min_size: int | None) -> dict:
    from parablur.worker import Job, prepare_process

    prepare_process()
    params = FaceParams() if face_min_size is None else FaceParams(face_min_size=face_min_size)
    jobs = {"faces": Job(FaceWorkload(params)), "blur": Job(BlurWorkload(engine="exact"))}
    datas = [f.read_bytes() for f in files]
    _stage_times(jobs["faces"], datas[0], "w.jpg", True)  # model load, detector creation
    seen: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for r in range(rounds):
        for i, data in enumerate(datas):
            order = ARMS if (r + i) % 2 == 0 else ARMS[::-1]
            for arm in order:
                seen[arm].append(_stage_times(jobs[arm], data, files[i].name, arm == "faces"))
    med = {arm: {k: statistics.median(t[k] for t in seen[arm]) for k in seen[arm][0]} for arm in ARMS}
    ratios = [f["total"] / b["total"] for f, b in zip(seen["faces"], seen["blur"], strict=True)]
    med["faces_over_blur"] = statistics.median(ratios)
    med["faces_over_blur_range"] = [min(ratios), max(ratios)]
    med["lossless_share"] = statistics.mean(t["lossless"] for t in seen["faces"])
    return med


def runs(folder: Path, rounds: int, face_min_size: int | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="parablur-jpeg-bench-") as tmp:
        per_image: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for r in range(rounds + 1):  # round 0 warms the caches and is not counted
            for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                summary = Path(tmp) / f"{arm}.json"
                cmd = [sys.executable, "-m", "parablur", "run", "--input-dir", str(folder),
                       "--output-dir", str(Path(tmp) / arm), "--executor", "sequential", "--force",
                       "--quiet", "--no-dashboard", "--summary-json", str(summary)]
                cmd += (["--workload", "faces"] + (["--face-min-size", str(face_min_size)]
                                                   if face_min_size else [])
                        if arm == "faces" else ["--workload", "blur", "--engine", "exact"])
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                s = json.loads(summary.read_text())
                if r:
                    per_image[arm].append(s["task_s"] / s["ok"])
    med = {arm: statistics.median(v) for arm, v in per_image.items()}
    ratios = [f / b for f, b in zip(per_image["faces"], per_image["blur"], strict=True)]
    return {"s_per_image": med, "faces_over_blur": statistics.median(ratios),
            "faces_over_blur_range": [min(ratios), max(ratios)]}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input-dir", type=Path, default=None,
                   help="JPEGs to time (default: `parablur fetch --fallback faces`, 2000x2000)")
    p.add_argument("--images", type=int, default=8, help="generated images (without --input-dir)")
    p.add_argument("--fallback", default="faces", choices=("faces", "scene"),
                   help="what the generated images show (scene: no face, the output is the source)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--face-min-size", type=int, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="parablur-jpeg-data-") as tmp:
        folder = a.input_dir
        if folder is None:
            folder = Path(tmp) / "faces"
            subprocess.run([sys.executable, "-m", "parablur", "fetch", "--fallback", a.fallback,
                            "--num-images", str(a.images), "--input-dir", str(folder), "--quiet",
                            "--source-url", "http://127.0.0.1:9/x"], check=True, stdout=subprocess.DEVNULL)
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg"))
        figures = {"images": len(files), "rounds": a.rounds,
                   "stages": stages(files, a.rounds, a.face_min_size),
                   "runs": runs(folder, a.rounds, a.face_min_size)}
    st = figures["stages"]
    print(f"{len(files)} JPEGs, {a.rounds} interleaved rounds, medians in ms per image")
    print(f"{'':14}{'decode':>8}{'workload':>10}{'output':>8}{'total':>8}{'whole re-encode':>17}")
    for arm in ARMS:
        t = st[arm]
        whole = f"{1000 * t['whole_encode']:17.1f}" if "whole_encode" in t else ""
        print(f"{arm:14}{1000 * t['decode']:8.1f}{1000 * t['workload']:10.1f}{1000 * t['output']:8.1f}"
              f"{1000 * t['total']:8.1f}{whole}")
    lo, hi = st["faces_over_blur_range"]
    print(f"faces / exact blur, per image (stages): {st['faces_over_blur']:.2f}x "
          f"(range {lo:.2f} to {hi:.2f}); lossless output on {st['lossless_share']:.0%} of the faces outputs")
    rn = figures["runs"]
    lo, hi = rn["faces_over_blur_range"]
    print(f"whole sequential runs, task s per image: faces {rn['s_per_image']['faces']:.3f}, "
          f"exact blur {rn['s_per_image']['blur']:.3f}: {rn['faces_over_blur']:.2f}x "
          f"(range {lo:.2f} to {hi:.2f})")
    if a.json:
        a.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
