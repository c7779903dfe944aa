#!/usr/bin/env python3
"""ParaBlur's face workload on video against deface 1.5.0: frames/s per core, face-frames left
exposed, and what each output keeps (frame count, rate, duration, audio, frame size).

    PYTHONPATH=src .venv/bin/python benchmarks/vs_deface_video.py --out video-results.json

Both tools get the same generated clips (``parablur fetch --fallback faces-video``: real
faces, a moving camera, AAC audio), whose manifest holds every face's true box in every
frame; one dataset per size (default 1280x720 and 1920x1080).

1. Speed per core. Each tool is one process over the folder of clips, pinned to one CPU with
   ``taskset -c`` (its children inherit it: deface's two ffmpeg processes, which decode and
   encode through pipes, included). deface runs with onnxruntime held to one thread
   (``deface_one_thread.py``) and its defaults otherwise (``deface --execution-provider
   CPUExecutionProvider DIR``); ParaBlur with ``parablur run --workload faces --executor
   sequential`` and its defaults (the CLI pins OpenCV to one thread; each encoder runs one
   thread). Wall time includes start-up and model load. frames/s is the clips' frames over
   the wall time; frames per CPU second (user + system of the process and its children)
   is less moved by other programs taking turns on the same core, and CPU s / wall s shows
   how much of a core each tool had. Rounds interleave the tools (ParaBlur first, then
   deface first, ...), every size in each round; medians and the per-round ratio are
   reported, never one run. ``--no-pin`` runs both unpinned, to see how many cores each
   takes by itself.
2. Face-frames left exposed, scored on both tools' outputs (of the first round) by
   ``face_quality.exposed_face_frames``: source and output decoded with PyAV a frame at a
   time, a true face (longer side >= 32 px) in a frame is exposed when the output's mean
   absolute difference over its box is at most 8. An output whose
   frame size is not the source's (imageio, which deface writes with, rescales a side that
   is not a multiple of 16: 1080 becomes 1088) is scaled back to the source's size first;
   ``rescale_control`` scores the source itself sent through the same two rescales, i.e.
   what an untouched clip would score: the rescale alone must not pass for hiding.
3. What each output keeps, probed with ``parablur.video.probe``. deface drops the audio
   unless asked (``--keep-audio``); both are run on one short extra clip (640x360, 2 s).

deface's virtualenv is ``--deface-venv`` (default benchmarks/.deface-venv, git-ignored),
made by ``deface_env.ensure_deface`` when missing.
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
from collections.abc import Iterable, Iterator
from pathlib import Path

import av
import cv2
import numpy as np
from deface_env import (
    HERE,
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

from parablur import video
from parablur.environment import snapshot
from parablur.ingestion.manifest import clip_truth
from parablur.noise import LoadSampler
from parablur.workloads.face_quality import Exposure, exposed_face_frames

TOOLS = ("parablur", "deface")
#: The issue's targets: face-frames left exposed, and frames/s per core against deface's.
TARGET_EXPOSED_FRACTION = 0.005
TARGET_RATIO = 5.0
#: The short clip on which deface's default and --keep-audio outputs are compared.
AUDIO_CLIP = {"width": 640, "height": 360, "seconds": 2}


def make_clips(folder: Path, n: int, width: int, height: int, seconds: float, seed: int) -> dict:
    """n generated face clips in ``folder`` (reused when there); their truth by file."""
    subprocess.run(parablur_cmd("fetch", "--fallback", "faces-video", "--input-dir", str(folder),
                                "--num-images", str(n), "--clip-seconds", str(seconds),
                                "--width", str(width), "--height", str(height), "--seed", str(seed),
                                "--quiet"),
                   check=True, env=child_env(), stdout=subprocess.DEVNULL)
    truth = clip_truth(folder)
    if len(truth) != n:
        raise RuntimeError(f"{folder} holds {len(truth)} clips, not {n}: remove it and run again")
    return truth


def measured(cmd: list[str], log: Path, frames: int) -> dict:
    """Run ``cmd``: wall and CPU time, frames/s, frames per CPU second, and what other programs took."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with LoadSampler(busy_cores=1) as sampler:
        t = timed(cmd, log)
    load = sampler.load
    return t | {"frames_per_s": round(frames / t["wall_s"], 3),
                "frames_per_cpu_s": round(frames / max(t["cpu_s"], 1e-9), 3),
                "cores": round(t["cpu_s"] / t["wall_s"], 3),
                "outside_cores": round(load.outside_cores, 3), "steal_cores": round(load.steal_cores, 3)}


def run_parablur(data: Path, files: Iterable[str], work: Path, cpu: int | None,
                 frames: int) -> tuple[dict, dict]:
    """ParaBlur's sequential face run over the dataset folder into a fresh output folder."""
    out = work / "parablur-out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = pinned(cpu, parablur_cmd("run", "--workload", "faces", "--executor", "sequential",
                                   "--input-dir", str(data), "--output-dir", str(out), "--quiet"))
    t = measured(cmd, work / "parablur.log", frames)
    return t | {"cmd": cmd}, {f: out / "sequential" / f for f in files}


def run_deface(exe: Path, data: Path, files: Iterable[str], work: Path, cpu: int | None, frames: int,
               extra: Iterable[str] = (), name: str = "deface") -> tuple[dict, dict]:
    """deface over a fresh folder holding the clips (it writes X_anonymized.mp4 beside each one)."""
    files = list(files)
    folder = work / f"{name}-in"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for f in files:
        try:
            os.link(data / f, folder / f)
        except OSError:
            shutil.copy2(data / f, folder / f)
    cmd = pinned(cpu, deface_cmd(exe, *extra, str(folder), one_thread=True))
    log = work / f"{name}.log"
    t = measured(cmd, log, frames)
    check_deface_log(log, one_thread=True)
    return t | {"cmd": cmd}, {f: folder / f.replace(".mp4", "_anonymized.mp4") for f in files}


def keep(outputs: dict[str, Path], dest: Path) -> dict[str, Path]:
    """Move a run's outputs to ``dest`` (the next round starts afresh); their new paths."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    kept = {}
    for f, path in outputs.items():
        kept[f] = dest / f
        shutil.move(path, kept[f])
    return kept


def speed(exe: Path, datasets: dict, work: Path, rounds: int, cpu: int | None) -> tuple[dict, dict]:
    """Interleaved rounds of both tools over every size; per round, medians, first round's outputs."""
    per_size = {size: [] for size in datasets}
    outputs: dict[str, dict[str, dict[str, Path]]] = {size: {} for size in datasets}
    commands: dict[str, dict[str, str]] = {size: {} for size in datasets}
    for r in range(rounds):
        order = TOOLS if r % 2 == 0 else TOOLS[::-1]
        for size, (data, truth) in datasets.items():
            frames = sum(t["frames"] for t in truth.values())
            row: dict = {"order": list(order)}
            for tool in order:
                if tool == "parablur":
                    t, outs = run_parablur(data, truth, work / size, cpu, frames)
                else:
                    t, outs = run_deface(exe, data, truth, work / size, cpu, frames)
                row[tool] = {k: v for k, v in t.items() if k != "cmd"}
                if r == 0:
                    env = f"PYTHONPATH={HERE.parent / 'src'} " if tool == "parablur" else ""
                    commands[size][tool] = env + " ".join(t["cmd"])
                    outputs[size][tool] = keep(outs, work / size / f"{tool}-kept")
            p, d = row["parablur"], row["deface"]
            row["ratio_frames_per_s"] = round(p["frames_per_s"] / d["frames_per_s"], 2)
            row["ratio_frames_per_cpu_s"] = round(p["frames_per_cpu_s"] / d["frames_per_cpu_s"], 2)
            per_size[size].append(row)
            print(f"  round {r + 1} {size}: ParaBlur {p['frames_per_s']:.2f} frames/s "
                  f"({p['cores']:.2f} cores), deface {d['frames_per_s']:.2f} frames/s "
                  f"({d['cores']:.2f} cores); "
                  f"ratio {row['ratio_frames_per_s']:.2f}x (per CPU s {row['ratio_frames_per_cpu_s']:.2f}x); "
                  f"outside load {p['outside_cores']:.2f} / {d['outside_cores']:.2f} cores", flush=True)
    result = {}
    for size, rows in per_size.items():
        median = {tool: {k: round(statistics.median(r[tool][k] for r in rows), 3) for k in rows[0][tool]}
                  for tool in TOOLS}
        for k in ("ratio_frames_per_s", "ratio_frames_per_cpu_s"):
            median[k] = round(statistics.median(r[k] for r in rows), 2)
        frames = sum(t["frames"] for t in datasets[size][1].values())
        result[size] = {"clips": len(datasets[size][1]), "frames": frames, "commands": commands[size],
                        "rounds": rows, "median": median}
    return result, outputs


def bgr_frames(path: Path, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """A clip's frames as BGR arrays, one at a time; scaled to ``size`` (w, h) when they differ."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="bgr24")
            if size is not None and image.shape[1::-1] != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            yield image


def through_rescale(frames: Iterable[np.ndarray], there: tuple[int, int]) -> Iterator[np.ndarray]:
    """Each frame scaled to ``there`` (w, h) and back, as an output of that size is scored."""
    for image in frames:
        back = image.shape[1::-1]
        yield cv2.resize(cv2.resize(image, there, interpolation=cv2.INTER_CUBIC), back,
                         interpolation=cv2.INTER_AREA)


def has_audio(info: video.ClipInfo) -> bool:
    return any(s.type == "audio" for s in info.streams)


def checks(source: Path, output: Path) -> dict:
    """What ``output`` kept of ``source``: frame count, rate, duration (to a frame), audio, size."""
    a, b = video.probe(source), video.probe(output)
    frame_s = 1 / float(a.rate) if a.rate else 0.0
    return {
        "frames": [a.frames, b.frames], "rate": [str(a.rate), str(b.rate)],
        "duration_s": [round(a.duration, 3), round(b.duration, 3)],
        "audio": [has_audio(a), has_audio(b)], "size": [f"{a.width}x{a.height}", f"{b.width}x{b.height}"],
        "frames_kept": a.frames == b.frames, "rate_kept": a.rate == b.rate,
        "duration_kept": abs(a.duration - b.duration) <= frame_s + 1e-6,
        "audio_kept": has_audio(b) or not has_audio(a),
        "size_kept": (a.width, a.height) == (b.width, b.height),
    }


def _total(parts: Iterable[Exposure]) -> Exposure:
    parts = list(parts)
    return Exposure(*(sum(getattr(p, k) for p in parts)
                      for k in ("frames", "exposed", "total", "inner_exposed", "inner_total")))


def quality(data: Path, truth: dict, outputs: dict[str, Path]) -> dict:
    """Checks per clip and face-frames left exposed over every clip (with the rescale control)."""
    per_clip, exposures, controls = {}, [], []
    for f, out in outputs.items():
        c = checks(data / f, out)
        size = tuple(int(v) for v in c["size"][0].split("x"))
        c["scored"] = True
        try:
            seen = exposed_face_frames(bgr_frames(data / f), bgr_frames(out, size), truth[f]["faces"])
        except ValueError as exc:  # a frame count that differs: the clip is not scored
            c["scored"] = False
            c["not_scored_why"] = str(exc)
        else:
            exposures.append(seen)
            c["exposure"] = seen.to_dict()
        if not c["size_kept"]:
            there = tuple(int(v) for v in c["size"][1].split("x"))
            control = exposed_face_frames(bgr_frames(data / f), through_rescale(bgr_frames(data / f), there),
                                          truth[f]["faces"])
            controls.append(control)
            c["rescale_control"] = control.to_dict()
        per_clip[f] = c
    result = {"clips": per_clip, "exposure": _total(exposures).to_dict() if exposures else None}
    result |= {k: all(c[k] for c in per_clip.values())
               for k in ("frames_kept", "rate_kept", "duration_kept", "audio_kept", "size_kept", "scored")}
    if controls:
        result["rescale_control"] = _total(controls).to_dict()
    return result


def audio_check(exe: Path, work: Path, cpu: int | None, seed: int) -> dict:
    """deface with its defaults and with --keep-audio on one short clip: what each output keeps."""
    c = AUDIO_CLIP
    data = work / f"clips-audio-{c['width']}x{c['height']}-{c['seconds']}s-seed{seed}"
    truth = make_clips(data, 1, c["width"], c["height"], c["seconds"], seed)
    frames = sum(t["frames"] for t in truth.values())
    (f, _), = truth.items()
    runs = {}
    for name, extra in (("deface", ()), ("deface --keep-audio", ("--keep-audio",))):
        _, outs = run_deface(exe, data, truth, work / "audio", cpu, frames, extra, name.replace(" ", ""))
        runs[name] = checks(data / f, outs[f])
    return {"clip": f"{c['width']}x{c['height']}, {c['seconds']} s", "runs": runs}


def targets(sizes: dict) -> list[dict]:
    """Each target against each size's figures: the value, the target, and whether it was met."""
    rows = []
    for size, s in sizes.items():
        for tool in TOOLS:
            e = s["quality"][tool]["exposure"]
            value = None if e is None else e["exposed_fraction"]
            rows.append({"target": f"face-frames left exposed <= {TARGET_EXPOSED_FRACTION:.1%}", "size": size,
                         "tool": tool, "value": value,
                         "met": value is not None and value <= TARGET_EXPOSED_FRACTION})
        for key, what in (("ratio_frames_per_s", "frames/s per core"),
                          ("ratio_frames_per_cpu_s", "frames per CPU second")):
            ratio = s["speed"]["median"][key]
            rows.append({"target": f"{what} >= {TARGET_RATIO:g}x deface's", "size": size, "tool": "parablur",
                         "value": ratio, "met": ratio >= TARGET_RATIO})
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"], help="WxH of the clips")
    p.add_argument("--clips", type=int, default=1, help="clips per size")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each clip (30 fps)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of both tools")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)), help="the CPU both tools run on")
    p.add_argument("--no-pin", action="store_true",
                   help="run both tools unpinned (to see how many cores each takes)")
    p.add_argument("--no-audio-check", action="store_true", help="skip deface's --keep-audio check")
    p.add_argument("--work", type=Path, default=Path("/tmp/parablur-vs-deface-video"))
    p.add_argument("--deface-venv", type=Path, default=HERE / ".deface-venv")
    p.add_argument("--out", type=Path, default=None, help="write every figure to this JSON file")
    a = p.parse_args(argv)
    cpu = None if a.no_pin else a.cpu

    exe = ensure_deface(a.deface_venv)
    result = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine(), "environment": snapshot(), "versions": versions(exe), "argv": sys.argv,
              "cpu": cpu, "rounds": a.rounds, "clips_per_size": a.clips, "clip_seconds": a.seconds,
              "sizes": {}}
    datasets = {}
    for size in a.sizes:
        w, h = map(int, size.split("x"))
        data = a.work / f"clips-{size}-{a.clips}x{a.seconds:g}s-seed{a.seed}"
        truth = make_clips(data, a.clips, w, h, a.seconds, a.seed)
        datasets[size] = (data, truth)
        faces = sum(len(boxes) for t in truth.values() for boxes in t["faces"])
        print(f"{size}: {len(truth)} clips, {sum(t['frames'] for t in truth.values())} frames, "
              f"{faces} true face-frames", flush=True)
    speeds, outputs = speed(exe, datasets, a.work, a.rounds, cpu)
    for size, (data, truth) in datasets.items():
        scores = {tool: quality(data, truth, outputs[size][tool]) for tool in TOOLS}
        result["sizes"][size] = {"speed": speeds[size], "quality": scores}
    if not a.no_audio_check:
        result["audio_check"] = audio_check(exe, a.work, cpu, a.seed)
    result["targets"] = targets(result["sizes"])
    report(result)
    if a.out:
        a.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return result


def _kept(q: dict, key: str, field: str) -> str:
    """'kept', or what the first clip that did not keep it went from and to."""
    if q[key]:
        return "kept"
    c = next(c for c in q["clips"].values() if not c[key])
    return "dropped" if field == "audio" else f"{c[field][0]}->{c[field][1]}"


def _share(e: dict | None, part: str = "") -> str:
    if e is None:
        return "not scored"
    exposed, total = e[part + "exposed"], e[part + "total"]
    return f"{exposed}/{total} ({exposed / max(total, 1):.2%})"


def report(r: dict) -> None:
    where = "both tools unpinned" if r["cpu"] is None else f"both tools on CPU {r['cpu']} alone"
    print(f"\n{r['date']}  {r['machine']['cpu_model']}, {r['machine']['nproc']} CPUs; {where}; "
          f"{r['clips_per_size']} clip(s) of {r['clip_seconds']:g} s per size; {r['rounds']} interleaved "
          f"rounds, medians")
    print(f"{'size':>10} {'tool':>8} {'frames/s':>8} {'fr/CPU s':>8} {'cores':>5} {'load':>5} "
          f"{'exposed face-frames':>20} {'whole faces':>18}  frames / rate / duration / audio / size")
    for size, s in r["sizes"].items():
        med = s["speed"]["median"]
        for tool in TOOLS:
            m, q = med[tool], s["quality"][tool]
            kept = " / ".join(_kept(q, k, f) for k, f in (("frames_kept", "frames"), ("rate_kept", "rate"),
                                                           ("duration_kept", "duration_s"),
                                                           ("audio_kept", "audio"), ("size_kept", "size")))
            print(f"{size:>10} {tool:>8} {m['frames_per_s']:>8.2f} {m['frames_per_cpu_s']:>8.2f} "
                  f"{m['cores']:>5.2f} {m['outside_cores']:>5.2f} {_share(q['exposure']):>20} "
                  f"{_share(q['exposure'], 'inner_'):>18}  {kept}")
            if "rescale_control" in q:
                print(f"{'':>20} (an untouched clip through the same rescale: "
                      f"{_share(q['rescale_control'])} exposed)")
        rounds = ", ".join(f"{row['ratio_frames_per_s']:.2f}" for row in s["speed"]["rounds"])
        print(f"{size:>10} ParaBlur / deface: {med['ratio_frames_per_s']:.2f}x frames/s (rounds {rounds}), "
              f"{med['ratio_frames_per_cpu_s']:.2f}x frames per CPU s")
    print("(cores: CPU s / wall s of each run; load: cores other programs took meanwhile, machine-wide; "
          "whole faces: those not cut by the frame's edge)")
    if "audio_check" in r:
        for name, c in r["audio_check"]["runs"].items():
            print(f"{name} on a {r['audio_check']['clip']} clip: audio "
                  f"{'kept' if c['audio_kept'] else 'DROPPED'}, frames {c['frames'][0]}->{c['frames'][1]}, "
                  f"size {c['size'][0]}->{c['size'][1]}")
    for t in r["targets"]:
        value = "n/a" if t["value"] is None else (f"{t['value']:.2%}" if "exposed" in t["target"]
                                                   else f"{t['value']:.2f}x")
        print(f"target {t['target']}: {t['tool']} at {t['size']} {value}: {'met' if t['met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
