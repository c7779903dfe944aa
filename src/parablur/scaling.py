"""Scaling studies: the benchmark swept over worker counts and batch sizes.

Strong scaling keeps the dataset fixed; weak scaling (``weak=True``) keeps the
images per worker fixed, so the dataset grows with the pool (Gustafson's law).
Every point runs the same verified, interleaved rounds as ``bench`` and appends
the same CSV rows, with ``mode`` set to ``scale-strong`` or ``scale-weak``.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import figures
from .analysis import AmdahlFit
from .benchmark import Bench, BenchSummary, Echo, hold_legs, prepare_dataset
from .config import BenchConfig, default_workers
from .errors import ConfigError
from .figures import Sweep, WeakSweep
from .files import derived_path


def default_workers_list() -> tuple[int, ...]:
    """1, 2, ... up to the cores, plus one step past them to show oversubscription."""
    return tuple(range(1, default_workers() + 2))


DEFAULT_BATCH_SIZES = (1, 2, 4, 8)


def sweep_lists(
    *,
    workers: int | None = None,
    workers_list: tuple[int, ...] | None = None,
    batch_size: int | str | None = None,
    batch_sizes: tuple[int, ...] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The worker counts and batch sizes a sweep visits, from either form of each flag.

    ``workers=N`` is ``workers_list=(N,)`` and ``batch_size=B`` is ``batch_sizes=(B,)``;
    both forms at once are accepted only when they agree. A sweep's batch sizes are
    integers ('auto' is refused). Nothing given: 1..cores+1 workers, batch sizes 1,2,4,8.
    """
    if isinstance(batch_size, str):
        if not (batch_size.isascii() and batch_size.isdigit()):
            raise ConfigError(f"scale sweeps integer batch sizes: --batch-size must be a "
                              f"positive integer here, got {batch_size!r}")
        batch_size = int(batch_size)
    workers_list = _one_point("workers", workers, "workers-list", workers_list)
    batch_sizes = _one_point("batch-size", batch_size, "batch-sizes", batch_sizes)
    return (tuple(workers_list) if workers_list else default_workers_list(),
            tuple(batch_sizes) if batch_sizes else DEFAULT_BATCH_SIZES)


def _one_point(flag: str, value: int | None, axis_flag: str, axis: tuple[int, ...] | None
               ) -> tuple[int, ...] | None:
    """The sweep's axis from ``--FLAG value`` (one point) or ``--AXIS-FLAG``; both only if they agree."""
    if value is None:
        return axis
    if value < 1:
        raise ConfigError(f"{flag} must be >= 1, got {value}")
    if axis is not None and tuple(axis) != (value,):
        raise ConfigError(f"--{flag} {value} and --{axis_flag} {','.join(map(str, axis))} "
                          "disagree: give one of them")
    return (value,)


@dataclass(frozen=True)
class ScaleConfig:
    """A sweep: the benchmark's settings, and the worker counts and batch sizes to visit."""

    bench: BenchConfig = field(default_factory=BenchConfig)
    workers_list: tuple[int, ...] = field(default_factory=default_workers_list)
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    weak: bool = False
    images_per_worker: int = 8

    def __post_init__(self) -> None:
        if not self.workers_list or min(self.workers_list) < 1:
            raise ConfigError(f"workers-list must be positive integers, got {self.workers_list}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ConfigError(f"batch-sizes must be positive integers, got {self.batch_sizes}")
        if len(self.bench.engines) > 1:
            raise ConfigError("scale sweeps one engine: give --engine, not several engines")
        if self.images_per_worker < 1:
            raise ConfigError(f"images-per-worker must be >= 1, got {self.images_per_worker}")

    @property
    def mode(self) -> str:
        return "scale-weak" if self.weak else "scale-strong"


@dataclass(frozen=True)
class ScaleSummary:
    """Every point of the sweep, and the sweeps (with their fits) of its rows.

    ``sweeps`` (strong, Amdahl) and ``weak`` (weak, Gustafson) are computed from exactly
    the rows this sweep appended, by the functions the report uses, so ``scale`` and its
    report show the same fits; both leave out noisy rounds alike (``figures.fit_rows``).
    """

    run_id: str
    points: list[BenchSummary]
    sweeps: tuple[Sweep, ...]
    csv_path: str
    weak: tuple[WeakSweep, ...] = ()

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.points)

    @property
    def fits(self) -> dict[str, AmdahlFit]:
        """One Amdahl fit per executor and batch size, over the worker counts."""
        return {_short_label(s): s.fit for s in self.sweeps if s.fit is not None}

    @property
    def warnings(self) -> tuple[str, ...]:
        strong = (w for s in self.sweeps for w in (s.noise_warning, s.overhead_warning))
        return tuple(w for w in (*strong, *(s.noise_warning for s in self.weak)) if w)

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id, "ok": self.ok, "report_csv": self.csv_path,
            "amdahl": {_short_label(s): {**asdict(s.fit), "sweep": s.config.label(skip=["workers"]),
                                         "unclean_left_out": s.left_out,
                                         "noisy_left_out": s.noisy_left_out,
                                         "over_noisy_rounds": s.noisy}
                       for s in self.sweeps if s.fit is not None},
            "gustafson": {_short_label(s): {**asdict(s.fit),
                                            "sweep": s.config.label(skip=["workers", "num_images"]),
                                            "unclean_left_out": s.left_out,
                                            "noisy_left_out": s.noisy_left_out,
                                            "over_noisy_rounds": s.noisy}
                          for s in self.weak if s.fit is not None},
            "warnings": list(self.warnings),
            "points": [p.to_dict() for p in self.points],
        }


def _short_label(sweep: Sweep | WeakSweep) -> str:
    return f"{sweep.config.executor}, batch size {sweep.config.batch_size}"


def run_scale(config: ScaleConfig, *, echo: Echo = print, progress: bool = False) -> ScaleSummary:
    """Run the sweep; one cluster per worker count, reused for every batch size. Its leg
    locations are held (claimed and locked) from before the dataset is fetched to the end."""
    with hold_legs(config.bench, echo):
        return _sweep(config, echo=echo, progress=progress)


def _sweep(config: ScaleConfig, *, echo: Echo, progress: bool) -> ScaleSummary:
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
                   ceiling_workers=ceiling_workers, legs_held=True) as pool:
            for size in config.batch_sizes:
                point = replace(run, batch_size=size, performance_report=_point_file(
                    run.performance_report, f"w{workers}-b{size}"))
                points.append(pool.measure(
                    images, run=point, run_id=run_id,
                    mode=config.mode, fetch_summary=fetch_summary,
                    label=f"workers {workers}, batch {size}: "))
    runs = figures.from_rows([row for point in points for row in point.rows])
    return ScaleSummary(run_id, points, figures.sweeps(runs), str(bench.report_csv),
                        figures.weak_sweeps(runs))


def _point_file(path: Path | None, point: str) -> Path | None:
    """One Dask performance report per point of the sweep: ``FILE-<point>.html``."""
    return derived_path(path, point) if path else None
