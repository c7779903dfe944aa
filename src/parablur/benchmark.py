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
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import results
from .analysis import Spread, efficiency, karp_flatt, speedup
from .ceiling import Ceiling, CeilingMeter, ceiling_shape
from .config import BenchConfig, FetchConfig, RunConfig
from .dataset import list_images
from .environment import snapshot
from .errors import DatasetError
from .executors import Executor, create_executor
from .noise import NOISY_LOAD_CORES, Load, LoadSampler, dask_local_pids
from .pipeline import STAGES, RunSummary, output_dir_for, plan_tasks, resolve_batch_size, run_tasks
from .verify import Verification, compare_dirs
from .workload import Job

Echo = Callable[[str], None]

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
    """Summary of one parallel executor over the measured rounds."""

    executor: str
    workers: int
    batch_size: int
    sequential_s: Spread
    parallel_s: Spread
    speedup: float  # median of the clean, quiet rounds' paired speedups
    speedup_range: tuple[float, float]
    efficiency: float
    serial_fraction: float | None
    sequential_throughput: float
    parallel_throughput: float
    clean_rounds: int
    rounds: int
    startup_s: float
    stage_share: dict[str, float]
    peak_worker_rss_mb: float
    ceiling_efficiency: float | None = None  # median of the rounds' speedup / own ceiling
    noisy_rounds: int = 0  # measured rounds with outside load, left out of the headline
    headline_noisy: bool = False  # no quiet round: the figures are the noisy rounds'


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


def summarize(name: str, rounds: Sequence[RoundResult]) -> ExecutorStats:
    measured = [r for r in rounds if not r.warmup]
    clean = [r for r in measured if r.clean(name)] or measured
    quiet = [r for r in clean if not r.noisy]
    headline = quiet or clean  # with no quiet round, the noisy ones (and the summary says so)
    speedups = [r.speedup(name) for r in headline]
    vs_ceiling = [v for r in headline if (v := r.vs_ceiling(name)) is not None]
    par = [r.parallel[name] for r in measured]
    seq = [r.sequential for r in measured]
    s = statistics.median(speedups)
    p = par[0].workers
    seq_spread = Spread.of([r.wall_s for r in seq])
    par_spread = Spread.of([r.wall_s for r in par])
    return ExecutorStats(
        executor=name, workers=p, batch_size=par[0].batch_size,
        sequential_s=seq_spread, parallel_s=par_spread,
        speedup=s, speedup_range=(min(speedups), max(speedups)),
        efficiency=efficiency(s, p), serial_fraction=karp_flatt(s, p),
        sequential_throughput=seq[0].images / seq_spread.median,
        parallel_throughput=par[0].images / par_spread.median,
        clean_rounds=sum(1 for r in measured if r.clean(name)), rounds=len(measured),
        startup_s=par[0].startup_s, stage_share=_stage_share(par),
        peak_worker_rss_mb=max(r.peak_worker_rss_mb for r in par),
        ceiling_efficiency=statistics.median(vs_ceiling) if vs_ceiling else None,
        noisy_rounds=sum(1 for r in measured if r.noisy), headline_noisy=not quiet,
    )


def csv_row(rnd: RoundResult, name: str, run: RunConfig, size: tuple[int, int], env: dict,
            run_id: str, mode: str, ceiling: Ceiling | None, checksum: str | None) -> dict:
    """The results-CSV row of executor ``name`` in round ``rnd`` (``size``: width, height)."""
    seq, par = rnd.sequential, rnd.parallel[name]
    s = rnd.speedup(name)
    return {
        "timestamp": env["timestamp"], "run_id": run_id, "mode": mode, "round": rnd.index,
        "executor": name, "num_images": seq.images, "width": size[0],
        "height": size[1], "batch_size": par.batch_size, "workers": par.workers,
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
        "outside_load_cores": rnd.load.outside_cores if rnd.load else None,
        "steal_cores": rnd.load.steal_cores if rnd.load else None,
        "noisy": rnd.noisy if rnd.load else None,
        "workload": run.workload, "engine": run.engine,
        "workload_params": json.dumps(Job.for_run(run).describe(), sort_keys=True),
    }


def format_round(rnd: RoundResult) -> str:
    label = "warm-up" if rnd.warmup else f"round {rnd.index}"
    parts = [f"{label:>9}: sequential {rnd.sequential.wall_s:7.2f} s"]
    for name, run in rnd.parallel.items():
        mark = "identical" if rnd.verification[name].ok else "MISMATCH"
        if run.failed or rnd.sequential.failed:
            mark += f", {run.failed + rnd.sequential.failed} failed"
        parts.append(f"{name} {run.wall_s:7.2f} s  x{rnd.speedup(name):.2f} ({mark})")
    if rnd.ceiling:
        parts.append(f"ceiling x{rnd.ceiling.median:.2f}")
    if rnd.load:
        parts.append(f"NOISY: {rnd.load.describe()}, over the {rnd.load.limit_cores:.2f}-core limit"
                     if rnd.noisy else f"outside load {rnd.load.taken_cores:.2f} cores")
    return " | ".join(parts)


class Bench:
    """Started executors for one benchmark, reusable across rounds and configurations."""

    def __init__(self, config: BenchConfig, *, echo: Echo = print, progress: bool = False,
                 ceiling_workers: int | None = None):
        self.config = config
        self.echo = echo
        self.progress = progress
        self.sequential = create_executor("sequential", config.run)
        self.parallel: dict[str, Executor] = {}
        self.ceiling_workers = ceiling_workers  # default: the largest pool's
        self._meter: CeilingMeter | None = None
        self._own: set[int] = set()  # a remote cluster's processes on this machine

    def __enter__(self) -> Bench:
        self.sequential.start()
        try:
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
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

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

    def one_round(self, index: int, warmup: bool, images: list[Path], order_flip: bool,
                  run: RunConfig | None = None) -> RoundResult:
        run = run or self.config.run
        seq_dir = output_dir_for(run, "sequential")
        seq_tasks = plan_tasks(run, images, seq_dir)
        runs: dict[str, RunSummary] = {}

        def do_seq() -> RunSummary:
            size = resolve_batch_size(run, images, 1)
            return run_tasks(self.sequential, run, seq_tasks, seq_dir, batch_size=size,
                             progress=self.progress)

        def do_par(name: str, ex: Executor) -> RunSummary:
            out = output_dir_for(run, name)
            size = resolve_batch_size(run, images, ex.workers)
            summary = run_tasks(ex, run, plan_tasks(run, images, out), out, batch_size=size,
                                progress=self.progress)
            if run.include_startup:
                summary = replace(summary, wall_s=summary.wall_s + summary.startup_s)
            return summary

        if not order_flip:
            seq = do_seq()
        for name, ex in self.parallel.items():
            runs[name] = do_par(name, ex)
        if order_flip:
            seq = do_seq()
        verification = {name: compare_dirs(seq_dir, output_dir_for(run, name))
                        for name in runs}
        return RoundResult(index, warmup, seq, runs, verification)

    def _ceiling_meter(self, image: Path, sigma: float) -> CeilingMeter | None:
        """The pool that measures the ceiling with every round, started on first use."""
        if self._meter is None and self.config.measure_ceiling:
            workers = self.ceiling_workers or max(ex.workers for ex in self.parallel.values())
            if workers >= 2:
                meter = CeilingMeter(workers, sigma=sigma, shape=ceiling_shape(image))
                self._meter = meter.__enter__()
                self.echo(f"hardware ceiling: measured with every round ({workers} processes "
                          f"against one, {ROUND_CEILING_ALTERNATIONS} alternations)")
        return self._meter

    def measure(self, images: list[Path], *, run: RunConfig, run_id: str, mode: str,
                fetch_summary: dict, label: str = "") -> BenchSummary:
        """The warm-up and measured rounds of one configuration, each measured round's
        rows appended to the results CSV as soon as it ends.

        Every round records the outside load over its ceiling measurement, its runs and
        their verification.
        """
        config = self.config
        size = (config.fetch.width, config.fetch.height)
        checksum = fetch_summary.get("dataset_checksum")
        rounds: list[RoundResult] = []
        note = None
        for i in range(config.warmup + config.trials):
            warm = i < config.warmup
            meter = None if warm else self._ceiling_meter(images[0], run.blur.sigma)
            busy = max([ex.workers for ex in self.parallel.values()]
                       + [meter.workers if meter else 1])
            with LoadSampler(busy, own=self._own) as sampler:
                ceiling = meter.measure(ROUND_CEILING_ALTERNATIONS) if meter else None
                rnd = self.one_round(i - config.warmup + 1, warm, images, bool(i % 2), run=run)
            rnd = replace(rnd, load=sampler.load, ceiling=ceiling)
            rounds.append(rnd)
            self.echo(label + format_round(rnd))
            if not warm:
                env = snapshot()
                rows = [csv_row(rnd, n, run, size, env, run_id, mode, rnd.ceiling, checksum)
                        for n in rnd.parallel]
                note = results.append_rows(config.report_csv, rows) or note
        stats = {name: summarize(name, rounds) for name in self.parallel}
        return BenchSummary(run_id, len(images), rounds, stats, run_ceiling(rounds),
                            fetch_summary, str(config.report_csv), note)


def run_ceiling(rounds: Sequence[RoundResult]) -> Ceiling | None:
    """The ceilings measured with the quiet measured rounds, pooled (all of them if none was quiet)."""
    measured = [r for r in rounds if not r.warmup and r.ceiling]
    use = [r for r in measured if not r.noisy] or measured
    return Ceiling.pooled([r.ceiling for r in use])


def prepare_dataset(config: FetchConfig, *, echo: Echo, progress: bool) -> tuple[list[Path], dict]:
    """Fetch (or reuse) the dataset; its images (exactly those the fetch chose, the first
    ``num_images`` of a larger dataset) and the fetch summary as a dict."""
    from .ingestion import fetch_dataset

    fetched = fetch_dataset(config, progress=progress)
    echo(fetched.format_summary())
    if not fetched.images:
        raise DatasetError(f"no images found in {config.input_dir}")
    return list(fetched.images), fetched.to_dict()


def run_benchmark(config: BenchConfig, *, echo: Echo = print, progress: bool = False,
                  mode: str = "bench", run_id: str | None = None,
                  fetch_summary: dict | None = None) -> BenchSummary:
    """Fetch the dataset if needed, then run warm-up and measured rounds; append CSV rows."""
    if fetch_summary is None:
        images, fetch_summary = prepare_dataset(config.fetch, echo=echo, progress=progress)
    else:
        listed = fetch_summary.get("images")
        images = ([Path(p) for p in listed] if listed is not None
                  else list_images(config.fetch.input_dir))
        if not images:
            raise DatasetError(f"no images found in {config.fetch.input_dir}")
    config = replace(config, run=replace(config.run, input_dir=config.fetch.input_dir))
    with Bench(config, echo=echo, progress=progress) as bench:
        return bench.measure(images, run=config.run, run_id=run_id or uuid.uuid4().hex[:12],
                             mode=mode, fetch_summary=fetch_summary)


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


def format_summary(summary: BenchSummary) -> str:
    """The summary table printed at the end of a benchmark."""
    lines = _noise_lines(summary)
    for st in summary.stats.values():
        noisy = " (noisy rounds)" if st.headline_noisy else ""
        n = st.noisy_rounds
        left_out = (f", {n} of {st.rounds} rounds noisy, none quiet and clean" if st.headline_noisy
                    else f", {n} noisy round{'s' if n > 1 else ''} left out" if n else "")
        if st.serial_fraction is None:
            serial = "       n/a (1 worker)"
        elif st.headline_noisy:
            serial = "       n/a (no quiet round: it would measure the other programs' load)"
        else:
            serial = f"{st.serial_fraction * 100:8.1f}%  (Karp-Flatt)"
        lines += [
            f"{st.executor}: {st.workers} workers, batch size {st.batch_size}, "
            f"{st.clean_rounds}/{st.rounds} clean rounds{left_out}, start-up {st.startup_s:.2f} s",
            "                      median      min      max",
            f"  sequential s     {st.sequential_s.median:8.2f} {st.sequential_s.minimum:8.2f} "
            f"{st.sequential_s.maximum:8.2f}",
            f"  parallel s       {st.parallel_s.median:8.2f} {st.parallel_s.minimum:8.2f} "
            f"{st.parallel_s.maximum:8.2f}",
            f"  speedup          {st.speedup:8.2f}x  (rounds {st.speedup_range[0]:.2f}x "
            f"to {st.speedup_range[1]:.2f}x){noisy}",
            f"  efficiency       {st.efficiency * 100:8.1f}%{noisy}",
            "  serial fraction  " + serial,
            f"  throughput       {st.sequential_throughput:8.2f} img/s sequential, "
            f"{st.parallel_throughput:.2f} img/s parallel",
        ]
        if st.ceiling_efficiency is not None:
            lines.append(f"  vs ceiling       {st.ceiling_efficiency * 100:8.1f}%  (each round's "
                         f"speedup over the ceiling measured with it){noisy}")
        if st.stage_share:
            shares = ", ".join(f"{k} {v * 100:.1f}%" for k, v in st.stage_share.items())
            lines.append(f"  worker time      {shares}")
        if st.peak_worker_rss_mb:
            lines.append(f"  peak worker RSS  {st.peak_worker_rss_mb:8.0f} MB")
    c = summary.ceiling
    if c:
        per_round = c.seconds / len(c.ratios) * ROUND_CEILING_ALTERNATIONS
        lines.append(f"hardware ceiling: {c.median:.2f}x with {c.workers} processes (rounds "
                     f"{c.minimum:.2f}x to {c.maximum:.2f}x), measured with every round in "
                     f"{per_round:.1f} s a round")
    verdict = ("all outputs pixel-identical" if not summary.mismatches
               else f"{len(summary.mismatches)} MISMATCHES")
    lines.append(f"verified: {verdict}; failed images: {len(summary.failures)}; "
                 f"rows appended to {summary.csv_path}")
    if summary.csv_note:
        lines.append(summary.csv_note)
    return "\n".join(lines)
