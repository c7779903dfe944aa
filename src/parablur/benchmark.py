"""The study's benchmark: interleaved sequential and parallel rounds, verified and measured.

One pool per executor is started once, warmed up, and reused for every round.
Each round runs the sequential baseline and every parallel executor on the
same dataset (alternating which goes first, so that drift in the machine's
speed does not favour one side), checks every parallel output pixel for pixel
against the sequential one, and appends one CSV row per executor.

Each measured round also re-measures the hardware ceiling (a short run of the
ceiling's alternations, in a pool started once) and records the machine's own
noise: the CPU other programs and the hypervisor took while it ran. A round with
outside load above ``noise.NOISY_LOAD_CORES`` is flagged and left out of the
headline figures, so a busy machine shows as noise, not as a serial fraction.
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import figures, results
from .accuracy import Accuracy, engine_accuracy, sample_of
from .analysis import GroupStats, Spread, efficiency, images_per_core, karp_flatt, speedup
from .ceiling import Ceiling, CeilingMeter, ceiling_shape
from .config import BenchConfig, FetchConfig, RunConfig
from .environment import snapshot
from .errors import ConfigError, DatasetError, ImageError, ParaBlurError
from .executors import Executor, create_executor
from .imageinfo import read_size
from .ingestion.manifest import clip_truth, true_faces
from .noise import NOISY_LOAD_CORES, Load, LoadSampler, dask_local_pids
from .pipeline import STAGES, RunSummary, claimed, output_store, performance_report, run_images
from .records import RecordLog
from .storage import ObjectInfo, Store, open_store
from .storage.base import PROBE_READ_BYTES
from .verify import Verification, compare_outputs
from .worker import Job

Echo = Callable[[str], None]

#: The command that owns a benchmark's leg locations (``bench``, and ``scale``'s sweeps).
BENCH = "bench"

#: Alternations of the ceiling measured with every round: each one blurs the dataset's
#: image size for about 0.25 s on one process, then as long on each of the pool's, so
#: a round's ceiling costs about 1 s (plus the pool's start, once per benchmark).
ROUND_CEILING_ALTERNATIONS = 2


@dataclass(frozen=True)
class RoundResult:
    """One round: the sequential run, each parallel run, and each one's verification."""

    index: int
    warmup: bool
    sequential: RunSummary
    parallel: dict[str, RunSummary]
    verification: dict[str, Verification]
    load: Load | None = None  # what other programs took while the round ran
    ceiling: Ceiling | None = None  # the hardware ceiling measured with this round
    accuracy: Accuracy | None = None  # a non-exact engine against exact, on a sample
    quality: dict | None = None  # the workload's records against the dataset's truth (faces)

    def speedup(self, name: str) -> float:
        return speedup(self.sequential.wall_s, self.parallel[name].wall_s)

    @property
    def noisy(self) -> bool:
        """True when other programs took cores the benchmark uses while the round ran."""
        return self.load is not None and self.load.noisy

    def vs_ceiling(self, name: str) -> float | None:
        """The round's speedup as a share of the ceiling measured with it."""
        return self.speedup(name) / self.ceiling.median if self.ceiling else None

    def clean(self, name: str) -> bool:
        """True when both runs finished every image and the outputs were identical."""
        return (self.sequential.failed == 0 and self.parallel[name].failed == 0
                and self.verification[name].ok)


@dataclass(frozen=True)
class ExecutorStats:
    """Summary of one parallel executor over the measured rounds.

    The times, the speedup (median of the paired speedups), its range,
    efficiency, serial fraction, throughputs and share of the ceiling are over
    the clean, quiet rounds only (the clean noisy ones when no round was quiet,
    and ``headline_noisy`` says so; None without a clean round), and are the
    report's figures of the same CSV rows (``parablur.figures``).
    """

    executor: str
    workers: int
    batch_size: int
    sequential_s: Spread | None
    parallel_s: Spread | None
    speedup: float | None
    speedup_range: tuple[float, float] | None
    efficiency: float | None
    serial_fraction: float | None
    sequential_throughput: float | None
    parallel_throughput: float | None
    clean_rounds: int
    rounds: int
    startup_s: float
    stage_share: dict[str, float]
    peak_worker_rss_mb: float
    ceiling_efficiency: float | None = None  # median of the rounds' speedup / own ceiling
    noisy_rounds: int = 0  # measured rounds with outside load, left out of the headline
    headline_noisy: bool = False  # no quiet round: the figures are the noisy rounds'
    # Frames per second, where video clips make them differ from images per second.
    sequential_frame_rate: float | None = None
    parallel_frame_rate: float | None = None
    # Images per second per core (analysis.images_per_core): sequential on one, parallel on its workers.
    sequential_per_core: float | None = None
    parallel_per_core: float | None = None


@dataclass(frozen=True)
class BenchSummary:
    """Everything a benchmark measured; ``to_dict`` is what --summary-json writes."""

    run_id: str
    images: int
    rounds: list[RoundResult]
    stats: dict[str, ExecutorStats]
    ceiling: Ceiling | None = None
    fetch: dict = field(default_factory=dict)
    csv_path: str = ""
    csv_note: str | None = None
    rows: tuple[dict, ...] = ()  # the rows appended to the results CSV, as appended
    engine: str = "exact"  # the blur engine of these rounds

    @property
    def quality(self) -> dict | None:
        """The workload's records against the dataset's truth, in the last measured round
        (faces: recall and false positives per image; every round gives the same outputs)."""
        found = [r.quality for r in self.rounds if r.quality and not r.warmup]
        return found[-1] if found else None

    @property
    def accuracy(self) -> Accuracy | None:
        """The engine's accuracy against exact over every measured round's sample (worst case)."""
        acc = [r.accuracy for r in self.rounds if r.accuracy and not r.warmup]
        if not acc:
            return None
        return Accuracy(max(a.images for a in acc), min(a.psnr_db for a in acc),
                        min(a.worst_psnr_db for a in acc), max(a.max_abs_diff for a in acc))

    @property
    def failures(self) -> list[dict]:
        seen = {}
        for rnd in self.rounds:
            for run in [rnd.sequential, *rnd.parallel.values()]:
                for f in run.failures:
                    seen.setdefault((run.executor, f["image"]), f["reason"])
        return [{"executor": e, "image": i, "reason": r} for (e, i), r in sorted(seen.items())]

    @property
    def mismatches(self) -> list[dict]:
        out = []
        for rnd in self.rounds:
            for name, ver in rnd.verification.items():
                out += [{"round": rnd.index, "executor": name, **m} for m in ver.mismatches]
        return out

    @property
    def ok(self) -> bool:
        return not self.failures and not self.mismatches

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "images": self.images,
            "ok": self.ok,
            "fetch": self.fetch,
            "ceiling": asdict(self.ceiling) if self.ceiling else None,
            "noisy_load_cores": NOISY_LOAD_CORES,
            "engine": self.engine,
            "accuracy_vs_exact": asdict(self.accuracy) if self.accuracy else None,
            "detection_quality": self.quality,
            "executors": {k: asdict(v) for k, v in self.stats.items()},
            "rounds": [
                {
                    "round": r.index,
                    "warmup": r.warmup,
                    "sequential_s": r.sequential.wall_s,
                    **{f"{n}_s": p.wall_s for n, p in r.parallel.items()},
                    **{f"{n}_speedup": r.speedup(n) for n in r.parallel},
                    **{f"{n}_identical": r.verification[n].ok for n in r.parallel},
                    "ceiling": r.ceiling.median if r.ceiling else None,
                    **{f"{n}_vs_ceiling": r.vs_ceiling(n) for n in r.parallel},
                    "noisy": r.noisy,
                    "accuracy_vs_exact": asdict(r.accuracy) if r.accuracy else None,
                    "load": asdict(r.load) if r.load else None,
                }
                for r in self.rounds
            ],
            "failures": self.failures,
            "mismatches": self.mismatches,
            "report_csv": self.csv_path,
        }


def _stage_share(runs: Sequence[RunSummary]) -> dict[str, float]:
    """Each stage's share of the workers' wall time, plus the idle/wait share."""
    total = sum(r.workers * r.wall_s for r in runs)
    if total <= 0:
        return {}
    share = {s.removesuffix("_s"): sum(r.stages.get(s, 0.0) for r in runs) / total
             for s in STAGES}
    share["in-task other"] = max(sum(r.task_s - sum(r.stages.values()) for r in runs), 0) / total
    share["idle/wait"] = sum(r.idle_s for r in runs) / total
    return share


def summarize(name: str, rounds: Sequence[RoundResult], rows: Sequence[Mapping[str, object]]
              ) -> ExecutorStats:
    """Executor ``name`` over the measured ``rounds``, whose results-CSV ``rows`` are given.

    The speedup and what follows from it are computed from the rows, by the
    same function the report uses on them, so both always show the same value.
    """
    measured = [r for r in rounds if not r.warmup]
    runs = figures.from_rows(r for r in rows if r["executor"] == name)
    trials = figures.group(runs[0].config, runs)
    s = trials.speedup
    par = [r.parallel[name] for r in measured]
    return ExecutorStats(
        executor=name, workers=par[0].workers, batch_size=par[0].batch_size,
        sequential_s=_spread(trials.seq_s), parallel_s=_spread(trials.par_s),
        speedup=s.median if s else None, speedup_range=(s.minimum, s.maximum) if s else None,
        efficiency=trials.efficiency, serial_fraction=trials.karp_flatt,
        sequential_throughput=trials.median("seq_throughput"),
        parallel_throughput=trials.median("par_throughput"),
        sequential_per_core=trials.median("seq_per_core"),
        parallel_per_core=trials.median("par_per_core"),
        clean_rounds=len(trials.runs) + trials.noisy_left_out, rounds=len(measured),
        startup_s=par[0].startup_s, stage_share=_stage_share(par),
        peak_worker_rss_mb=max(r.peak_worker_rss_mb for r in par),
        ceiling_efficiency=trials.vs_ceiling,
        noisy_rounds=sum(1 for r in measured if r.noisy), headline_noisy=trials.noisy,
        **({"sequential_frame_rate": trials.median("seq_frame_rate"),
            "parallel_frame_rate": trials.median("par_frame_rate")}
           if any(r.parallel[name].frames != r.parallel[name].ok for r in measured) else {}),
    )


def _spread(stats: GroupStats | None) -> Spread | None:
    return Spread(stats.median, stats.minimum, stats.maximum, stats.n) if stats else None


def input_store(run: RunConfig) -> Store:
    """The store a benchmark reads its images from (a folder is one more store)."""
    return open_store(run.input_dir, run.storage_options)


def store_image_size(store: Store, key: str) -> tuple[int, int] | None:
    """(width, height) from the header of ``key`` in ``store``, or None when unknown."""
    try:
        return read_size(store.read(key, length=PROBE_READ_BYTES))
    except (ImageError, OSError, ParaBlurError):
        return None


def dataset_size(store: Store, images: Sequence[str]) -> tuple[int, int] | None:
    """The (width, height) every image declares in its header; None when they differ."""
    sizes = {store_image_size(store, key) for key in images}
    return sizes.pop() if len(sizes) == 1 else None


def csv_row(rnd: RoundResult, name: str, run: RunConfig, size: tuple[int, int] | None,
            env: dict, run_id: str, mode: str, ceiling: Ceiling | None,
            checksum: str | None) -> dict:
    """The results-CSV row of executor ``name`` in round ``rnd``.

    ``size``: the images' (width, height) as ``dataset_size`` read it (None: mixed sizes).
    """
    seq, par = rnd.sequential, rnd.parallel[name]
    s = rnd.speedup(name)
    width, height = size or (None, None)
    return {
        "timestamp": env["timestamp"], "run_id": run_id, "mode": mode, "round": rnd.index,
        "executor": name, "num_images": seq.images, "width": width,
        "height": height, "batch_size": par.batch_size, "workers": par.workers,
        "threads_per_worker": run.threads_per_worker, "blur_radius": run.blur.sigma,
        "kernel_size": run.blur.kernel, "passes": run.blur.passes,
        "transfer": run.effective_transfer,
        "cluster": (run.cluster.scheduler or str(run.cluster.scheduler_file or "")) or "local",
        "seq_s": seq.wall_s, "par_s": par.wall_s, "speedup": s,
        "efficiency": efficiency(s, par.workers), "serial_fraction": karp_flatt(s, par.workers),
        "seq_throughput": seq.throughput, "par_throughput": par.throughput,
        "ok": par.ok, "failed": par.failed + seq.failed, "identical": rnd.verification[name].ok,
        "clean": rnd.clean(name), "startup_s": par.startup_s,
        "include_startup": run.include_startup,
        "ceiling": ceiling.median if ceiling else None,
        **{s_: par.stages.get(s_, 0.0) for s_ in STAGES}, "idle_s": par.idle_s,
        "peak_worker_rss_mb": par.peak_worker_rss_mb, "dataset_checksum": checksum,
        **{k: v for k, v in env.items() if k != "timestamp"},
        "overlap_io": run.blur.overlap_io,
        "outside_load_cores": rnd.load.outside_cores if rnd.load else None,
        "steal_cores": rnd.load.steal_cores if rnd.load else None,
        "noisy": rnd.noisy if rnd.load else None,
        "workload": run.workload, "engine": run.engine,
        # With clips among the inputs, their parameters too (two video settings never pool).
        "workload_params": json.dumps({**Job.for_run(run).describe(),
                                       **({"video": run.video.describe()} if par.frames != par.ok
                                          else {})}, sort_keys=True),
        "psnr_db": rnd.accuracy.psnr_db if rnd.accuracy else None,
        "max_abs_diff": rnd.accuracy.max_abs_diff if rnd.accuracy else None,
        "frames": par.frames, "seq_frame_rate": seq.frame_rate, "par_frame_rate": par.frame_rate,
        "seq_img_per_core": images_per_core(seq.throughput, 1),
        "par_img_per_core": images_per_core(par.throughput, par.workers),
        **results.quality_cells(rnd.quality),
    }


def task_rows(rnd: RoundResult, run: RunConfig, run_id: str) -> list[dict]:
    """Every task of every leg of ``rnd`` (the sequential one too), for the timeline file."""
    legs = {"sequential": rnd.sequential, **rnd.parallel}
    return [{"run_id": run_id, "round": rnd.index, "executor": name, "workload": run.workload,
             "engine": run.engine, "batch_size": leg.batch_size, "workers": leg.workers,
             "worker": worker, "start_s": start, "end_s": end, "images": images}
            for name, leg in legs.items() for worker, start, end, images in leg.tasks]


def format_figures(scores: Mapping) -> str:
    """A workload's figures (``Workload.score``, ``score_outputs``) as "name value" in their
    order, a nested figure's in brackets: how ``bench`` shows whatever a workload scores."""
    def value(v: object) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.3f}"
        if isinstance(v, Mapping):
            return f"({format_figures(v)})"
        return str(v)

    return ", ".join(f"{str(k).replace('_', ' ')} {value(v)}" for k, v in scores.items())


def format_round(rnd: RoundResult) -> str:
    label = "warm-up" if rnd.warmup else f"round {rnd.index}"
    parts = [f"{label:>9}: sequential {rnd.sequential.wall_s:7.2f} s"]
    for name, run in rnd.parallel.items():
        mark = "identical" if rnd.verification[name].ok else "MISMATCH"
        if run.failed or rnd.sequential.failed:
            mark += f", {run.failed + rnd.sequential.failed} failed"
        parts.append(f"{name} {run.wall_s:7.2f} s  x{rnd.speedup(name):.2f} ({mark})")
    if rnd.quality:
        parts.append(format_figures(rnd.quality))
    if rnd.accuracy:
        parts.append(f"vs exact {rnd.accuracy.psnr_db:.1f} dB, max diff "
                     f"{rnd.accuracy.max_abs_diff:g}")
    if rnd.ceiling:
        parts.append(f"ceiling x{rnd.ceiling.median:.2f}")
    if rnd.load:
        parts.append(f"NOISY: {rnd.load.describe()}, over the {rnd.load.limit_cores:.2f}-core limit"
                     if rnd.noisy else f"outside load {rnd.load.taken_cores:.2f} cores")
    return " | ".join(parts)


class Bench:
    """Started executors for one benchmark, reusable across rounds and configurations."""

    def __init__(self, config: BenchConfig, *, echo: Echo = print, progress: bool = False,
                 ceiling_workers: int | None = None, legs_held: bool = False):
        self.config = config
        self.legs_held = legs_held  # the caller holds the leg locations (``hold_legs``)
        self.echo = echo
        self.progress = progress
        self.sequential = create_executor("sequential", config.run)
        self.parallel: dict[str, Executor] = {}
        self.ceiling_workers = ceiling_workers  # default: the largest pool's
        self._meter: CeilingMeter | None = None
        self._own: set[int] = set()  # a remote cluster's processes on this machine

    def __enter__(self) -> Bench:
        claims = contextlib.nullcontext() if self.legs_held else hold_legs(self.config, self.echo)
        claims.__enter__()
        self._claims = claims
        try:
            self.sequential.start()
            for name in self.config.executors:
                ex = create_executor(name, self.config.run)
                ex.start()
                self.parallel[name] = ex
                link = f", dashboard {ex.dashboard_link}" if ex.dashboard_link else ""
                self.echo(f"{name}: {ex.workers} workers ready in {ex.startup_s:.2f} s{link}")
                client = getattr(ex, "client", None)
                if client is not None:
                    self._own |= dask_local_pids(client)
        except BaseException:
            self._claims = None
            self.close()
            claims.__exit__(*sys.exc_info())  # a refused start leaves nothing of the locations
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _release(self) -> None:
        claims, self._claims = getattr(self, "_claims", None), None
        if claims is not None:
            claims.__exit__(None, None, None)

    def close(self) -> None:
        if self._meter is not None:
            with contextlib.suppress(Exception):
                self._meter.close()
            self._meter = None
        # Last started, first closed; the sequential baseline (which pins this
        # process's OpenCV threads for the benchmark) last of all.
        for ex in [*reversed(self.parallel.values()), self.sequential]:
            with contextlib.suppress(Exception):
                ex.close()
        self.parallel.clear()
        self._release()

    def _ceiling_meter(self, shape: tuple[int, int, int], sigma: float) -> CeilingMeter | None:
        """The pool that measures the ceiling with every round, started on first use."""
        if self._meter is None and self.config.measure_ceiling:
            workers = self.ceiling_workers or max(ex.workers for ex in self.parallel.values())
            if workers >= 2:
                meter = CeilingMeter(workers, sigma=sigma, shape=shape)
                self._meter = meter.__enter__()
                self.echo(f"hardware ceiling: measured with every round ({workers} processes "
                          f"against one, {ROUND_CEILING_ALTERNATIONS} alternations)")
        return self._meter

    def legs(self, run: RunConfig | None = None) -> list[Leg]:
        """The sequential baseline and every parallel executor, each with ``run``'s settings."""
        run = run or self.config.run
        return [Leg("sequential", self.sequential, run),
                *(Leg(name, ex, run) for name, ex in self.parallel.items())]

    def one_round(self, index: int, warmup: bool, images: list[str], order_flip: bool,
                  run: RunConfig | None = None) -> RoundResult:
        """One round of every leg; the sequential one first, or last with ``order_flip``."""
        seq, *par = self.legs(run)
        legs = [*par, seq] if order_flip else [seq, *par]
        return run_round(index, warmup, images, legs, progress=self.progress)

    def measure(self, images: list[str], *, run: RunConfig, run_id: str, mode: str,
                fetch_summary: dict, label: str = "") -> BenchSummary:
        """The warm-up and measured rounds of one configuration (see ``measure_variants``)."""
        (summary,) = self.measure_variants(images, runs=[run], run_id=run_id, mode=mode,
                                           fetch_summary=fetch_summary, labels=[label])
        return summary

    def measure_variants(self, images: list[str], *, runs: Sequence[RunConfig], run_id: str,
                         mode: str, fetch_summary: dict, labels: Sequence[str] = ()
                         ) -> list[BenchSummary]:
        """The warm-up and measured rounds of each configuration of ``runs`` (for example one
        per blur engine), interleaved round by round in a rotating order so that drift in the
        machine's speed favours none; each measured round's rows are appended to the
        results CSV as soon as it ends.

        Every measured round records the outside load over its ceiling measurement, its
        runs and their verification, and, for a blur by a non-exact engine, its accuracy
        against the exact engine on a sample of the images. Dask's performance report
        (``run.performance_report``) covers every measured round.
        """
        config = self.config
        results.check_appendable(config.report_csv)
        store = input_store(runs[0])
        size = dataset_size(store, images)
        shape = ceiling_shape(size or store_image_size(store, images[0]))
        checksum = fetch_summary.get("dataset_checksum")
        labels = list(labels) or [""] * len(runs)
        rounds: list[list[RoundResult]] = [[] for _ in runs]
        rows: list[list[dict]] = [[] for _ in runs]
        notes: list[str | None] = [None] * len(runs)
        sample = sample_of(images)
        names = set(images)
        truths = {k: v for k, v in true_faces(store).items() if k in names}
        # Truths that only the outputs' pixels can be scored against (a clip's face-frames):
        # scored once, on the first measured round (every round's outputs are verified equal).
        pixel_truths = {k: v for k, v in clip_truth(store).items() if k in names}
        pixel_scores: dict[int, dict | None] = {}

        def one(v: int, i: int, warm: bool) -> RoundResult:
            run = runs[v]
            meter = None if warm else self._ceiling_meter(shape, run.blur.sigma)
            busy = max([ex.workers for ex in self.parallel.values()]
                       + [meter.workers if meter else 1])
            with LoadSampler(busy, own=self._own) as sampler:
                ceiling = meter.measure(ROUND_CEILING_ALTERNATIONS) if meter else None
                rnd = self.one_round(i - config.warmup + 1, warm, images, bool(i % 2), run=run)
            job = Job.for_run(run)
            accuracy = None if warm else engine_accuracy(sample, job, read=store.read)
            quality = None
            if truths and job.workload.record_file:
                records = RecordLog(output_store(run, "sequential"), job.workload.record_file)
                quality = job.workload.score(records.lines, truths)
            if pixel_truths and not warm:
                if v not in pixel_scores:
                    pixel_scores[v] = job.workload.score_outputs(
                        store, output_store(run, "sequential"), pixel_truths)
                if pixel_scores[v]:
                    quality = {**(quality or {}), **pixel_scores[v]}
            rnd = replace(rnd, load=sampler.load, ceiling=ceiling, accuracy=accuracy,
                          quality=quality)
            rounds[v].append(rnd)
            self.echo(labels[v] + format_round(rnd))
            return rnd

        def order(i: int) -> list[int]:
            k = i % len(runs)
            return [*range(k, len(runs)), *range(k)]

        for i in range(config.warmup):
            for v in order(i):
                one(v, i, True)
        with performance_report(self.parallel, runs[0].performance_report):
            for i in range(config.warmup, config.warmup + config.trials):
                for v in order(i):
                    rnd = one(v, i, False)
                    env = snapshot()
                    new = [csv_row(rnd, n, runs[v], size, env, run_id, mode, rnd.ceiling,
                                   checksum) for n in rnd.parallel]
                    notes[v] = results.append_rows(config.report_csv, new) or notes[v]
                    results.append_tasks(config.report_csv, task_rows(rnd, runs[v], run_id))
                    rows[v] += new
        out = []
        for v in range(len(runs)):
            stats = {name: summarize(name, rounds[v], rows[v]) for name in self.parallel}
            out.append(BenchSummary(run_id, len(images), rounds[v], stats,
                                    run_ceiling(rounds[v]), fetch_summary,
                                    str(config.report_csv), notes[v], tuple(rows[v]),
                                    engine=runs[v].engine))
        return out


def run_ceiling(rounds: Sequence[RoundResult]) -> Ceiling | None:
    """The ceilings measured with the quiet measured rounds, pooled (all of them if none was quiet)."""
    measured = [r for r in rounds if not r.warmup and r.ceiling]
    use = [r for r in measured if not r.noisy] or measured
    return Ceiling.pooled([r.ceiling for r in use])


@dataclass(frozen=True)
class Leg:
    """One timed run of a round: ``executor`` on the round's images with ``run``'s settings.

    ``name`` labels it in the round and the results CSV, and names its output
    folder (``run.output_dir/name``); the leg named ``sequential`` is the baseline.
    """

    name: str
    executor: Executor
    run: RunConfig


def run_round(index: int, warmup: bool, images: list[str],
              steps: Sequence[Leg | Callable[[], object]], *,
              progress: bool = False) -> RoundResult:
    """Run each leg in the given order, then check every other leg's outputs pixel for
    pixel against the sequential leg's; a step that is not a leg (for example a
    ceiling measurement) is called in its place and takes no part in the result.

    Each leg redoes every image of ``images`` (keys of the dataset's store) into its own
    output location, emptied first: verification never passes on an earlier round's outputs.
    The locations are the benchmark's own (claimed by ``Bench`` for ``bench``).
    """
    runs: dict[str, RunSummary] = {}
    outs: dict[str, Store] = {}
    items = [ObjectInfo(key, 0) for key in images]
    for step in steps:
        if not isinstance(step, Leg):
            step()
            continue
        inp = input_store(step.run)
        outs[step.name] = out = output_store(step.run, step.name)
        out.claim_output(BENCH)
        out.clear_outputs()
        runs[step.name] = run_images(step.executor, step.run, inp, out, items=items,
                                     first=images[0], force=True, progress=progress)
    seq = runs.pop("sequential")
    verification = {name: compare_outputs(outs["sequential"], outs[name]) for name in runs}
    return RoundResult(index, warmup, seq, runs, verification)


def dataset_keys(images: Sequence[Path | str], location: Path | str) -> list[str]:
    """The keys, below the dataset's ``location``, of images a fetch names by path or by key."""
    root = Path(str(location))
    keys = []
    for image in images:
        try:
            keys.append(Path(image).relative_to(root).as_posix())
        except ValueError:  # already a key
            keys.append(Path(image).as_posix())
    return keys


def prepare_dataset(config: FetchConfig, *, echo: Echo, progress: bool) -> tuple[list[str], dict]:
    """Fetch (or reuse) the dataset; its images' keys (exactly those the fetch chose, the first
    ``num_images`` of a larger dataset) and the fetch summary as a dict."""
    from .ingestion import fetch_dataset

    fetched = fetch_dataset(config, progress=progress)
    echo(fetched.format_summary())
    if not fetched.images:
        raise DatasetError(f"no images found in {config.input_dir}")
    return dataset_keys(fetched.images, config.input_dir), fetched.to_dict()


def hold_legs(config: BenchConfig, echo: Echo) -> contextlib.AbstractContextManager:
    """The benchmark's leg locations (``OUTPUT/sequential``, ``OUTPUT/<executor>``), claimed for
    ``bench`` and locked while the block runs: entered before any dataset is fetched or pool
    started, so that a location it may not use, or another run's, is one line."""
    legs = ["sequential", *config.executors]
    return claimed([output_store(config.run, leg) for leg in legs], BENCH, echo=echo)


def run_benchmark(config: BenchConfig, *, echo: Echo = print, progress: bool = False,
                  mode: str = "bench", run_id: str | None = None,
                  fetch_summary: dict | None = None) -> BenchSummary:
    """Fetch the dataset if needed, then run warm-up and measured rounds; append CSV rows."""
    if len(config.engines) > 1:
        raise ConfigError("run_benchmark measures one engine: use compare_engines for several")
    if config.engines:
        config = replace(config, run=replace(config.run, engine=config.engines[0]), engines=())
    (summary,) = compare_engines(config, echo=echo, progress=progress, mode=mode, run_id=run_id,
                                 fetch_summary=fetch_summary)
    return summary


def compare_engines(config: BenchConfig, *, echo: Echo = print, progress: bool = False,
                    mode: str = "bench", run_id: str | None = None,
                    fetch_summary: dict | None = None) -> list[BenchSummary]:
    """The benchmark of each of ``config.engines`` (or of ``config.run.engine`` alone) on the
    same dataset and pools, their rounds interleaved; one summary per engine."""
    with hold_legs(config, echo):
        return _compare_engines(config, echo=echo, progress=progress, mode=mode, run_id=run_id,
                                fetch_summary=fetch_summary)


def _compare_engines(config: BenchConfig, *, echo: Echo, progress: bool, mode: str,
                     run_id: str | None, fetch_summary: dict | None) -> list[BenchSummary]:
    if fetch_summary is None:
        images, fetch_summary = prepare_dataset(config.fetch, echo=echo, progress=progress)
    else:
        listed = fetch_summary.get("images")
        images = (dataset_keys(listed, config.fetch.input_dir) if listed is not None
                  else list(open_store(config.fetch.input_dir, config.fetch.storage_options)
                            .list_images()))
        if not images:
            raise DatasetError(f"no images found in {config.fetch.input_dir}")
    config = replace(config, run=replace(config.run, input_dir=config.fetch.input_dir))
    engines = config.engines or (config.run.engine,)
    runs = [replace(config.run, engine=e) for e in engines]
    labels = [f"{e:>5}: " if len(engines) > 1 else "" for e in engines]
    with Bench(config, echo=echo, progress=progress, legs_held=True) as bench:
        return bench.measure_variants(images, runs=runs, run_id=run_id or uuid.uuid4().hex[:12],
                                      mode=mode, fetch_summary=fetch_summary, labels=labels)


def format_engines(summaries: Sequence[BenchSummary]) -> str:
    """The engines side by side: throughput, speedup, share of the ceiling, accuracy."""
    noisy = any(st.headline_noisy for s in summaries for st in s.stats.values())
    which = ("clean rounds: the quiet ones, or the NOISY ones where none was quiet (marked)"
             if noisy else "clean, quiet rounds")
    lines = [f"engines side by side ({which}; same images, pools and rounds):",
             f"  {'engine':<7} {'executor':<12} {'seq img/s':>9} {'par img/s':>9} "
             f"{'speedup':>8} {'vs ceiling':>10} {'vs exact':>20}"]
    base = {}
    for summary in summaries:
        acc = summary.accuracy
        vs_exact = (f"{acc.psnr_db:.1f} dB, max {acc.max_abs_diff:g}" if acc
                    else "exact" if summary.engine == "exact" else "n/a")
        for st in summary.stats.values():
            def num(v, f):
                return format(v, f) if v is not None else "n/a"

            def pct(v):
                return f"{v * 100:.1f}%" if v is not None else "n/a"
            lines.append(f"  {summary.engine:<7} {st.executor:<12} "
                         f"{num(st.sequential_throughput, '9.2f')} "
                         f"{num(st.parallel_throughput, '9.2f')} "
                         f"{num(st.speedup, '7.2f')}x "
                         f"{pct(st.ceiling_efficiency):>10} "
                         f"{vs_exact:>20}" + ("  NOISY rounds" if st.headline_noisy else ""))
            base.setdefault(st.executor, {})[summary.engine] = st.parallel_throughput
    for executor, by_engine in base.items():
        exact = by_engine.get("exact")
        for engine, tp in by_engine.items():
            if engine != "exact" and exact and tp:
                lines.append(f"  {engine} / exact, {executor} images per second: {tp / exact:.2f}x")
    return "\n".join(lines)


def _noise_lines(summary: BenchSummary) -> list[str]:
    """Which measured rounds had outside load, and what was done with them."""
    measured = [r for r in summary.rounds if not r.warmup]
    noisy = [r for r in measured if r.noisy]
    if not noisy:
        return []
    why = "; ".join(f"round {r.index}: {r.load.describe()}" for r in noisy if r.load)
    lines = [f"noise: {len(noisy)} of {len(measured)} rounds ran while other programs took "
             f"cores the benchmark uses (over {NOISY_LOAD_CORES:.2f} cores beyond the idle ones): "
             f"{why}"]
    if len(noisy) < len(measured):
        lines.append(f"  {len(noisy)} noisy round{'s' if len(noisy) > 1 else ''} left out of "
                     "the headline speedup, efficiency, serial fraction and ceiling")
    else:
        lines.append("  no quiet round: the figures below are the noisy rounds' and measure the "
                     "machine's contention, not ParaBlur; rerun on a quiet machine")
    return lines


def _figure_lines(st: ExecutorStats) -> list[str]:
    """Times, speedup and throughput over the clean, quiet rounds (a line saying so without one)."""
    if st.speedup is None or st.sequential_s is None or st.parallel_s is None:
        return ["  speedup               n/a  (no clean round: every one had a failed image "
                "or a mismatch)"]
    seq, par = st.sequential_s, st.parallel_s
    noisy = " (noisy rounds)" if st.headline_noisy else ""
    if st.headline_noisy:
        kf = "       n/a (no quiet round: it would measure the other programs' load)"
    elif st.serial_fraction is None:
        kf = "       n/a (1 worker)"
    else:
        kf = f"{st.serial_fraction * 100:8.1f}%  (Karp-Flatt)"
    which = "clean, noisy rounds" if st.headline_noisy else "clean, quiet rounds"
    return [
        f"                      median      min      max  ({which})",
        f"  sequential s     {seq.median:8.2f} {seq.minimum:8.2f} {seq.maximum:8.2f}",
        f"  parallel s       {par.median:8.2f} {par.minimum:8.2f} {par.maximum:8.2f}",
        f"  speedup          {st.speedup:8.2f}x  (rounds {st.speedup_range[0]:.2f}x "
        f"to {st.speedup_range[1]:.2f}x){noisy}",
        f"  efficiency       {st.efficiency * 100:8.1f}%{noisy}",
        f"  serial fraction  {kf}",
        f"  throughput       {st.sequential_throughput:8.2f} img/s sequential, "
        f"{st.parallel_throughput:.2f} img/s parallel",
        f"  per core         {st.sequential_per_core:8.2f} img/s sequential (1 core), "
        f"{st.parallel_per_core:.2f} img/s parallel ({st.workers} cores)",
        *([f"  frame rate       {st.sequential_frame_rate:8.1f} frames/s sequential, "
           f"{st.parallel_frame_rate:.1f} frames/s parallel"]
          if st.sequential_frame_rate is not None and st.parallel_frame_rate is not None else []),
    ]


def format_summary(summary: BenchSummary) -> str:
    """The summary table printed at the end of a benchmark."""
    lines = _noise_lines(summary)
    for st in summary.stats.values():
        n = st.noisy_rounds
        left_out = (f", {n} of {st.rounds} rounds noisy, none quiet and clean" if st.headline_noisy
                    else f", {n} noisy round{'s' if n > 1 else ''} left out" if n else "")
        lines += [
            f"{st.executor}: {st.workers} workers, batch size {st.batch_size}, "
            f"{st.clean_rounds}/{st.rounds} clean rounds{left_out}, start-up {st.startup_s:.2f} s",
            *_figure_lines(st),
        ]
        if st.ceiling_efficiency is not None:
            noisy = " (noisy rounds)" if st.headline_noisy else ""
            lines.append(f"  vs ceiling       {st.ceiling_efficiency * 100:8.1f}%  (each round's "
                         f"speedup over the ceiling measured with it){noisy}")
        if st.stage_share:
            shares = ", ".join(f"{k} {v * 100:.1f}%" for k, v in st.stage_share.items())
            lines.append(f"  worker time      {shares}")
        if st.peak_worker_rss_mb:
            lines.append(f"  peak worker RSS  {st.peak_worker_rss_mb:8.0f} MB")
    if summary.quality:
        lines.append(f"quality: {format_figures(summary.quality)}")
    acc = summary.accuracy
    if acc:
        lines.append(f"accuracy: {summary.engine} against exact on {acc.images} sampled images: "
                     f"PSNR {acc.psnr_db:.1f} dB (worst image {acc.worst_psnr_db:.1f} dB), "
                     f"max abs diff {acc.max_abs_diff:g}")
    verdict = ("all outputs pixel-identical" if not summary.mismatches
               else f"{len(summary.mismatches)} MISMATCHES")
    lines.append(f"verified: {verdict}; failed images: {len(summary.failures)}; "
                 f"rows appended to {summary.csv_path}")
    c = summary.ceiling
    if c:
        per_round = c.seconds / len(c.ratios) * ROUND_CEILING_ALTERNATIONS
        lines.append(f"hardware ceiling: {c.median:.2f}x with {c.workers} processes (rounds "
                     f"{c.minimum:.2f}x to {c.maximum:.2f}x), measured with every round in "
                     f"{per_round:.1f} s a round")
    if summary.csv_note:
        lines.append(summary.csv_note)
    return "\n".join(lines)
