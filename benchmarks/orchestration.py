#!/usr/bin/env python3
"""The client's own cost per image and its memory, from ten thousand to a million images.

    python benchmarks/orchestration.py                       # 10k, 100k, 1M images; 2 rounds
    python benchmarks/orchestration.py --sizes 10000,100000 --rounds 3 --out orch.json
    python benchmarks/orchestration.py --sizes 2000 --rounds 1   # a quick check (~20 s)

Each image goes through the real client path of a store run, ``pipeline.run_images``:
the paged listing, one task per key, batches (``--batch-size auto`` by default), the
bounded window, a LocalCluster of ``--workers`` worker processes, the results and the
summary. The store is generated (``generated_store.py``): its listing is computed and
every image reads as the same 16x16 PNG, whose outputs are dropped, so what is measured
is ParaBlur's harness (plus a 16x16 decode, blur and encode per image), not a store's
latency. Every run is a fresh process, so that its peak RSS is its own; sizes are
interleaved round by round, and medians are reported. Speed is never asserted.

Figures, per size: wall time per image (the run's wall time, the cluster's start left
out, over the images: an upper bound of the harness's cost per image, since it includes
the tiny workload), the client's CPU time per image (this process: listing, tasks,
pickling, the LocalCluster's scheduler, results and summary), the bytes per image of a
pickled batch, and the client's RSS before the run, at its peak and at its end.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
try:
    import parablur  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(ROOT / "src"))
# The workers import generated_store from here: spawned processes inherit sys.path.
sys.path.insert(0, str(HERE))

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)


class RssSampler(threading.Thread):
    """This process's resident memory, sampled every ``interval`` seconds; its maximum."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        import psutil

        self._proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._halt.wait(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak


def measure(count: int, workers: int, batch_size: str) -> dict:
    """One run of ``count`` generated images; its figures (in this fresh process)."""
    import psutil
    from generated_store import GeneratedStore

    from parablur.config import BlurParams, RunConfig
    from parablur.pipeline import batches as store_batches
    from parablur.pipeline import plan_tasks, run_images, started
    from parablur.worker import Job

    # The stores are generated (``GeneratedStore``): the configuration's folders are never used.
    config = RunConfig(input_dir=Path("generated-in"), output_dir=Path("generated-out"),
                       executor="dask", workers=workers, batch_size=batch_size,
                       blur=BlurParams(sigma=0.5))  # a 3x3 kernel: the tiny workload
    inp, out = GeneratedStore(count), GeneratedStore(count)
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    cpu0 = proc.cpu_times()
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    with started(config) as executor:
        summary = run_images(executor, config, inp, out, first=next(inp.list_images()))
    elapsed = time.perf_counter() - t0
    peak = sampler.stop()
    cpu1 = proc.cpu_times()
    rss_end = proc.memory_info().rss
    # The client's part alone, without a cluster: listing, tasks and batches, then pickling.
    job = Job.for_run(config)
    first = next(inp.list_images())
    t1 = time.perf_counter()
    batches = list(map(len, store_batches(config, inp, out, plan_tasks(inp, out, job, inp.scan_images()),
                                          first=first, workers=summary.workers)))
    build_s = time.perf_counter() - t1
    one = next(store_batches(config, inp, out, plan_tasks(inp, out, job, inp.scan_images()),
                              first=first, workers=1))
    payload = len(pickle.dumps((one, job), protocol=5)) / len(one)
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    mb = 2 ** 20
    return {
        "images": count, "workers": summary.workers, "batch_size": summary.batch_size,
        "tasks": len(summary.tasks), "batches_planned": len(batches),
        "ok": summary.ok, "failed": summary.failed,
        "wall_s": summary.wall_s, "startup_s": summary.startup_s, "elapsed_s": elapsed,
        "task_s": summary.task_s,
        "wall_per_image_us": summary.wall_s / count * 1e6,
        "client_cpu_s": cpu_s, "client_cpu_per_image_us": cpu_s / count * 1e6,
        "build_per_image_us": build_s / count * 1e6,
        "payload_bytes_per_image": payload,
        "worker_busy": summary.task_s / (summary.workers * summary.wall_s),
        "rss_before_mb": rss_before / mb, "rss_peak_mb": peak / mb, "rss_end_mb": rss_end / mb,
        # ru_maxrss: the whole process's peak, in KiB on Linux (start-up and imports included).
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_rss_mb": summary.peak_worker_rss_mb,
    }


def run_child(count: int, workers: int, batch_size: str, timeout: float) -> dict:
    """``measure`` in a fresh interpreter, so that each size's peak RSS is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(count),
           "--workers", str(workers), "--batch-size", batch_size]
    load = os.getloadavg()[0]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the run of {count} images failed (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["load_before"] = load
    figures["load_after"] = os.getloadavg()[0]
    return figures


MEDIANS = ("wall_s", "startup_s", "wall_per_image_us", "client_cpu_per_image_us",
           "build_per_image_us", "payload_bytes_per_image", "worker_busy", "rss_before_mb",
           "rss_peak_mb", "rss_end_mb", "ru_maxrss_mb", "worker_peak_rss_mb")


def summarize(runs: list[dict], sizes: list[int]) -> dict:
    """Medians per size, the marginal client CPU per image, and the RSS growth smallest -> largest."""
    by_size = {n: [r for r in runs if r["images"] == n] for n in sizes}
    medians = {n: {k: statistics.median(r[k] for r in rs) for k in MEDIANS}
               | {"rounds": len(rs), "batch_size": rs[0]["batch_size"], "tasks": rs[0]["tasks"]}
               for n, rs in by_size.items()}
    lo, hi = min(sizes), max(sizes)
    result = {"sizes": medians}
    if hi > lo:
        cpu = {n: statistics.median(r["client_cpu_s"] for r in by_size[n]) for n in (lo, hi)}
        wall = {n: medians[n]["wall_s"] for n in (lo, hi)}
        result["marginal_client_cpu_per_image_us"] = (cpu[hi] - cpu[lo]) / (hi - lo) * 1e6
        result["marginal_wall_per_image_us"] = (wall[hi] - wall[lo]) / (hi - lo) * 1e6
        result["rss_peak_growth_mb"] = medians[hi]["rss_peak_mb"] - medians[lo]["rss_peak_mb"]
        result["ru_maxrss_growth_mb"] = medians[hi]["ru_maxrss_mb"] - medians[lo]["ru_maxrss_mb"]
    return result


def report(result: dict, runs: list[dict]) -> str:
    lines = [f"{'images':>9} {'batch':>5} {'tasks':>6} {'wall s':>7} {'wall/img':>9} "
             f"{'client CPU/img':>14} {'build/img':>9} {'B/img':>6} {'busy':>5} "
             f"{'RSS before':>10} {'peak':>6} {'end':>6} MB"]
    for n, m in result["sizes"].items():
        lines.append(f"{n:>9,} {m['batch_size']:>5} {m['tasks']:>6} {m['wall_s']:>7.1f} "
                     f"{m['wall_per_image_us']:>7.1f}us {m['client_cpu_per_image_us']:>12.1f}us "
                     f"{m['build_per_image_us']:>7.1f}us {m['payload_bytes_per_image']:>6.0f} "
                     f"{m['worker_busy']:>5.0%} {m['rss_before_mb']:>10.0f} "
                     f"{m['rss_peak_mb']:>6.0f} {m['rss_end_mb']:>6.0f}")
    rounds = max(m["rounds"] for m in result["sizes"].values())
    loads = [r["load_before"] for r in runs]
    lines.append(f"medians of {rounds} round(s); load average before each run "
                 f"{min(loads):.1f} to {max(loads):.1f}")
    if "rss_peak_growth_mb" in result:
        lo, hi = min(result["sizes"]), max(result["sizes"])
        lines.append(f"client peak RSS growth {lo:,} -> {hi:,} images: "
                     f"{result['rss_peak_growth_mb']:+.1f} MB (target < 100 MB); "
                     f"marginal client CPU {result['marginal_client_cpu_per_image_us']:.1f} us/image, "
                     f"marginal wall {result['marginal_wall_per_image_us']:.1f} us/image "
                     f"(target < 200 us)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                        help="image counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", default="auto")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument("--out", type=Path, help="also write every run and the medians as JSON")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        import logging
        import warnings

        logging.getLogger("distributed").setLevel(logging.ERROR)
        warnings.simplefilter("ignore")
        print(json.dumps(measure(args.child, args.workers, args.batch_size)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    runs = []
    for rnd in range(args.rounds):
        for n in sizes:
            figures = run_child(n, args.workers, args.batch_size, args.timeout)
            if figures["ok"] != n:
                raise SystemExit(f"{n} images: only {figures['ok']} ok ({figures['failed']} failed)")
            figures["round"] = rnd + 1
            runs.append(figures)
            print(f"round {rnd + 1}: {n:>9,} images in {figures['wall_s']:.1f} s "
                  f"({figures['wall_per_image_us']:.1f} us/image, client peak RSS "
                  f"{figures['rss_peak_mb']:.0f} MB)", file=sys.stderr, flush=True)
    result = summarize(runs, sizes)
    print(report(result, runs))
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, **result, "command": sys.argv,
                                        "date": time.strftime("%Y-%m-%d %H:%M")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
