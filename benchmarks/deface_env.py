"""What the deface comparisons share: deface 1.5.0 in a virtualenv of its own, either tool run
as a timed child process (optionally pinned to one CPU), and the versions and machine they ran on.

Used by ``vs_deface.py`` (photos) and ``vs_deface_video.py`` (clips). The virtualenv
(default ``benchmarks/.deface-venv``, git-ignored) is made with ``python3 -m venv`` and pip
when missing: ``deface==1.5.0`` without its dependencies, then what it imports at run time
(onnx is needed too: without it deface silently falls back to OpenCV's DNN backend;
opencv-python-headless stands in for opencv-python; imageio-ffmpeg brings the ffmpeg binary
deface reads and writes video with).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFACE = "deface==1.5.0"
DEFACE_RUNTIME = ["numpy", "onnxruntime", "onnx", "opencv-python-headless", "imageio", "imageio-ffmpeg",
                  "scikit-image", "tqdm"]
#: Runs deface's command line with onnxruntime held to one thread; run by the deface venv's Python.
ONE_THREAD = HERE / "deface_one_thread.py"
ONE_THREAD_LINE = "onnxruntime threads: intra 1, inter 1"
CPU_PROVIDER_LINE = "Running on CPUExecutionProvider"


def ensure_deface(venv: Path) -> Path:
    """The deface executable of ``venv``, made with python3 -m venv and pip when missing."""
    exe = venv / "bin" / "deface"
    if not exe.is_file():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--no-deps", DEFACE], check=True)
        subprocess.run([*pip, *DEFACE_RUNTIME], check=True)
    return exe


def pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    """``cmd`` pinned to one CPU with taskset (its children, ffmpeg's included, inherit it), or as is."""
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def deface_cmd(exe: Path, *args: str, one_thread: bool = False) -> list[str]:
    """deface's command line on onnxruntime's CPU provider; ``one_thread``: through ONE_THREAD.

    By default deface names onnxruntime's AzureExecutionProvider first, which hands every
    node to the CPU anyway.
    """
    head = [str(exe.parent / "python"), str(ONE_THREAD)] if one_thread else [str(exe)]
    return [*head, "--execution-provider", "CPUExecutionProvider", *args]


def check_deface_log(log: Path, one_thread: bool = False) -> None:
    """Raise unless deface's log says it ran on the CPU provider (and with one thread when asked)."""
    text = log.read_text()
    if CPU_PROVIDER_LINE not in text:
        raise RuntimeError(f"deface did not run on onnxruntime's CPU provider: see {log}")
    if one_thread and ONE_THREAD_LINE not in text:
        raise RuntimeError(f"deface's onnxruntime was not held to one thread: see {log}")


def parablur_cmd(*args: str) -> list[str]:
    """ParaBlur from this tree's sources, with the running Python."""
    return [sys.executable, "-m", "parablur", *args]


def child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = str(HERE.parent / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def timed(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; its wall time and CPU time (user + system of the child and what it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        subprocess.run(cmd, check=True, env=child_env(), stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3)}


def versions(exe: Path) -> dict:
    """Package versions in deface's virtualenv and in ParaBlur's."""
    import cv2
    import numpy as np

    probe = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
             "('deface', 'onnxruntime', 'onnx', 'opencv-python-headless', 'numpy', 'imageio', "
             "'imageio-ffmpeg', 'pillow')}))")
    theirs = json.loads(subprocess.run([str(exe.parent / "python"), "-c", probe], check=True,
                                       capture_output=True, text=True).stdout)
    import importlib.metadata as m

    ours = {"parablur": m.version("parablur"), "opencv (parablur)": cv2.__version__,
            "numpy (parablur)": np.__version__, "python": platform.python_version()}
    return {"deface venv": theirs, "parablur venv": ours}


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)), "cpu_model": model,
            "kernel": platform.release()}
