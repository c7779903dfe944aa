#!/usr/bin/env python3
"""The standard benchmark as paired, interleaved rounds, with every bottleneck measured.

    python benchmarks/standard.py                 # 160 images 2000x2000, batch 4, 2 workers, 5 rounds
    python benchmarks/standard.py --rounds 7 --workers 2 --out bench-standard.json

Each round measures, in a rotating order so that drift in the machine's speed
favours no one: the hardware ceiling (N single-threaded processes blurring
in-memory images against one), the sequential baseline, Dask, a bare process
pool doing the same work, and Dask with overlapped I/O. Every parallel output is
checked pixel for pixel against the sequential one. Then the orchestration cost
per image is measured on 2,000 tiny (64x64) images, and the client's memory is
compared between a small and a large tiny-image run.

Speed is never asserted here: this program reports what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

try:
    import parablur  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import cv2
import numpy as np
import psutil

from parablur import results
from parablur.analysis import efficiency, karp_flatt
from parablur.benchmark import Bench, Leg, csv_row, dataset_keys, dataset_size, run_round
from parablur.ceiling import Ceiling, measure_ceiling
from parablur.config import BenchConfig, FetchConfig, RunConfig
from parablur.dataset import list_images
from parablur.environment import snapshot
from parablur.ingestion import fetch_dataset
from parablur.pipeline import STAGES, run_images
from parablur.storage import LocalStore, ObjectInfo


def median_range(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} (range {min(values):.3f} to {max(values):.3f})"


def client_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def make_tiny(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    base = cv2.resize(rng.integers(0, 256, (9, 9, 3), dtype=np.uint8), (64, 64))
    for i in range(count):
        cv2.imwrite(str(folder / f"t_{i:05d}.jpg"), np.roll(base, i, axis=1))


def paired_rounds(args: argparse.Namespace, legs: dict[str, Leg], images: list[str],
                  size: tuple[int, int] | None, checksum: str):
    """The rounds: the ceiling and every leg in a rotating order, each round's rows appended."""
    times: dict[str, list[float]] = {k: [] for k in legs}
    ceilings: list[Ceiling] = []
    stage_runs: dict[str, list] = {k: [] for k in times}
    identical = True
    order = ["ceiling", *legs]
    sigma = legs["sequential"].run.blur.sigma

    def ceiling() -> None:
        ceilings.append(measure_ceiling(args.workers, rounds=1, sigma=sigma))

    for r in range(args.rounds):
        rotated = order[r % len(order):] + order[:r % len(order)]
        rnd = run_round(r + 1, False, images,
                        [ceiling if item == "ceiling" else legs[item] for item in rotated])
        summaries = {"sequential": rnd.sequential, **rnd.parallel}
        line = [f"ceiling x{ceilings[-1].median:.2f}" if item == "ceiling"
                else f"{item} {summaries[item].wall_s:.2f} s" for item in rotated]
        for name, summary in summaries.items():
            identical &= not summary.failed
            times[name].append(summary.wall_s)
            stage_runs[name].append(summary)
        checks = rnd.verification
        identical &= all(c.ok for c in checks.values())
        speed = times["sequential"][-1] / times["dask"][-1]
        print(f"round {r + 1}: " + ", ".join(line) + f"; dask x{speed:.2f}; identical: "
              + ", ".join(f"{v} {'yes' if c.ok else 'NO'}" for v, c in checks.items()))
        # One CSV row per variant, as `parablur bench` writes them.
        env = snapshot()
        rows = [csv_row(rnd, v, legs[v].run, size, env, "standard", "bench", ceilings[-1],
                        checksum) for v in rnd.parallel]
        results.append_rows(args.report_csv, rows)
    return times, [c.median for c in ceilings], stage_runs, identical


def tiny_runs(args: argparse.Namespace, run: RunConfig, bench: Bench):
    """Orchestration cost on tiny images, and the client's memory against image count."""
    dask_ex = bench.parallel["dask"]
    with tempfile.TemporaryDirectory(prefix="parablur-tiny-") as tmp:
        tiny_dir = Path(tmp) / "in"
        make_tiny(tiny_dir, args.tiny_images)
        tiny = list_images(tiny_dir)
        keys = [ObjectInfo(p.relative_to(tiny_dir).as_posix(), 0) for p in tiny]
        tcfg = replace(run, input_dir=tiny_dir, output_dir=Path(tmp) / "out")
        inp = LocalStore(tiny_dir)
        orchestration = {}
        client_growth = {}
        for label, batch in (("batch 1", 1), ("batch auto", "auto")):
            for n in (len(tiny) // 4, len(tiny)):
                before = client_rss_mb()
                out = LocalStore(Path(tmp) / "out" / "dask")
                s = run_images(dask_ex, replace(tcfg, batch_size=batch), inp, out, items=keys[:n],
                               force=True)
                client_growth[(label, n)] = client_rss_mb() - before
                if n == len(tiny):
                    work = s.task_s / s.workers
                    orchestration[label] = (s.batch_size, s.wall_s, (s.wall_s - work) / n * 1000,
                                            s.wall_s / n * 1000)
        seq_out = LocalStore(Path(tmp) / "out" / "sequential")
        tiny_seq = run_images(bench.sequential, replace(tcfg, batch_size=len(tiny)), inp, seq_out,
                              items=keys, force=True)
    return orchestration, client_growth, tiny, tiny_seq


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-dir", type=Path, default=Path("downloads_fresh"))
    ap.add_argument("--output-dir", type=Path, default=Path("processed-bench"))
    ap.add_argument("--num-images", type=int, default=160)
    ap.add_argument("--size", type=int, default=2000)
    ap.add_argument("--fallback", default="scene", choices=("scene", "noise"))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tiny-images", type=int, default=2000)
    ap.add_argument("--no-overlap", action="store_true", help="skip the overlapped-I/O variant")
    ap.add_argument("--report-csv", type=Path, default=Path("benchmark_results.csv"))
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args()

    env = snapshot()
    print(f"machine: {env['cpu_model']}, {env['logical_cores']} logical / "
          f"{env['physical_cores']} physical cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
          f"{platform.platform()}")
    print(f"software: Python {env['python_version']}, OpenCV {env['opencv_version']}, "
          f"Dask {env['dask_version']}, parablur {env['parablur_version']}")

    fetch = FetchConfig(input_dir=args.input_dir, num_images=args.num_images, width=args.size,
                        height=args.size, fallback=args.fallback)
    fetched = fetch_dataset(fetch, progress=False)
    images = dataset_keys(fetched.images, args.input_dir)
    size = dataset_size(LocalStore(args.input_dir), images)
    shown = f"{size[0]}x{size[1]}" if size else "of mixed sizes"
    print(f"dataset: {len(images)} images {shown} in {args.input_dir} "
          f"({fetched.generated} generated, checksum {fetched.dataset_checksum[:16]})")
    run = RunConfig(input_dir=args.input_dir, output_dir=args.output_dir, executor="dask",
                    workers=args.workers, batch_size=args.batch_size)
    variants = {"dask": run, "processes": run}
    if not args.no_overlap:
        variants["dask+overlap"] = replace(run, blur=replace(run.blur, overlap_io=True))
    config = BenchConfig(fetch=fetch, run=run, executors=("dask", "processes"),
                         report_csv=args.report_csv, measure_ceiling=False)
    with Bench(config, echo=lambda _: None) as bench:
        dask_ex, proc_ex = bench.parallel["dask"], bench.parallel["processes"]
        print(f"start-up: dask {dask_ex.startup_s:.2f} s, process pool {proc_ex.startup_s:.2f} s "
              "(once, kept out of every round)")
        executor_of = {"sequential": bench.sequential, **bench.parallel, "dask+overlap": dask_ex}
        legs = {name: Leg(name, executor_of[name], cfg)
                for name, cfg in {"sequential": run, **variants}.items()}
        times, ceilings, stage_runs, identical = paired_rounds(
            args, legs, images, size, fetched.dataset_checksum)
        orchestration, client_growth, tiny, tiny_seq = tiny_runs(args, run, bench)
        dask_mem = dask_ex.worker_memory_mb()

    # ---- the figures ----
    p = args.workers
    paired = [s / d for s, d in zip(times["sequential"], times["dask"], strict=True)]
    s_med = statistics.median(paired)
    ceiling = statistics.median(ceilings)
    overhead = [(d - q) / d for d, q in zip(times["dask"], times["processes"], strict=True)]
    print()
    print(f"== standard benchmark: {len(images)} images {shown}, sigma "
          f"{run.blur.sigma:g} ({run.blur.kernel}x{run.blur.kernel}), batch {args.batch_size}, "
          f"{p} workers, {args.rounds} paired rounds ==")
    for k, v in times.items():
        print(f"{k:>14} s: median {median_range(v)}")
    print(f"median paired speedup (dask): {median_range(paired)}x")
    print(f"hardware ceiling ({p} processes vs 1, in memory): {median_range(ceilings)}x")
    print(f"efficiency against the ceiling: {s_med / ceiling * 100:.1f}%")
    print(f"efficiency per worker: {efficiency(s_med, p) * 100:.1f}%")
    kf = karp_flatt(s_med, p)
    print(f"Karp-Flatt serial fraction: {kf:.3f}" if kf is not None else "Karp-Flatt: n/a")
    for v in variants:
        if v == "dask":
            continue
        sp = [s / d for s, d in zip(times["sequential"], times[v], strict=True)]
        print(f"median paired speedup ({v}): {median_range(sp)}x")
    print(f"Dask's overhead over the process pool: {statistics.median(overhead) * 100:+.2f}% "
          f"of wall time (rounds {min(overhead) * 100:+.2f}% to {max(overhead) * 100:+.2f}%)")
    if "dask+overlap" in times:
        gain = [(d - o) / d for d, o in zip(times["dask"], times["dask+overlap"], strict=True)]
        print(f"overlapped I/O vs plain dask: {statistics.median(gain) * 100:+.2f}% of wall "
              f"time saved (rounds {min(gain) * 100:+.2f}% to {max(gain) * 100:+.2f}%)")
    for name in ("sequential", "dask"):
        runs = stage_runs[name]
        wall_workers = sum(r.wall_s * r.workers for r in runs)
        stage_sum = {k: sum(r.stages[k] for r in runs) for k in STAGES}
        inside = sum(stage_sum.values())
        idle = sum(r.idle_s for r in runs)
        other = max(sum(r.task_s for r in runs) - inside, 0.0)
        shares = ", ".join(f"{k[:-2]} {v / wall_workers * 100:.1f}%" for k, v in stage_sum.items())
        print(f"stage shares ({name}): {shares}, in-task other {other / wall_workers * 100:.1f}%, "
              f"idle/wait {idle / wall_workers * 100:.1f}%")
        print(f"  stages + other + idle = {(inside + other + idle) / wall_workers * 100:.1f}% of "
              f"workers x wall; stages alone = {inside / wall_workers * 100:.1f}%")
    peak = max(r.peak_worker_rss_mb for r in stage_runs["dask"])
    peak_proc = max(r.peak_worker_rss_mb for r in stage_runs["processes"])
    now = ", ".join(f"{v:.0f}" for v in dask_mem.values())
    print(f"peak memory per worker: dask {peak:.0f} MB, process pool {peak_proc:.0f} MB "
          f"(dask workers now: {now} MB)")
    for (label, n), growth in client_growth.items():
        print(f"client RSS change over a {n}-image tiny run ({label}): {growth:+.1f} MB")
    seq_ms = tiny_seq.wall_s / len(tiny) * 1000
    for label, (size, _wall, orch_ms, per_ms) in orchestration.items():
        print(f"orchestration on {len(tiny)} tiny 64x64 images, {label} (size {size}): "
              f"{orch_ms:.3f} ms/image beyond the work ({per_ms:.3f} ms/image in all; "
              f"sequential {seq_ms:.3f} ms/image)")
    print(f"all parallel outputs pixel-identical to the sequential ones: {identical}")
    if args.out:
        args.out.write_text(json.dumps({
            "times": times, "ceilings": ceilings, "paired_speedup": paired,
            "overhead_vs_pool": overhead, "identical": identical, "env": env,
            "orchestration_ms": {k: v[2] for k, v in orchestration.items()},
        }, indent=2))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
