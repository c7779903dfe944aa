"""Scaling studies: the benchmark swept over worker counts and batch sizes.

Strong scaling keeps the dataset fixed; weak scaling (``weak=True``) keeps the
images per worker fixed, so the dataset grows with the pool (Gustafson's law).
Every point runs the same verified, interleaved rounds as ``bench`` and appends
the same CSV rows, with ``mode`` set to ``scale-strong`` or ``scale-weak``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from .analysis import AmdahlFit, fit_amdahl, karp_flatt_trend
from .benchmark import Bench, BenchSummary, Echo, prepare_dataset
from .config import BenchConfig, default_workers
from .errors import ConfigError


def default_workers_list() -> tuple[int, ...]:
    """1, 2, ... up to the cores, plus one step past them to show oversubscription."""
    return tuple(range(1, default_workers() + 2))


@dataclass(frozen=True)
class ScaleConfig:
    """A sweep: the benchmark's settings, and the worker counts and batch sizes to visit."""

    bench: BenchConfig = field(default_factory=BenchConfig)
    workers_list: tuple[int, ...] = field(default_factory=default_workers_list)
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8)
    weak: bool = False
    images_per_worker: int = 8

    def __post_init__(self) -> None:
        if not self.workers_list or min(self.workers_list) < 1:
            raise ConfigError(f"workers-list must be positive integers, got {self.workers_list}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch-sizes must be positive integers, got {self.batch_sizes}")
        if self.images_per_worker < 1:
            raise ConfigError(f"images-per-worker must be >= 1, got {self.images_per_worker}")

    @property
    def mode(self) -> str:
        return "scale-weak" if self.weak else "scale-strong"


@dataclass(frozen=True)
class ScaleSummary:
    """Every point of the sweep and the Amdahl fit over it."""

    run_id: str
    points: list[BenchSummary]
    fits: dict[str, AmdahlFit]  # one per executor and batch size, over the worker counts
    csv_path: str
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {
            "run_id": self.run_id, "ok": self.ok, "report_csv": self.csv_path,
            "amdahl": {label: asdict(fit) for label, fit in self.fits.items()},
            "warnings": list(self.warnings),
            "points": [p.to_dict() for p in self.points],
        }


def run_scale(config: ScaleConfig, *, echo: Echo = print, progress: bool = False) -> ScaleSummary:
    """Run the sweep; one cluster per worker count, reused for every batch size."""
    bench = config.bench
    needed = (max(config.workers_list) * config.images_per_worker if config.weak
              else bench.fetch.num_images)
    all_images, fetch_summary = prepare_dataset(replace(bench.fetch, num_images=needed),
                                                echo=echo, progress=progress)
    run_id = uuid.uuid4().hex[:12]
    # Every round measures the ceiling of the sweep's largest pool (past the cores it
    # stays flat): the one ceiling the report draws over every worker count.
    ceiling_workers = max(max(config.workers_list), 2)
    points: list[BenchSummary] = []
    for workers in config.workers_list:
        images = all_images[: workers * config.images_per_worker] if config.weak else all_images
        cluster = replace(bench.run.cluster, limit_workers=True)
        run = replace(bench.run, input_dir=bench.fetch.input_dir, workers=workers,
                      cluster=cluster)
        with Bench(replace(bench, run=run), echo=echo, progress=progress,
                   ceiling_workers=ceiling_workers) as pool:
            for size in config.batch_sizes:
                points.append(pool.measure(
                    images, run=replace(run, batch_size=size), run_id=run_id,
                    mode=config.mode, fetch_summary=fetch_summary,
                    label=f"workers {workers}, batch {size}: "))
    fits, warnings = ({}, ()) if config.weak else _amdahl(points)
    return ScaleSummary(run_id, points, fits, str(bench.report_csv), warnings)


def _amdahl(points: list[BenchSummary]) -> tuple[dict[str, AmdahlFit], tuple[str, ...]]:
    """One Amdahl fit per executor and batch size over the worker counts, and the warnings.

    Each clean round's parallel time is taken in units of its own sequential time,
    so that drift in the machine's speed between rounds cancels out. Noisy rounds
    (other programs took cores) are left out, as their slowdown is no serial part;
    a sweep without quiet rounds at two worker counts is fitted over every clean
    round, and a warning says that its f measures the machine's load.
    """
    sweeps: dict[str, list[tuple[int, float, bool]]] = {}
    for point in points:
        for rnd in point.rounds:
            for name, par in rnd.parallel.items():
                if rnd.warmup or not rnd.clean(name):
                    continue
                sweeps.setdefault(f"{name}, batch size {par.batch_size}", []).append(
                    (par.workers, par.wall_s / rnd.sequential.wall_s, rnd.noisy))
    fits, warnings = {}, []
    for label, rows in sweeps.items():
        quiet = [r for r in rows if not r[2]]
        left_out = len(rows) - len(quiet)
        if len({p for p, _, _ in quiet}) >= 2:
            rows = quiet
            if left_out:
                warnings.append(f"{label}: {left_out} noisy round{'s' if left_out > 1 else ''} "
                                "(other programs took cores) left out of the Amdahl fit")
        elif left_out:
            warnings.append(f"{label}: no quiet rounds at two worker counts, so the Amdahl fit is "
                            f"over {left_out} noisy rounds: its f measures other programs' load, "
                            "not a serial fraction; rerun on a quiet machine")
        ps, ts = [p for p, _, _ in rows], [t for _, t, _ in rows]
        if len(set(ps)) >= 2:
            fits[label] = fit_amdahl(ps, ts)
        if len(set(ps)) >= 3:
            trend = karp_flatt_trend(ps, [1 / t for t in ts])
            if trend.growing:
                warnings.append(f"{label}: {trend.message}")
    return fits, tuple(warnings)
