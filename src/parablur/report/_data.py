"""Saved results rows -> typed runs, configuration groups, fits and the tables every renderer shows.

Reads nothing itself: ``build_report`` hands in the rows of ``results.read_rows``.
Older CSVs lack columns; a missing value is None and whatever can be derived
(speedup from the two times, efficiency from speedup and workers, Karp-Flatt,
throughput) is derived.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

from .. import analysis as A

STAGES = ("read_s", "decode_s", "blur_s", "encode_s", "write_s", "idle_s")
ENV_FIELDS = (
    "cpu_model",
    "logical_cores",
    "physical_cores",
    "platform",
    "python_version",
    "opencv_version",
    "dask_version",
    "parablur_version",
)
MISSING = "–"


def _float(value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def _int(value: str | None) -> int | None:
    out = _float(value)
    return None if out is None or out != int(out) else int(out)


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: blanks as a dash, floats to ``digits`` significant decimals."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@dataclass(frozen=True, order=True)
class Config:
    """What makes runs comparable: rows sharing all of these are trials of one configuration."""

    mode: str
    hostname: str
    executor: str
    num_images: int | None
    width: int | None
    height: int | None
    blur_radius: float | None
    passes: int | None
    batch_size: int | None
    workers: int | None

    @staticmethod
    def headers() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Config))

    def cells(self) -> tuple[str, ...]:
        return tuple(
            fmt(getattr(self, f.name), 1) if f.name == "blur_radius" else fmt(getattr(self, f.name))
            for f in fields(Config)
        )

    def label(self, *, skip: Iterable[str] = ()) -> str:
        skip = set(skip)
        parts = [self.executor, self.mode]
        named = {
            "workers": "p",
            "batch_size": "batch",
            "num_images": "n",
            "blur_radius": "r",
            "passes": "passes",
        }
        for name, short in named.items():
            value = getattr(self, name)
            if name not in skip and value is not None:
                parts.append(
                    f"{short}={value:g}" if isinstance(value, float) else f"{short}={value}"
                )
        if self.width and self.height and "size" not in skip:
            parts.append(f"{self.width}x{self.height}")
        if "hostname" not in skip:
            parts.append(f"@{self.hostname}")
        return " ".join(parts)

    def sort_key(self) -> tuple:
        return tuple(
            (v is None, v if v is not None else 0)
            for v in (getattr(self, f.name) for f in fields(Config))
        )


@dataclass(frozen=True)
class Run:
    """One row: one measured round of one parallel executor, with derived metrics filled in."""

    source: str
    index: int
    timestamp: str
    run_id: str
    round: str
    config: Config
    seq_s: float | None
    par_s: float | None
    speedup: float | None
    efficiency: float | None
    karp_flatt: float | None
    seq_throughput: float | None
    par_throughput: float | None
    ceiling: float | None
    stages: tuple[tuple[str, float | None], ...]
    env: tuple[tuple[str, str], ...]
    cpu_freq_mhz: float | None
    load_avg_1m: float | None

    @property
    def workers(self) -> int | None:
        return self.config.workers

    def stage(self, name: str) -> float | None:
        return dict(self.stages).get(name)


def to_run(row: Mapping[str, str], source: str, index: int) -> Run:
    """Parse one CSV row, deriving what an older format left out."""
    g = row.get
    config = Config(
        mode=(g("mode") or "").strip() or "bench",
        hostname=(g("hostname") or "").strip() or "unknown",
        executor=(g("executor") or "").strip() or "unknown",
        num_images=_int(g("num_images")),
        width=_int(g("width")),
        height=_int(g("height")),
        blur_radius=_float(g("blur_radius")),
        passes=_int(g("passes")),
        batch_size=_int(g("batch_size")),
        workers=_int(g("workers")),
    )
    seq, par, p = _float(g("seq_s")), _float(g("par_s")), config.workers
    s = _float(g("speedup"))
    if s is None and seq is not None and par:
        s = A.speedup(seq, par)
    eff = _float(g("efficiency"))
    if eff is None and s is not None and p and p >= 1:
        eff = A.efficiency(s, p)
    kf = A.karp_flatt(s, p) if s and p else None
    n = config.num_images
    seq_tp = _float(g("seq_throughput")) or (n / seq if n and seq else None)
    par_tp = _float(g("par_throughput")) or (n / par if n and par else None)
    return Run(
        source=source,
        index=index,
        timestamp=g("timestamp") or "",
        run_id=g("run_id") or "",
        round=g("round") or "",
        config=config,
        seq_s=seq,
        par_s=par,
        speedup=s,
        efficiency=eff,
        karp_flatt=kf,
        seq_throughput=seq_tp,
        par_throughput=par_tp,
        ceiling=_float(g("ceiling")),
        stages=tuple((k, _float(g(k))) for k in STAGES),
        env=tuple((k, (g(k) or "").strip()) for k in ENV_FIELDS),
        cpu_freq_mhz=_float(g("cpu_freq_mhz")),
        load_avg_1m=_float(g("load_avg_1m")),
    )


def _values(runs: Iterable[Run], attr: str) -> list[float]:
    return [v for v in (getattr(r, attr) for r in runs) if v is not None]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Group:
    """All trials of one configuration and their statistics."""

    config: Config
    runs: tuple[Run, ...]
    speedup: A.GroupStats | None
    seq_s: A.GroupStats | None
    par_s: A.GroupStats | None

    @property
    def efficiency(self) -> float | None:
        p = self.config.workers
        return A.efficiency(self.speedup.median, p) if self.speedup and p else None

    @property
    def karp_flatt(self) -> float | None:
        p = self.config.workers
        return A.karp_flatt(self.speedup.median, p) if self.speedup and p else None

    def median(self, attr: str) -> float | None:
        return _median(_values(self.runs, attr))


@dataclass(frozen=True)
class Sweep:
    """A strong-scaling sweep: one configuration but for the worker count, with its Amdahl fit.

    The fit uses each round's parallel time rescaled by that round's own
    sequential time (par_s * median(seq_s) / seq_s), which cancels the machine's
    drift between rounds; raw par_s when a row lacks seq_s.
    """

    config: Config  # workers is None
    runs: tuple[Run, ...]
    points: tuple[A.ScalingPoint, ...]
    fit: A.AmdahlFit | None
    fit_note: str
    trend: A.KarpFlattTrend
    seq_median: float | None
    ceiling: float | None
    drift_corrected: bool


@dataclass(frozen=True)
class WeakSweep:
    """A weak-scaling sweep (problem grown with p): measured scaled speedups and Gustafson's fit."""

    config: Config  # workers and num_images are None
    workers: tuple[int, ...]
    scaled: tuple[float, ...]
    basis: str
    fit: A.GustafsonFit | None


def _sweep(config: Config, runs: Sequence[Run]) -> Sweep | None:
    usable = [r for r in runs if r.workers and r.par_s and r.par_s > 0]
    if len({r.workers for r in usable}) < 2:
        return None
    seqs = [r.seq_s for r in usable if r.seq_s]
    corrected = len(seqs) == len(usable)
    ref = statistics.median(seqs) if seqs else None
    times = [r.par_s * ref / r.seq_s if corrected else r.par_s for r in usable]
    ps = [r.workers for r in usable]
    fit, note = None, ""
    try:
        fit = A.fit_amdahl(ps, times)
    except ValueError as exc:
        note = str(exc)
    with_s = [r for r in usable if r.speedup]
    points = A.scaling_points([r.workers for r in with_s], [r.speedup for r in with_s])
    trend = A.karp_flatt_trend([r.workers for r in with_s], [r.speedup for r in with_s])
    return Sweep(
        config,
        tuple(usable),
        points,
        fit,
        note,
        trend,
        ref,
        _median(_values(usable, "ceiling")),
        corrected,
    )


def _weak(config: Config, runs: Sequence[Run]) -> WeakSweep | None:
    usable = [r for r in runs if r.workers and r.par_s]
    one = [r.par_s for r in usable if r.workers == 1]
    if one:
        t1 = statistics.median(one)
        pairs = [(r.workers, A.scaled_speedup(t1, r.par_s, r.workers)) for r in usable]
        basis = "p x T1/Tp, T1 = median one-worker time"
    else:
        pairs = [(r.workers, r.speedup) for r in usable if r.speedup]
        basis = "the rows' own speedup (seq_s of the scaled problem / par_s)"
    if not pairs:
        return None
    ws, ss = zip(*sorted(pairs), strict=True)
    try:
        fit = A.fit_gustafson(ws, ss)
    except ValueError:
        fit = None
    return WeakSweep(config, tuple(ws), tuple(ss), basis, fit)


@dataclass(frozen=True)
class Table:
    """A renderer-neutral table: cells are plain text, escaped by each renderer."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class ReportData:
    """Everything the renderers show, computed once from the runs."""

    sources: tuple[str, ...]
    runs: tuple[Run, ...]
    groups: tuple[Group, ...]
    sweeps: tuple[Sweep, ...]
    weak: tuple[WeakSweep, ...]

    @property
    def primary_sweep(self) -> Sweep | None:
        """The headline sweep: most points, then most worker counts, then the narrowest CI of f.

        Ties left after that go to the first in configuration order.
        """
        fitted = [s for s in self.sweeps if s.fit is not None]
        if not fitted:
            return None
        return max(
            fitted,
            key=lambda s: (s.fit.n_points, len(s.points), -(s.fit.ci_high - s.fit.ci_low)),
        )

    @property
    def noise_warnings(self) -> tuple[str, ...]:
        return tuple(
            f"{g.config.label()}: speedup {g.speedup.noise_reason} (n={g.speedup.n})"
            for g in self.groups
            if g.speedup and g.speedup.noisy
        )

    @property
    def overhead_warnings(self) -> tuple[str, ...]:
        return tuple(
            f"{s.config.label(skip=['workers'])}: {s.trend.message}"
            for s in self.sweeps
            if s.trend.growing
        )

    # -- tables -------------------------------------------------------------------------

    def tables(self) -> tuple[Table, ...]:
        out = [self.fit_table(), self.study_table(), self.group_table(), self.karp_flatt_table()]
        if self.weak:
            out.append(self.weak_table())
        out.append(self.environment_table())
        return tuple(t for t in out if t.rows)

    def fit_table(self) -> Table:
        rows = []
        for s in self.sweeps:
            f = s.fit
            rows.append(
                (
                    s.config.label(skip=["workers"]),
                    str(f.n_points) if f else str(len(s.runs)),
                    ", ".join(str(p.workers) for p in s.points),
                    fmt(f.f) if f else MISSING,
                    f"[{f.ci_low:.3f}, {f.ci_high:.3f}]" if f else s.fit_note,
                    (f"{f.ceiling:.2f}x" if f.ceiling else "unbounded") if f else MISSING,
                    fmt(f.t1, 2) if f else MISSING,
                    fmt(f.rss, 3) if f else MISSING,
                    fmt(s.ceiling, 2),
                    "GROWING" if s.trend.growing else "no",
                )
            )
        return Table(
            "Amdahl fit per strong-scaling sweep",
            (
                "sweep",
                "points",
                "workers",
                "f",
                "95% CI of f",
                "ceiling 1/f",
                "T1 fit (s)",
                "RSS (s²)",
                "hardware ceiling",
                "Karp-Flatt growth",
            ),
            tuple(rows),
            "T(p) = T1·(f + (1−f)/p) fitted by least squares (a = T1·f ≥ 0, b = T1·(1−f) ≥ 0) "
            "to each round's parallel time rescaled by that round's sequential time; "
            f"CI: percentile bootstrap over the (p, T) points, {A.DEFAULT_RESAMPLES} seeded "
            "resamples.",
        )

    def study_table(self) -> Table:
        rows = [
            (
                f"study phase {s.phase} (8-core laptop)",
                str(s.num_images),
                str(s.batch_size),
                str(s.workers),
                f"{s.speedup:.2f}x",
                f"{s.efficiency:.1%}",
                f"{s.serial_fraction:.3f}",
                f"{s.ceiling:.1f}x",
            )
            for s in A.STUDY_FIGURES
        ]
        for g in self.groups:
            p = g.config.workers
            if not g.speedup or not p or p < 2:
                continue
            kf = g.karp_flatt
            rows.append(
                (
                    f"ours: {g.config.label()}",
                    fmt(g.config.num_images),
                    fmt(g.config.batch_size),
                    str(p),
                    f"{g.speedup.median:.2f}x",
                    f"{g.efficiency:.1%}",
                    fmt(kf),
                    f"{1 / kf:.1f}x" if kf and kf > 0 else MISSING,
                )
            )
        best = self.primary_sweep
        if best is not None and best.fit is not None:
            f = best.fit
            rows.append(
                (
                    f"ours, Amdahl fit: {best.config.label(skip=['workers'])}",
                    fmt(best.config.num_images),
                    fmt(best.config.batch_size),
                    ", ".join(str(p.workers) for p in best.points),
                    MISSING,
                    MISSING,
                    f"{f.f:.3f} [{f.ci_low:.3f}, {f.ci_high:.3f}]",
                    f"{f.ceiling:.1f}x" if f.ceiling else "unbounded",
                )
            )
        return Table(
            "The original study beside ours",
            (
                "source",
                "images",
                "batch",
                "workers",
                "median speedup",
                "efficiency",
                "serial fraction",
                "ceiling 1/e",
            ),
            tuple(rows),
            "The study's serial fraction is Karp-Flatt from one median speedup; ours is the same "
            "per configuration, and the Amdahl fit over a whole sweep.",
        )

    def group_table(self) -> Table:
        rows = []
        for g in self.groups:
            s = g.speedup
            rows.append(
                (
                    *g.config.cells(),
                    str(len(g.runs)),
                    fmt(g.median("seq_s"), 2),
                    fmt(g.median("par_s"), 2),
                    fmt(s.median) if s else MISSING,
                    fmt(s.iqr) if s else MISSING,
                    fmt(s.minimum) if s else MISSING,
                    fmt(s.maximum) if s else MISSING,
                    f"[{s.ci_low:.3f}, {s.ci_high:.3f}]" if s and s.ci_low is not None else MISSING,
                    fmt(g.efficiency),
                    fmt(g.karp_flatt),
                    fmt(g.median("par_throughput"), 2),
                    ("NOISY" if s.noisy else "ok") if s else MISSING,
                )
            )
        return Table(
            "Runs grouped by configuration",
            (
                *Config.headers(),
                "trials",
                "seq s (median)",
                "par s (median)",
                "speedup median",
                "IQR",
                "min",
                "max",
                "95% CI of median",
                "efficiency",
                "Karp-Flatt",
                "par img/s",
                "noise",
            ),
            tuple(rows),
            f"Noise rule: a group is NOISY when IQR/median > {A.NOISE_IQR_RATIO} or the 95% CI "
            f"of the median (percentile bootstrap) is wider than {A.NOISE_CI_RATIO} of the median.",
        )

    def karp_flatt_table(self) -> Table:
        rows = []
        for s in self.sweeps:
            for p in s.points:
                rows.append(
                    (
                        s.config.label(skip=["workers"]),
                        str(p.workers),
                        str(p.n),
                        fmt(p.speedup),
                        fmt(p.efficiency),
                        fmt(p.karp_flatt),
                        fmt(s.fit.speedup(p.workers) * s.fit.t1 / s.seq_median)
                        if s.fit and s.seq_median
                        else MISSING,
                    )
                )
        return Table(
            "Karp-Flatt per worker count",
            (
                "sweep",
                "workers",
                "trials",
                "median speedup",
                "efficiency",
                "Karp-Flatt e",
                "Amdahl-fit speedup",
            ),
            tuple(rows),
            "e rising with p means overhead grows with the pool (scheduling, contention, "
            "oversubscription), not a fixed serial part. Fitted speedup is over the "
            "sequential baseline: median seq_s / T_fit(p).",
        )

    def weak_table(self) -> Table:
        rows = []
        for w in self.weak:
            for p, s in zip(w.workers, w.scaled, strict=True):
                rows.append(
                    (
                        w.config.label(skip=["workers", "num_images"]),
                        str(p),
                        fmt(s),
                        fmt(w.fit.speedup(p)) if w.fit else MISSING,
                        fmt(w.fit.f) if w.fit else MISSING,
                        w.basis,
                    )
                )
        return Table(
            "Weak scaling (Gustafson)",
            ("sweep", "workers", "scaled speedup", "Gustafson fit S", "fitted f_s", "basis"),
            tuple(rows),
            "Gustafson: S = p − f_s·(p − 1), f_s fitted by least squares.",
        )

    def environment_table(self) -> Table:
        seen: dict[tuple[str, str, str], list[Run]] = {}
        for r in self.runs:
            seen.setdefault((r.source, r.run_id, r.config.hostname), []).append(r)
        rows = []
        for (source, run_id, host), runs in seen.items():
            env = dict(runs[0].env)
            freq, load = _values(runs, "cpu_freq_mhz"), _values(runs, "load_avg_1m")
            rows.append(
                (
                    source,
                    run_id or MISSING,
                    host,
                    str(len(runs)),
                    env.get("cpu_model") or MISSING,
                    f"{env.get('logical_cores') or MISSING}/{env.get('physical_cores') or MISSING}",
                    env.get("platform") or MISSING,
                    env.get("python_version") or MISSING,
                    env.get("opencv_version") or MISSING,
                    env.get("dask_version") or MISSING,
                    env.get("parablur_version") or MISSING,
                    f"{min(freq):.0f}–{max(freq):.0f}" if freq else MISSING,
                    f"{min(load):.2f}–{max(load):.2f}" if load else MISSING,
                )
            )
        return Table(
            "Environment of each run",
            (
                "file",
                "run",
                "hostname",
                "rows",
                "cpu model",
                "cores logical/physical",
                "platform",
                "python",
                "opencv",
                "dask",
                "parablur",
                "cpu MHz",
                "load avg 1m",
            ),
            tuple(rows),
        )


def analyse(
    sources: Sequence[str], rows_per_source: Sequence[Sequence[Mapping[str, str]]]
) -> ReportData:
    """Group, summarize and fit every run read from the given sources."""
    runs = tuple(
        to_run(row, source, i)
        for source, rows in zip(sources, rows_per_source, strict=True)
        for i, row in enumerate(rows)
    )
    by_config: dict[Config, list[Run]] = {}
    for r in runs:
        by_config.setdefault(r.config, []).append(r)
    groups = []
    for config in sorted(by_config, key=Config.sort_key):
        rs = by_config[config]
        sp, seq, par = (_values(rs, a) for a in ("speedup", "seq_s", "par_s"))
        groups.append(
            Group(
                config,
                tuple(rs),
                A.group_stats(sp) if sp else None,
                A.group_stats(seq) if seq else None,
                A.group_stats(par) if par else None,
            )
        )
    by_sweep: dict[Config, list[Run]] = {}
    by_weak: dict[Config, list[Run]] = {}
    for r in runs:
        if r.config.mode == "scale-weak":
            by_weak.setdefault(replace(r.config, workers=None, num_images=None), []).append(r)
        else:
            by_sweep.setdefault(replace(r.config, workers=None), []).append(r)
    sweeps = [_sweep(c, by_sweep[c]) for c in sorted(by_sweep, key=Config.sort_key)]
    weak = [_weak(c, by_weak[c]) for c in sorted(by_weak, key=Config.sort_key)]
    return ReportData(
        tuple(sources),
        runs,
        tuple(groups),
        tuple(s for s in sweeps if s is not None),
        tuple(w for w in weak if w is not None),
    )
