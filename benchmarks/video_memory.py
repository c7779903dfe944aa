#!/usr/bin/env python3
"""Worker and client memory against a clip's length: one face clip of each length, anonymized
by ``parablur run --workload faces`` on a Dask LocalCluster.

    PYTHONPATH=src .venv/bin/python benchmarks/video_memory.py --seconds 60 600 --size 320x240

The clips are ParaBlur's generated face clips (``parablur fetch --fallback faces-video``,
offline), kept between runs under ``--cache`` (default benchmarks/.video-cache, git-ignored).
For each length it reports the peak resident memory of the busiest worker (the run's
summary: VmHWM of each worker process) and of the client process (polled every 0.1 s with
psutil), the frames, segments and frames/s. A worker holds a few frames at a time and a
client the records of the clips under way, so both should be flat in the clip's length.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


def _parablur(*args: str) -> list[str]:
    return [sys.executable, "-m", "parablur", *args]


def clip_folder(cache: Path, seconds: int, size: str, fps: int) -> Path:
    """A folder with one generated face clip of ``seconds`` (made once, then reused)."""
    width, height = size.split("x")
    folder = cache / f"{size}-{fps}fps-{seconds}s"
    subprocess.run(_parablur("fetch", "--fallback", "faces-video", "--num-images", "1",
                             "--clip-seconds", str(seconds), "--clip-fps", str(fps), "--width", width,
                             "--height", height, "--input-dir", str(folder), "--quiet"), check=True)
    return folder


def measure(folder: Path, workers: int) -> dict:
    """Run the faces workload over ``folder`` on ``workers`` Dask workers; memory and speed."""
    with tempfile.TemporaryDirectory(prefix="parablur-memory-") as tmp:
        summary = Path(tmp) / "summary.json"
        proc = subprocess.Popen(_parablur("run", "--workload", "faces", "--executor", "dask",
                                          "--workers", str(workers), "--no-dashboard", "--quiet",
                                          "--input-dir", str(folder), "--output-dir", f"{tmp}/out",
                                          "--summary-json", str(summary)))
        client = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                peak = max(peak, client.memory_info().rss)
            except psutil.NoSuchProcess:
                break
            time.sleep(0.1)
        if proc.returncode != 0:
            raise SystemExit(f"parablur run failed with exit code {proc.returncode}")
        data = json.loads(summary.read_text())
    return {"frames": data["frames"], "wall_s": data["wall_s"], "frames_per_s": data["frame_rate"],
            "tasks": data["tasks"], "peak_worker_rss_mb": data["peak_worker_rss_mb"],
            "peak_client_rss_mb": peak / 2**20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=int, nargs="+", default=[60, 600], help="clip lengths")
    p.add_argument("--size", default="320x240", help="WIDTHxHEIGHT (default: 320x240)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache", type=Path, default=HERE / ".video-cache")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    a = p.parse_args()
    rows = []
    for seconds in a.seconds:
        folder = clip_folder(a.cache, seconds, a.size, a.fps)
        row = {"seconds": seconds, "size": a.size, **measure(folder, a.workers)}
        rows.append(row)
        print(f"{seconds:5d} s {a.size}: {row['frames']} frames in {row['tasks']} tasks, "
              f"{row['frames_per_s']:.1f} frames/s on {a.workers} workers; peak RSS: worker "
              f"{row['peak_worker_rss_mb']:.0f} MB, client {row['peak_client_rss_mb']:.0f} MB",
              flush=True)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"from {first['seconds']} s to {last['seconds']} s: worker peak x"
              f"{last['peak_worker_rss_mb'] / first['peak_worker_rss_mb']:.2f}, client peak x"
              f"{last['peak_client_rss_mb'] / first['peak_client_rss_mb']:.2f}")
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
