#!/usr/bin/env python3
"""ParaBlur's face workload against deface 1.5.0 (CenterFace): speed per core, recall by face
height and false positives, faces left, metadata.

    PYTHONPATH=src .venv/bin/python benchmarks/vs_deface.py --rounds 2 --images 6 \
        --deface-venv /work/main/benchmarks/.deface-venv --out results.json

Both tools get the same JPEGs: ParaBlur's face frames (``parablur fetch --fallback faces``,
offline; 2000x2000 by default), whose manifest holds the true box of every face, or any
folder with such a manifest (``--input-dir``: its first 2N images in name order).

0. Detections, scored by the same code (``parablur.workloads.face_quality``: recall of the
   true faces at least 16 px tall, overall and by band of the true box's height, and false
   positives per image). deface's are its CenterFace's at deface's defaults (threshold 0.2,
   no --scale), got by ``deface_detect.py`` in deface's virtualenv (pinned, one onnxruntime
   thread), which calls ``deface.centerface.CenterFace`` as deface does; ParaBlur's are the
   ``detections.jsonl`` of its run (default settings) on the same images.

1. Speed per core. Each tool runs as its own process pinned to one CPU (``taskset -c``;
   onnxruntime sizes its thread pool without looking at OMP_NUM_THREADS, so only the
   pinning holds it to one core) over a whole folder: deface with one command
   (``deface DIR``, its model loaded once), ParaBlur with ``parablur run --workload
   faces --executor sequential``. Wall time includes start-up and model load. Each
   tool does a folder of N images and one of 2N: (t(2N) - t(N)) / N is the steady
   cost per image. Rounds interleave the tools (deface first, then ParaBlur first,
   ...); medians and the per-round ratio are reported, never one run.
2. Faces left exposed, scored on both tools' outputs by the same code: a true face is
   exposed when ParaBlur's detector (YuNet, default FaceParams) still finds a face at
   IoU >= 0.3 with it in the output, and untouched when the mean absolute difference
   over its box is < 8. Outside all true boxes: mean absolute difference and the share
   of pixels changed by > 2 (JPEG re-encoding counts), also outside the boxes grown 2x.
   The judge is ParaBlur's own detector, so it favours ParaBlur: a face it misses in
   the input can never be "exposed" in ParaBlur's output (ParaBlur leaves it as it is),
   and its blur is tuned to push YuNet's score below its threshold. "Untouched" does
   not depend on any detector.
3. Metadata: two inputs get an EXIF block with GPS spliced in (the pixels are not
   re-encoded); does each tool's output still carry it (read with Pillow)?

deface runs in a virtualenv of its own (``--deface-venv``, default
benchmarks/.deface-venv, git-ignored), made by ``deface_env.ensure_deface`` when missing:
``deface==1.5.0`` without its dependencies, then what it imports at run time (onnx is
needed too: without it deface silently falls back to OpenCV's DNN backend;
opencv-python-headless stands in for opencv-python). deface runs with
``--execution-provider CPUExecutionProvider`` (by default it names onnxruntime's
AzureExecutionProvider first, which hands every node to the CPU anyway).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from deface_env import (
    HERE,
    ONE_THREAD_LINE,
    check_deface_log,
    child_env,
    deface_cmd,
    ensure_deface,
    machine,
    parablur_cmd,
    pinned,
    timed,
    versions,
)

from parablur.analysis import images_per_core
from parablur.workloads import face_quality
from parablur.workloads.face_quality import iou as _iou

IOU_EXPOSED = 0.3
UNTOUCHED_MAD = 8.0
CHANGED_PX = 2


def make_dataset(folder: Path, n: int, width: int, height: int, seed: int) -> tuple[list[str], dict]:
    """n generated face scenes in ``folder`` (reused when there), their files and true boxes."""
    from parablur.ingestion.manifest import true_faces

    subprocess.run(parablur_cmd("fetch", "--input-dir", str(folder), "--fallback", "faces",
                                "--num-images", str(n), "--width", str(width), "--height", str(height),
                                "--seed", str(seed), "--source-url", "http://127.0.0.1:9/x",
                                "--retries", "0", "--quiet"),
                   check=True, env=child_env(), stdout=subprocess.DEVNULL)
    truths = true_faces(folder)
    return sorted(truths)[:n], truths


def run_deface(exe: Path, src: Path, files: list[str], work: Path, cpu: int, extra=()) -> tuple[dict, dict]:
    """deface over a fresh folder holding ``files`` (it writes X_anonymized.jpg beside each input)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for f in files:
        shutil.copy2(src / f, work / f)
    cmd = pinned(cpu, deface_cmd(exe, *extra, str(work), one_thread=True))
    t = timed(cmd, work.with_suffix(".log"))
    check_deface_log(work.with_suffix(".log"), one_thread=True)
    return t | {"cmd": cmd}, {f: work / f.replace(".jpg", "_anonymized.jpg") for f in files}


def run_parablur(src: Path, files: list[str], work: Path, cpu: int) -> tuple[dict, dict]:
    """ParaBlur's sequential face run over a fresh folder holding ``files``."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "in").mkdir(parents=True)
    for f in files:
        shutil.copy2(src / f, work / "in" / f)
    cmd = pinned(cpu, parablur_cmd("run", "--workload", "faces", "--executor", "sequential",
                                   "--input-dir", str(work / "in"), "--output-dir", str(work / "out"),
                                   "--quiet"))
    t = timed(cmd, work.with_suffix(".log"))
    return t | {"cmd": cmd}, {f: work / "out" / "sequential" / f for f in files}


def speed(exe: Path, src: Path, files: list[str], work: Path, rounds: int, cpu: int) -> dict:
    """Interleaved rounds of both tools on the first N and all 2N files; per round and medians."""
    n = len(files) // 2
    per_round, outputs, commands = [], {}, {}
    for r in range(rounds):
        order = ["deface", "parablur"] if r % 2 == 0 else ["parablur", "deface"]
        row = {"order": order}
        for tool in order:
            for k, subset in (("n", files[:n]), ("2n", files)):
                if tool == "deface":
                    t, outs = run_deface(exe, src, subset, work / f"deface-{k}", cpu)
                else:
                    t, outs = run_parablur(src, subset, work / f"parablur-{k}", cpu)
                row[f"{tool}_{k}"] = {"wall_s": t["wall_s"], "cpu_s": t["cpu_s"]}
                if k == "2n" and r == 0:
                    env = f"PYTHONPATH={HERE.parent / 'src'} " if tool == "parablur" else ""
                    commands[tool] = env + " ".join(t["cmd"])
                    shutil.copytree(outs[files[0]].parent, work / f"{tool}-kept", dirs_exist_ok=True)
                    outputs[tool] = {f: work / f"{tool}-kept" / p.name for f, p in outs.items()}
        for tool in ("deface", "parablur"):
            t_n, t_2n = row[f"{tool}_n"]["wall_s"], row[f"{tool}_2n"]["wall_s"]
            row[f"{tool}_img_per_s"] = round(2 * n / t_2n, 3)
            row[f"{tool}_steady_s_per_img"] = round((t_2n - t_n) / n, 4)
            row[f"{tool}_cpu_s_per_img"] = round(row[f"{tool}_2n"]["cpu_s"] / (2 * n), 4)
            # Pinned to one CPU: the steady rate is the images per core.
            row[f"{tool}_img_per_core"] = round(images_per_core(n / (t_2n - t_n), 1), 3)
        row["ratio_img_per_s"] = round(row["parablur_img_per_s"] / row["deface_img_per_s"], 2)
        row["ratio_steady"] = round(row["deface_steady_s_per_img"] / row["parablur_steady_s_per_img"], 2)
        row["ratio_img_per_core"] = round(row["parablur_img_per_core"] / row["deface_img_per_core"], 2)
        # CPU seconds per image (start-up included, over the 2N folder): what waiting for a shared
        # CPU does not inflate, unlike the wall time.
        row["ratio_cpu_s_per_img"] = round(row["deface_cpu_s_per_img"] / row["parablur_cpu_s_per_img"], 2)
        print(f"  round {r + 1}: deface {row['deface_img_per_s']} img/s, parablur {row['parablur_img_per_s']}"
              f" img/s, ratio {row['ratio_img_per_s']} (steady {row['ratio_steady']}); images per core "
              f"deface {row['deface_img_per_core']}, parablur {row['parablur_img_per_core']}, ratio "
              f"{row['ratio_img_per_core']}; CPU s/image ratio {row['ratio_cpu_s_per_img']}", flush=True)
        per_round.append(row)
    med = {k: round(statistics.median(r[k] for r in per_round), 4) for k in per_round[0]
           if k.endswith(("img_per_s", "s_per_img", "ratio_steady", "img_per_core"))}
    med["rounds_ratio_img_per_core"] = [r["ratio_img_per_core"] for r in per_round]
    return {"images_n": n, "images_2n": 2 * n, "commands": commands, "rounds": per_round,
            "median": med}, outputs


DETECT = HERE / "deface_detect.py"


def deface_detections(exe: Path, src: Path, files: list[str], work: Path, cpu: int) -> tuple[dict, dict]:
    """deface's CenterFace detections on ``files`` (``deface_detect.py``, pinned, one thread);
    {file: [{"box", "score"}]} and the timing (model load excluded)."""
    log = work / "deface-detect.jsonl"
    work.mkdir(parents=True, exist_ok=True)
    cmd = pinned(cpu, [str(exe.parent / "python"), str(DETECT), *(str(src / f) for f in files)])
    with open(log, "w") as out:
        subprocess.run(cmd, check=True, env=child_env(), stdout=out, stderr=subprocess.STDOUT, cwd=HERE)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    if ONE_THREAD_LINE not in log.read_text() or {"backend": "onnxrt"} not in lines:
        raise RuntimeError(f"deface's CenterFace did not run on onnxruntime with one thread: see {log}")
    found = {x["image"]: x["faces"] for x in lines if "image" in x}
    per_image = [x["detect_s"] for x in lines if "image" in x]
    total = next(x["total_s"] for x in lines if "total_s" in x)
    return found, {"detect_s_per_img_median": round(statistics.median(per_image), 4),
                   "detect_img_per_s": round(len(files) / total, 3)}


def parablur_detections(out_dir: Path) -> dict:
    """ParaBlur's detections by image, from the ``detections.jsonl`` its run wrote in ``out_dir``."""
    lines = [json.loads(x) for x in (out_dir / "detections.jsonl").read_text().splitlines() if x]
    return {x["image"]: x.get("faces", []) for x in lines}


def band_quality(found: dict, truths: dict, files: list[str]) -> dict:
    """Recall by band of the true face's height and false positives per image (face_quality)."""
    return face_quality.summarize(face_quality.score_image(found.get(f, []), truths[f])
                                  for f in files).to_dict()


def _mask(shape, boxes, grow: float = 1.0) -> np.ndarray:
    """True inside any of ``boxes`` (each grown ``grow`` times about its centre)."""
    m = np.zeros(shape[:2], bool)
    for x, y, w, h in boxes:
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = max(0, round(cx - w * grow / 2)), max(0, round(cy - h * grow / 2))
        m[y0:round(cy + h * grow / 2), x0:round(cx + w * grow / 2)] = True
    return m


def score(src: Path, outputs: dict[str, Path], truths: dict, detect) -> dict:
    """Faces exposed / untouched and pixels changed outside the faces, over ``outputs``."""
    faces = exposed = untouched = 0
    outside = {"mad": [], "changed": [], "mad_2x": [], "changed_2x": []}
    for f, out_path in outputs.items():
        before, after = cv2.imread(str(src / f)), cv2.imread(str(out_path))
        diff = np.abs(before.astype(np.int16) - after.astype(np.int16))
        found = detect(after)
        for box in truths[f]:
            faces += 1
            exposed += any(_iou(box, g) >= IOU_EXPOSED for g in found)
            x, y, w, h = box
            untouched += float(diff[y:y + h, x:x + w].mean()) < UNTOUCHED_MAD
        for grow, suffix in ((1.0, ""), (2.0, "_2x")):
            keep = ~_mask(diff.shape, truths[f], grow)
            outside["mad" + suffix].append(float(diff[keep].mean()))
            outside["changed" + suffix].append(float((diff.max(axis=2)[keep] > CHANGED_PX).mean()))
    return {"faces": faces, "exposed": exposed, "untouched": untouched,
            "outside_mad": round(float(np.mean(outside["mad"])), 3),
            "outside_changed_share": round(float(np.mean(outside["changed"])), 4),
            "outside_2x_mad": round(float(np.mean(outside["mad_2x"])), 3),
            "outside_2x_changed_share": round(float(np.mean(outside["changed_2x"])), 4)}


def detector():
    """ParaBlur's own detector with default FaceParams: image -> list of boxes."""
    from parablur.config import FaceParams
    from parablur.models import find_model
    from parablur.workloads.faces import detect_faces

    model = find_model()
    params = FaceParams(model=model)
    return lambda image: [f.box for f in detect_faces(image, params, model)]


def _with_gps_exif(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP1 EXIF block (camera make, GPS position) spliced in after SOI."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x010F] = "BenchCam"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}  # GPS IFD
    body = exif.tobytes()  # starts with b"Exif\0\0"
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


def _gps_of(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as im:
        return bool(im.getexif().get_ifd(0x8825))


def metadata(exe: Path, src: Path, files: list[str], work: Path, cpu: int) -> dict:
    """Whether each tool's outputs keep an input's EXIF GPS block (deface also with --keep-metadata)."""
    tagged = work / "exif-in"
    shutil.rmtree(tagged, ignore_errors=True)
    tagged.mkdir(parents=True)
    for f in files:
        (tagged / f).write_bytes(_with_gps_exif((src / f).read_bytes()))
    assert all(_gps_of(tagged / f) for f in files)
    runs = {"deface": run_deface(exe, tagged, files, work / "exif-deface", cpu),
            "deface --keep-metadata": run_deface(exe, tagged, files, work / "exif-deface-m", cpu,
                                                 ["--keep-metadata"]),
            "parablur": run_parablur(tagged, files, work / "exif-parablur", cpu)}
    return {tool: {"gps_kept": sum(_gps_of(p) for p in outs.values()), "of": len(files)}
            for tool, (_, outs) in runs.items()}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["2000x2000"], help="WxH of the generated images")
    p.add_argument("--input-dir", type=Path, default=None,
                   help="a folder of JPEGs with a manifest of true boxes (instead of generated images)")
    p.add_argument("--images", type=int, default=12, help="N: each tool does N, then 2N images, per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="the CPU both tools run on")
    p.add_argument("--work", type=Path, default=Path("/tmp/parablur-vs-deface"))
    p.add_argument("--deface-venv", type=Path, default=HERE / ".deface-venv")
    p.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    a = p.parse_args(argv)

    exe = ensure_deface(a.deface_venv)
    detect = detector()
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine(), "versions": versions(exe), "argv": sys.argv, "cpu": a.cpu,
              "rounds": a.rounds, "sizes": {}}
    sets = [(a.input_dir.name, a.input_dir)] if a.input_dir else [(size, None) for size in a.sizes]
    for size, folder in sets:
        if folder is None:
            w, h = map(int, size.split("x"))
            data = a.work / f"data-{size}"
            files, truths = make_dataset(data, 2 * a.images, w, h, a.seed)
        else:
            from parablur.ingestion.manifest import true_faces

            data, truths = folder, true_faces(folder)
            files = sorted(truths)[:2 * a.images]
        print(f"{size}: {len(files)} images, {sum(len(truths[f]) for f in files)} true faces", flush=True)
        sp, outputs = speed(exe, data, files, a.work / size, a.rounds, a.cpu)
        theirs, detect_speed = deface_detections(exe, data, files, a.work / size, a.cpu)
        bands = {"deface": band_quality(theirs, truths, files),
                 "parablur": band_quality(parablur_detections(outputs["parablur"][files[0]].parent),
                                          truths, files)}
        found_in_inputs = sum(any(_iou(b, g) >= IOU_EXPOSED for g in detect(cv2.imread(str(data / f))))
                              for f in files for b in truths[f])
        quality = {tool: score(data, outs, truths, detect) for tool, outs in outputs.items()}
        result["sizes"][size] = {"speed": sp, "deface_detection_only": detect_speed,
                                 "detections": bands, "found_by_yunet_in_inputs": found_in_inputs,
                                 "quality": quality}
        first_data, first_files = data, files
    result["metadata"] = metadata(exe, first_data, first_files[:2], a.work / "meta", a.cpu)
    report(result)
    if a.out:
        a.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def report(r: dict) -> None:
    print(f"\n{r['date']}  {r['machine']['cpu_model']}, {r['machine']['nproc']} CPUs; both tools on "
          f"CPU {r['cpu']} alone; {r['rounds']} interleaved rounds, medians")
    print(f"{'size':>10} {'tool':>9} {'img/s':>7} {'steady s/img':>12} {'cpu s/img':>9} {'exposed':>8} "
          f"{'untouched':>9} {'out MAD':>7} {'out >2':>7} {'out2x >2':>8}")
    for size, s in r["sizes"].items():
        med = s["speed"]["median"]
        for tool in ("deface", "parablur"):
            q = s["quality"][tool]
            print(f"{size:>10} {tool:>9} {med[tool + '_img_per_s']:>7.2f} "
                  f"{med[tool + '_steady_s_per_img']:>12.3f} {med[tool + '_cpu_s_per_img']:>9.3f} "
                  f"{q['exposed']:>3}/{q['faces']:<4} {q['untouched']:>4}/{q['faces']:<4} "
                  f"{q['outside_mad']:>7.2f} {q['outside_changed_share']:>7.1%} "
                  f"{q['outside_2x_changed_share']:>8.1%}")
        print(f"{size:>10} ratio parablur/deface: {med['ratio_img_per_s']:.2f}x img/s "
              f"(steady {med['ratio_steady']:.2f}x); YuNet finds {s['found_by_yunet_in_inputs']} of the "
              f"true faces in the inputs")
    print("\nDetections scored by face_quality (IoU >= 0.3; recall of true faces >= 16 px tall, by "
          "the true box's height; false positives per image):")
    names = [name for name, _, _ in face_quality.BANDS]
    print(f"{'set':>10} {'tool':>9} {'recall':>7} " + " ".join(f"{n:>16}" for n in names)
          + f" {'FP/image':>8} {'img/s/core':>10}")
    for size, s in r["sizes"].items():
        med = s["speed"]["median"]
        for tool in ("deface", "parablur"):
            q = s["detections"][tool]
            cells = [f"{q['found_by_height'][n]}/{q['faces_by_height'][n]}"
                     + (f" {q['recall_by_height'][n]:.3f}" if q["recall_by_height"][n] is not None else "")
                     for n in names]
            print(f"{size:>10} {tool:>9} {q['recall']:>7.4f} " + " ".join(f"{c:>16}" for c in cells)
                  + f" {q['false_positives_per_image']:>8.2f} {med[tool + '_img_per_core']:>10.3f}")
        print(f"{size:>10} images per core parablur/deface: {med['ratio_img_per_core']:.2f}x (median of "
              f"the rounds' ratios {med['rounds_ratio_img_per_core']}; by CPU seconds per image "
              f"{med['ratio_cpu_s_per_img']:.2f}x; deface's CenterFace alone: "
              f"{s['deface_detection_only']['detect_img_per_s']:.3f} img/s)")
    for tool, m in r["metadata"].items():
        print(f"EXIF GPS kept by {tool}: {m['gps_kept']}/{m['of']}")


if __name__ == "__main__":
    main()
