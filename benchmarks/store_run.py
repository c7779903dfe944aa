#!/usr/bin/env python3
"""A real run of small objects from SeaweedFS through 2 Dask workers, with its throughput.

    python benchmarks/store_run.py                          # 10,000 JPEGs of 64x64, 3 rounds
    python benchmarks/store_run.py --objects 200 --rounds 1 # a quick check (about 30 s)
    python benchmarks/store_run.py --size 128 --out store-run.json

SeaweedFS is started here on 127.0.0.1 (tests/seaweed.py, the test fixture). N
generated JPEGs, each different, are uploaded to s3://photos/PREFIX/in through
``parablur.storage`` (``Store.write`` from a thread pool; the upload rate is
reported). Then the product path as a user runs it, as a subprocess (``python -m
parablur``, the entry point of the ``parablur`` command):

    parablur run --input-dir s3://photos/PREFIX/in --output-dir s3://photos/PREFIX/out-rI
        --executor dask --workers 2 --batch-size auto --storage-options @s3.json
        --summary-json FILE --quiet

once per round into a fresh output prefix (``--rounds``, medians reported), then
again on round 1's output (everything skipped: the resume path's rate) and once
with ``--force`` there (every output rewritten). Each run records its process's
wall time (Python start to exit: imports, probes, LocalCluster start and stop
included), the summary's wall time, stages and batch size, the client process's
peak RSS (the kernel's VmHWM of that one process, polled every 0.1 s; the
LocalCluster's scheduler lives in it, its workers do not) and the workers' peak, and
the load average before and after: the machine is shared and noisy. Then every
output prefix must hold exactly the N keys of the input, and a seeded sample of
them must be pixel-identical to a local sequential run of the same input bytes.
Speed is never asserted: this program reports what it measured. The default run
takes about 9 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
try:
    import parablur  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from seaweed import BUCKET, start_seaweed  # noqa: E402

from parablur.config import RunConfig  # noqa: E402
from parablur.environment import snapshot  # noqa: E402
from parablur.pipeline import STAGES, anonymize  # noqa: E402
from parablur.storage import open_store  # noqa: E402

POLL_S = 0.1


def make_image(index: int, size: int) -> bytes:
    """A JPEG unlike every other: a seeded gradient, a few shapes and some noise."""
    rng = np.random.default_rng(index)
    a, b = rng.integers(0, 256, (2, 3))
    t = np.linspace(0.0, 1.0, size)[None, :, None]
    img = (a * (1 - t) + b * t).repeat(size, axis=0)
    for _ in range(3):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(size // 8, size // 3))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), r, color, -1)
        else:
            cv2.rectangle(img, (x - r, y - r), (x + r, y + r), color, -1)
    img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def upload(options: dict, url: str, count: int, size: int, threads: int) -> tuple[list[str], dict]:
    """Generate ``count`` images and PUT them below ``url``; the keys and the timings."""
    store = open_store(url, options)
    keys = [f"img_{i:06d}.jpg" for i in range(count)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        blobs = list(pool.map(make_image, range(count), [size] * count))
    t1 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(store.write, keys, blobs))
    t2 = time.perf_counter()
    return keys, {"generate_s": t1 - t0, "upload_s": t2 - t1, "upload_per_s": count / (t2 - t1),
                  "threads": threads, "bytes": sum(map(len, blobs)),
                  "mean_object_bytes": sum(map(len, blobs)) / count}


def _hwm_mb(pid: int) -> float | None:
    """The kernel's peak RSS (VmHWM) of one process, in MB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


class Watch:
    """Polls a process's VmHWM and CPU time, and its children's VmHWM, until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.client_mb = 0.0
        self.children_mb: dict[int, float] = {}
        self.client_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                mb = _hwm_mb(self.pid)
                if mb is not None:
                    self.client_mb = max(self.client_mb, mb)
                t = proc.cpu_times()
                self.client_cpu_s = t.user + t.system
                for child in proc.children(recursive=True):
                    mb = _hwm_mb(child.pid)
                    if mb is not None:
                        self.children_mb[child.pid] = max(self.children_mb.get(child.pid, 0.0), mb)
            except psutil.Error:
                pass
            self._stop.wait(POLL_S)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_cli(argv: list[str], folder: Path, name: str, timeout: float) -> dict:
    """``parablur ARGV`` as a subprocess (its own session, ended whole on any failure): what it measured."""
    summary_path = folder / f"{name}.json"
    log = folder / f"{name}.log"
    command = [sys.executable, "-m", "parablur", *argv, "--summary-json", str(summary_path)]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        watch = Watch(proc.pid)
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            watch.stop()
    process_s = time.perf_counter() - t0
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"parablur {name} exited with {rc} (log: {log}): {' | '.join(tail)}")
    s = json.loads(summary_path.read_text())
    return {
        "name": name, "process_s": process_s, "wall_s": s["wall_s"], "startup_s": s["startup_s"],
        "images": s["images"], "ok": s["ok"], "skipped": s["skipped"], "failed": s["failed"],
        "batch_size": s["batch_size"], "tasks": s["tasks"], "workers": s["workers"],
        "throughput": s["throughput"],
        "images_per_s": s["images"] / s["wall_s"] if s["wall_s"] > 0 else 0.0,
        "images_per_process_s": s["images"] / process_s,
        "stages": s["stages"], "task_s": s["task_s"], "idle_s": s["idle_s"],
        "client_peak_rss_mb": watch.client_mb, "client_cpu_s": watch.client_cpu_s,
        "children_peak_rss_mb": max(watch.children_mb.values(), default=0.0),
        "summary_peak_worker_rss_mb": s["peak_worker_rss_mb"],
        "load_before": load_before, "load_after": os.getloadavg(),
    }


def verify(options: dict, base: str, keys: list[str], outputs: list[str], sample: int,
           seed: int, folder: Path) -> dict:
    """Each output prefix holds exactly the input's keys; a seeded sample is pixel-identical to
    a local sequential run of the same input bytes."""
    inp = open_store(f"s3://{BUCKET}/{base}/in", options)
    counts = {}
    for out in outputs:
        got = list(open_store(f"s3://{BUCKET}/{base}/{out}/dask", options).list_images())
        counts[out] = len(got)
        if got != keys:
            missing, extra = sorted(set(keys) - set(got)), sorted(set(got) - set(keys))
            raise RuntimeError(f"{out}: {len(got)} outputs for {len(keys)} inputs; missing "
                               f"{missing[:5]}, unexpected {extra[:5]}")
    chosen = sorted(random.Random(seed).sample(keys, min(sample, len(keys))))
    local = folder / "sample"
    (local / "in").mkdir(parents=True)
    for key in chosen:
        (local / "in" / key).write_bytes(inp.read(key))
    anonymize(RunConfig(input_dir=local / "in", output_dir=local / "ref"))
    same_bytes = 0
    for out in outputs:
        store = open_store(f"s3://{BUCKET}/{base}/{out}/dask", options)
        for key in chosen:
            got = store.read(key)
            want = (local / "ref" / "sequential" / key).read_bytes()
            same_bytes += got == want
            a = cv2.imdecode(np.frombuffer(got, np.uint8), cv2.IMREAD_UNCHANGED)
            b = cv2.imdecode(np.frombuffer(want, np.uint8), cv2.IMREAD_UNCHANGED)
            if a is None or not np.array_equal(a, b):
                raise RuntimeError(f"{out}/dask/{key} differs from the local sequential output")
    return {"output_counts": counts, "sample": len(chosen), "pixel_identical": True,
            "byte_identical": f"{same_bytes}/{len(chosen) * len(outputs)}"}


def median_of(runs: list[dict], name: str) -> float:
    return statistics.median(r[name] for r in runs)


def show(figures: dict) -> None:
    """The human-readable table."""
    up = figures["upload"]
    print(f"SeaweedFS started in {figures['seaweed']['start_s']:.2f} s; {figures['objects']} JPEGs "
          f"of {figures['size']}x{figures['size']} (mean {up['mean_object_bytes'] / 1024:.1f} KB), "
          f"generated in {up['generate_s']:.1f} s")
    print(f"upload: {up['upload_s']:.1f} s, {up['upload_per_s']:.0f} PUT/s "
          f"({up['threads']} threads, Store.write)")
    head = (f"{'run':10s} {'process s':>9s} {'wall s':>7s} {'start s':>7s} {'img/s':>7s} "
            f"{'img/proc-s':>10s} {'batch':>5s} {'ok':>6s} {'skip':>6s} {'client MB':>9s} "
            f"{'worker MB':>9s} {'load 1m':>12s}")
    print(head)
    print("-" * len(head))
    for r in [*figures["rounds"], *(x for x in (figures.get("skip_run"), figures.get("force_run"))
                                    if x)]:
        print(f"{r['name']:10s} {r['process_s']:9.1f} {r['wall_s']:7.1f} {r['startup_s']:7.1f} "
              f"{r['images_per_s']:7.0f} {r['images_per_process_s']:10.0f} {r['batch_size']:5d} "
              f"{r['ok']:6d} {r['skipped']:6d} {r['client_peak_rss_mb']:9.0f} "
              f"{r['children_peak_rss_mb']:9.0f} "
              f"{r['load_before'][0]:5.2f}->{r['load_after'][0]:<5.2f}")
    print("img/s: images done (or skipped) per second of the summary's wall time, which starts "
          "after the probes and the cluster's start; img/proc-s: per second of the whole process")
    m = figures["median"]
    print(f"median of {len(figures['rounds'])} fresh rounds: {m['images_per_s']:.0f} img/s over the "
          f"run's wall ({m['wall_s']:.1f} s), {m['images_per_process_s']:.0f} img/s over the whole "
          f"process ({m['process_s']:.1f} s); client peak RSS {m['client_peak_rss_mb']:.0f} MB")
    per = {s: v / figures["objects"] * 1000 for s, v in m["stages"].items()}
    print("  worker stages, ms per image: " + ", ".join(f"{s[:-2]} {v:.2f}" for s, v in per.items()))
    v = figures["verify"]
    print(f"verified: every output prefix holds exactly the {figures['objects']} input keys "
          f"{v['output_counts']}; {v['sample']} sampled per prefix pixel-identical to a local "
          f"sequential run (bytes identical: {v['byte_identical']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000, help="images (default: 10,000)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default: 64)")
    parser.add_argument("--rounds", type=int, default=3, help="fresh runs, medians (default: 3)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--upload-threads", type=int, default=16)
    parser.add_argument("--no-force-run", action="store_true", help="skip the --force run")
    parser.add_argument("--sample", type=int, default=50, help="outputs compared per prefix")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.objects < 1 or args.rounds < 1 or args.size < 16:
        parser.error("--objects and --rounds must be >= 1, --size >= 16")
    base = f"store-run-{os.getpid()}"
    timeout = 300 + 0.2 * args.objects
    figures: dict = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                     "environment": snapshot(), "objects": args.objects, "size": args.size,
                     "workers": args.workers, "batch_size_flag": args.batch_size}
    with tempfile.TemporaryDirectory(prefix="parablur-store-run-") as tmp:
        folder = Path(tmp)
        server = start_seaweed(folder / "seaweed")
        try:
            options = server.options()
            opts_file = folder / "s3.json"
            opts_file.touch(mode=0o600)
            opts_file.write_text(json.dumps(options))
            keys, figures["upload"] = upload(options, f"s3://{BUCKET}/{base}/in", args.objects,
                                             args.size, args.upload_threads)

            def command(out: str, *extra: str) -> list[str]:
                return ["run", "--input-dir", f"s3://{BUCKET}/{base}/in", "--output-dir",
                        f"s3://{BUCKET}/{base}/{out}", "--executor", "dask", "--workers",
                        str(args.workers), "--batch-size", args.batch_size, "--storage-options",
                        f"@{opts_file}", "--quiet", *extra]

            figures["cli"] = "parablur " + " ".join(command("out-r1"))
            rounds = []
            for i in range(1, args.rounds + 1):
                rounds.append(run_cli(command(f"out-r{i}"), folder, f"round-{i}", timeout))
                print(f"round {i}: {rounds[-1]['images_per_s']:.0f} img/s", file=sys.stderr)
            figures["rounds"] = rounds
            figures["skip_run"] = run_cli(command("out-r1"), folder, "skip", timeout)
            if not args.no_force_run:
                figures["force_run"] = run_cli(command("out-r1", "--force"), folder, "force",
                                               timeout)
            for r in [*rounds, figures.get("force_run")]:
                if r and (r["ok"], r["failed"]) != (args.objects, 0):
                    raise RuntimeError(f"{r['name']}: {r['ok']} ok, {r['failed']} failed")
            if figures["skip_run"]["skipped"] != args.objects:
                raise RuntimeError(f"the second run skipped {figures['skip_run']['skipped']}")
            figures["verify"] = verify(options, base, keys,
                                       [f"out-r{i}" for i in range(1, args.rounds + 1)],
                                       args.sample, args.seed, folder)
        finally:
            server.stop()
    figures["seaweed"] = {"start_s": server.started_s, "stop_s": server.stopped_s}
    figures["median"] = {name: median_of(rounds, name) for name in (
        "process_s", "wall_s", "startup_s", "images_per_s", "images_per_process_s",
        "client_peak_rss_mb", "client_cpu_s", "children_peak_rss_mb")}
    figures["median"]["stages"] = {s: statistics.median(r["stages"][s] for r in rounds)
                                   for s in STAGES}
    figures["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    show(figures)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
