#!/usr/bin/env python3
"""ParaBlur against the study's original script: same images, same machine, interleaved rounds.

    python benchmarks/vs_original.py --original ../shared/reference/ParaBlur_original.py
    python benchmarks/vs_original.py --original PATH --num-images 80 --rounds 5 --out vs.json

Each round runs, in an order that rotates from round to round so that drift in
the machine's speed favours no one:

- the original script (``--original``, run unmodified by this Python) with
  ``--warmup 0 --trials 1``: its sequential loop, then its Dask run on a
  LocalCluster it starts itself, with the same workers and batch size;
- ParaBlur with the exact engine: its sequential baseline and its Dask executor
  (same workers, batch size, sigma and JPEG quality), outputs checked pixel for pixel;
- ParaBlur with the fast engine, the same way.

The timing rule, the same on both sides: each side's parallel time is its own
timer, from the first task submitted to the last result gathered, with the
cluster's start-up kept out. The original takes it itself (``par_s`` of its CSV:
it starts the clock once its LocalCluster and Client are up, starts a fresh
cluster in every run, and so counts its workers' first imports); ParaBlur's pool
is started once before the rounds and warmed up, and its start-up is reported
apart. Sequential times are each side's own timer over its loop in one process
(``seq_s`` of the original's CSV). The original's whole subprocess (Python start,
imports, cluster start and stop) is recorded beside them, not compared.

The original is given exactly the dataset's first ``--num-images`` JPEGs through
a folder of links made for it in the work folder (it deletes and re-downloads an
input folder that holds fewer .jpg files than asked, and clears its output
folders), so it never downloads and never touches the dataset. It writes with
``cv2.imwrite``'s default JPEG quality, 95; ParaBlur runs here with that quality
too (``--jpeg-quality``), so both do the same work, and ParaBlur's exact outputs
are checked to be pixel-identical to the original's.

Every round records what other programs took while each part ran (``parablur.noise``);
a round where any part ran NOISY is left out of the medians when a quiet round
exists. Ratios are paired: each round's ParaBlur throughput over the original's
of the same round, then the median. Speed is never asserted here.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

try:
    import parablur  # noqa: F401
except ImportError:  # running from a source checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from parablur import accuracy
from parablur.benchmark import Bench, RoundResult, dataset_size
from parablur.config import BenchConfig, BlurParams, FetchConfig, RunConfig
from parablur.errors import ConfigError, DatasetError, ParaBlurError
from parablur.noise import Load, LoadSampler
from parablur.storage import LocalStore
from parablur.verify import compare_dirs
from parablur.worker import Job, decode

#: What ``cv2.imwrite`` (the original's writer) uses for a .jpg without options.
ORIGINAL_JPEG_QUALITY = 95
PARTS = ("original", "exact", "fast")
#: A URL nothing listens on: the original is never given a reachable source.
NO_SOURCE = "http://127.0.0.1:9/"


@dataclass(frozen=True)
class OriginalRun:
    """One run of the original script: its own timers and the subprocess's wall time."""

    images: int
    seq_s: float
    par_s: float
    seq_ok: int
    par_ok: int
    process_s: float

    @property
    def clean(self) -> bool:
        return self.seq_ok == self.images and self.par_ok == self.images


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--original", type=Path, required=True,
                    help="path of the study's original script (ParaBlur_original.py)")
    ap.add_argument("--input-dir", type=Path, default=Path("downloads_fresh"),
                    help="dataset folder (made with generated scene images if missing)")
    ap.add_argument("--num-images", type=int, default=80)
    ap.add_argument("--size", type=int, default=2000, help="side of generated images")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--blur-radius", type=int, default=10, help="sigma (the original takes an integer)")
    ap.add_argument("--jpeg-quality", type=int, default=ORIGINAL_JPEG_QUALITY,
                    help="ParaBlur's output quality (default: the original's, 95)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="unmeasured rounds first")
    ap.add_argument("--work-dir", type=Path, default=None,
                    help="a new or empty folder for outputs and logs (default: a temporary one, removed)")
    ap.add_argument("--out", type=Path, default=None, help="also write every figure as JSON")
    return ap.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse what cannot run, before anything is started or written."""
    if not args.original.is_file():
        raise ConfigError(f"--original must be the original script's file, not found: {args.original}")
    for name in ("num_images", "workers", "batch_size", "blur_radius", "rounds"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {args.warmup}")
    if args.work_dir is not None and args.work_dir.exists() and (
            not args.work_dir.is_dir() or any(args.work_dir.iterdir())):
        raise ConfigError(f"--work-dir must be a new or empty folder: {args.work_dir}")


def dataset(args: argparse.Namespace) -> tuple[list[Path], str]:
    """The first ``--num-images`` images of the dataset (fetched or generated if needed), and its checksum."""
    from parablur.ingestion import fetch_dataset

    fetched = fetch_dataset(FetchConfig(input_dir=args.input_dir, num_images=args.num_images,
                                        width=args.size, height=args.size), progress=False)
    images = list(fetched.images)[:args.num_images]
    if len(images) < args.num_images:
        raise DatasetError(f"{args.input_dir} holds {len(images)} images, fewer than --num-images "
                           f"{args.num_images}")
    for p in images:
        if p.parent.resolve() != args.input_dir.resolve() or p.suffix.lower() != ".jpg":
            raise DatasetError(f"the original reads only .jpg files directly in its folder: {p}")
    return images, fetched.dataset_checksum


def link_inputs(images: list[Path], folder: Path) -> None:
    """A folder of links to exactly ``images``: what the original may clear is only links."""
    folder.mkdir()
    for p in images:
        (folder / p.name).symlink_to(p.resolve())


def original_command(args: argparse.Namespace, inputs: Path, out: Path, report: Path,
                     size: tuple[int, int]) -> list[str]:
    return [sys.executable, str(args.original.resolve()), "--input-dir", str(inputs),
            "--output-dir", str(out), "--num-images", str(args.num_images),
            "--workers", str(args.workers), "--threads-per-worker", "1",
            "--batch-size", str(args.batch_size), "--blur-radius", str(args.blur_radius),
            "--passes", "1", "--warmup", "0", "--trials", "1", "--report-csv", str(report),
            "--source-url", NO_SOURCE, "--width", str(size[0]), "--height", str(size[1])]


def run_original(command: list[str], cwd: Path, log: Path, inputs: Path, count: int) -> OriginalRun:
    """Run the original once (its own process group, ended whole on any failure); its CSV row."""
    report = Path(command[command.index("--report-csv") + 1])
    timeout = 120 + 5 * count
    t0 = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(command, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONIOENCODING": "utf-8"},
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    process_s = time.perf_counter() - t0
    tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:]
    if rc != 0:
        raise ParaBlurError(f"the original exited with {rc} (log: {log}): {' '.join(tail)}")
    links = list(inputs.iterdir()) if inputs.is_dir() else []
    if len(links) != count or not all(p.is_symlink() for p in links):
        raise ParaBlurError(f"the original replaced its input images (log: {log}): not comparable")
    with report.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != 1:
        raise ParaBlurError(f"expected one row in the original's CSV {report}, found {len(rows)}")
    row = rows[0]
    if int(row["num_images"]) != count or row["include_dask_startup"] != "False":
        raise ParaBlurError(f"the original measured something else: {row}")
    report.unlink()
    return OriginalRun(count, float(row["seq_s"]), float(row["par_s"]), int(row["seq_ok"]),
                       int(row["par_ok"]), process_s)


@dataclass
class Round:
    """What one round measured, part by part, and the checks made after it."""

    index: int
    warmup: bool
    order: tuple[str, ...]
    original: OriginalRun | None = None
    exact: RoundResult | None = None
    fast: RoundResult | None = None
    loads: dict[str, Load] | None = None
    exact_equals_original: bool | None = None

    def times(self, part: str) -> tuple[float, float]:
        """(sequential s, Dask s) of ``part``."""
        if part == "original":
            return self.original.seq_s, self.original.par_s
        rnd = getattr(self, part)
        return rnd.sequential.wall_s, rnd.parallel["dask"].wall_s

    def throughput(self, part: str) -> tuple[float, float]:
        """(sequential, Dask) images per second of ``part``, of the images it finished."""
        if part == "original":
            o = self.original
            return o.seq_ok / o.seq_s, o.par_ok / o.par_s
        rnd = getattr(self, part)
        return rnd.sequential.throughput, rnd.parallel["dask"].throughput

    @property
    def noisy(self) -> list[str]:
        return [p for p, load in (self.loads or {}).items() if load.noisy]

    @property
    def clean(self) -> bool:
        return (self.original.clean and self.exact.clean("dask") and self.fast.clean("dask")
                and bool(self.exact_equals_original))

    def line(self) -> str:
        label = "warm-up" if self.warmup else f"round {self.index}"
        parts = []
        for p in self.order:
            seq, par = self.times(p)
            extra = f", process {self.original.process_s:.1f} s" if p == "original" else ""
            parts.append(f"{p} {seq:.2f} s seq / {par:.2f} s dask ({self.throughput(p)[1]:.2f} img/s{extra})")
        tp = {p: self.throughput(p)[1] for p in PARTS}
        same = "yes" if self.exact_equals_original else "NO"
        checks = (f"exact/original x{tp['exact'] / tp['original']:.2f}, fast/original "
                  f"x{tp['fast'] / tp['original']:.2f}; exact = original pixels: {same}; "
                  f"dask = sequential: exact {'yes' if self.exact.clean('dask') else 'NO'}, "
                  f"fast {'yes' if self.fast.clean('dask') else 'NO'}")
        loads = self.loads or {}
        taken = max((load.taken_cores for load in loads.values()), default=0.0)
        noise = (f"NOISY ({', '.join(f'{p}: {loads[p].describe()}' for p in self.noisy)})" if self.noisy
                 else f"quiet (outside load <= {taken:.2f} cores)")
        return f"{label}: " + " | ".join(parts) + f"; {checks}; {noise}"


def paired(rounds: list[Round], fn) -> list[float]:
    return [fn(r) for r in rounds]


def spread(values: list[float], unit: str = "") -> str:
    return (f"{statistics.median(values):.3f}{unit} (range {min(values):.3f} to {max(values):.3f})"
            if values else "n/a")


def files_accuracy(images: list[Path], a: Path, b: Path) -> accuracy.Accuracy:
    """The written outputs under ``a`` against those under ``b``, decoded, on a sample."""
    names = [p.name for p in accuracy.sample_of(images)]
    return accuracy.compare((decode((a / n).read_bytes(), ".jpg"), decode((b / n).read_bytes(), ".jpg"))
                            for n in names)


def measure(args: argparse.Namespace, work: Path, images: list[Path], checksum: str) -> int:
    keys = [p.name for p in images]  # directly in the dataset's folder (``dataset``)
    size = dataset_size(LocalStore(args.input_dir), keys) or (args.size, args.size)
    inputs = work / "original-input"
    link_inputs(images, inputs)
    orig_out = work / "original-output"
    command = original_command(args, inputs, orig_out, work / "original.csv", size)
    blur = BlurParams(sigma=float(args.blur_radius), jpeg_quality=args.jpeg_quality)
    exact = RunConfig(input_dir=args.input_dir, output_dir=work / "parablur-exact", executor="dask",
                      workers=args.workers, batch_size=args.batch_size, blur=blur, engine="exact")
    runs = {"exact": exact, "fast": replace(exact, output_dir=work / "parablur-fast", engine="fast")}
    config = BenchConfig(fetch=FetchConfig(input_dir=args.input_dir, num_images=args.num_images),
                         run=exact, executors=("dask",), warmup=args.warmup, trials=args.rounds,
                         report_csv=work / "parablur.csv", measure_ceiling=False)
    original_sha = hashlib.sha256(args.original.read_bytes()).hexdigest()
    print(f"dataset: {len(images)} images {size[0]}x{size[1]} in {args.input_dir} "
          f"(checksum {checksum[:16]})")
    shown = " ".join(Path(c).name if c == command[1] else c.replace(str(work), "WORK")
                     for c in command[1:])
    print(f"original: {args.original} (sha256 {original_sha[:16]}), run each round in WORK "
          f"({work}) as: {shown}")
    print(f"ParaBlur: dask executor, {args.workers} workers, batch size {args.batch_size}, "
          f"sigma {args.blur_radius}, JPEG quality {args.jpeg_quality}; engines exact and fast")
    rounds: list[Round] = []
    with Bench(config, echo=lambda s: print("ParaBlur " + s + " (kept out of every round)")) as bench:
        for i in range(args.warmup + args.rounds):
            k = i % len(PARTS)
            warm = i < args.warmup
            rnd = Round(i - args.warmup + 1, warm, PARTS[k:] + PARTS[:k], loads={})
            for part in rnd.order:
                with LoadSampler(args.workers) as sampler:
                    if part == "original":
                        rnd.original = run_original(command, work, work / f"original-{i}.log",
                                                    inputs, len(images))
                    else:
                        setattr(rnd, part, bench.one_round(rnd.index, warm, keys, bool(i % 2),
                                                           run=runs[part]))
                rnd.loads[part] = sampler.load
            same = compare_dirs(orig_out / "dask", work / "parablur-exact" / "dask")
            rnd.exact_equals_original = same.ok and same.compared == len(images)
            print(rnd.line(), flush=True)
            rounds.append(rnd)
        fast_vs_exact = accuracy.engine_accuracy(accuracy.sample_of(images), Job.for_run(runs["fast"]))
        fast_vs_original = files_accuracy(images, work / "parablur-fast" / "dask", orig_out / "dask")
        startup = bench.parallel["dask"].startup_s
    return summarize(args, rounds, fast_vs_exact, fast_vs_original, startup, size, original_sha)


def summarize(args: argparse.Namespace, rounds: list[Round], fast_vs_exact, fast_vs_original,
              startup: float, size: tuple[int, int], original_sha: str) -> int:
    measured = [r for r in rounds if not r.warmup]
    clean = [r for r in measured if r.clean]
    quiet = [r for r in clean if not r.noisy]
    use = quiet or clean
    which = (f"{len(quiet)} quiet, clean rounds" if quiet
             else f"{len(clean)} clean rounds, ALL NOISY: the figures measure the machine's contention too")
    noisy = [r.index for r in measured if r.noisy]
    print()
    print(f"== ParaBlur against the original: {args.num_images} images {size[0]}x{size[1]}, sigma "
          f"{args.blur_radius}, batch {args.batch_size}, {args.workers} workers, {len(measured)} "
          f"interleaved rounds ==")
    print(f"noisy rounds (left out when a quiet one exists): {noisy or 'none'}; "
          f"unclean rounds: {[r.index for r in measured if not r.clean] or 'none'}; figures over {which}")
    figures: dict[str, dict] = {}
    print(f"  {'':8} {'sequential img/s':>34} {'dask img/s':>34}")
    for p in PARTS:
        seq = paired(use, lambda r, p=p: r.throughput(p)[0])
        par = paired(use, lambda r, p=p: r.throughput(p)[1])
        figures[p] = {"sequential_img_s": seq, "dask_img_s": par}
        print(f"  {p:8} {spread(seq):>34} {spread(par):>34}")
    def ratio(a: str, b: str, side: int):
        return lambda r: r.throughput(a)[side] / r.throughput(b)[side]

    ratios = {
        "exact / original, dask": ratio("exact", "original", 1),
        "fast / original, dask": ratio("fast", "original", 1),
        "exact / original, sequential": ratio("exact", "original", 0),
        "fast / original, sequential": ratio("fast", "original", 0),
        "fast / exact, sequential (images/s per core)": ratio("fast", "exact", 0),
        "fast / exact, dask": ratio("fast", "exact", 1),
    }
    print("throughput ratios, paired within each round (median, range):")
    for name, fn in ratios.items():
        values = paired(use, fn)
        figures[name] = values
        print(f"  {name:46} {spread(values, 'x')}")
    speedups = {p: paired(use, lambda r, p=p: r.times(p)[0] / r.times(p)[1]) for p in PARTS}
    print("speedup, dask over its own sequential run: "
          + ", ".join(f"{p} {spread(v, 'x')}" for p, v in speedups.items()))
    proc = [r.original.process_s for r in use]
    print(f"the original's whole process (Python, imports, sequential loop, cluster start and stop, "
          f"Dask run): {spread(proc, ' s')}; ParaBlur's pool start-up, once: {startup:.2f} s")
    print(f"ParaBlur exact outputs pixel-identical to the original's: "
          f"{all(r.exact_equals_original for r in measured)} (every round, every image)")
    print(f"fast against exact (blurred arrays, {fast_vs_exact.images} images): "
          f"{fast_vs_exact.psnr_db:.2f} dB (worst {fast_vs_exact.worst_psnr_db:.2f}), "
          f"max abs diff {fast_vs_exact.max_abs_diff:g}")
    print(f"fast's written JPEGs against the original's ({fast_vs_original.images} images): "
          f"{fast_vs_original.psnr_db:.2f} dB (worst {fast_vs_original.worst_psnr_db:.2f}), "
          f"max abs diff {fast_vs_original.max_abs_diff:g}")
    if args.out:
        args.out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()}, "original_sha256": original_sha,
            "machine": platform.platform(), "figures": figures, "speedups": speedups,
            "fast_vs_exact": asdict(fast_vs_exact), "fast_vs_original_files": asdict(fast_vs_original),
            "parablur_startup_s": startup,
            "rounds": [{"round": r.index, "warmup": r.warmup, "order": r.order, "clean": r.clean,
                        "noisy_parts": r.noisy, "exact_equals_original": r.exact_equals_original,
                        "original": asdict(r.original),
                        **{p: dict(zip(("sequential_s", "dask_s"), r.times(p), strict=True))
                           for p in ("exact", "fast")},
                        "loads": {p: asdict(load) for p, load in (r.loads or {}).items()}}
                       for r in rounds],
        }, indent=2))
    return 0 if len(clean) == len(measured) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_args(args)
        images, checksum = dataset(args)
        if args.work_dir is not None:
            args.work_dir.mkdir(parents=True, exist_ok=True)
            return measure(args, args.work_dir.resolve(), images, checksum)
        with tempfile.TemporaryDirectory(prefix="parablur-vs-original-") as tmp:
            return measure(args, Path(tmp), images, checksum)
    except ParaBlurError as exc:
        print(f"vs_original: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
