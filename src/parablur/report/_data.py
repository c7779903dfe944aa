"""Saved results rows -> the tables every renderer shows.

Reads nothing itself: ``build_report`` hands in the rows of ``results.read_rows``;
the runs, groups and fits come from ``parablur.figures``, the same code that
``bench`` and ``scale`` use for the figures they print.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import analysis as A
from .. import figures as F
from ..figures import MISSING, STAGES, Config, Group, Run, Sweep, WeakSweep, fmt, values
from ..results import QUALITY_COLUMNS

__all__ = ["STAGES", "Config", "ReportData", "Run", "Table", "analyse"]


@dataclass(frozen=True)
class Table:
    """A renderer-neutral table: cells are plain text, escaped by each renderer."""

    title: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    note: str = ""


def _accuracy(runs: Sequence[Run]) -> str:
    """The worst round's PSNR and the largest difference of a non-exact engine against exact."""
    psnr = [r.psnr_db for r in runs if r.psnr_db is not None]
    if not psnr:
        return MISSING
    diff = max((r.max_abs_diff for r in runs if r.max_abs_diff is not None), default=None)
    return f"{min(psnr):.1f} dB" + (f", max {diff:g}" if diff is not None else "")


def _varying(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> tuple[list[int], str]:
    """The columns whose cells differ between ``rows`` (the first column at least), and the
    others as "header value, ..." for a note: a table stays as narrow as what it compares."""
    shown = [i for i in range(len(headers)) if len({row[i] for row in rows}) > 1] or [0]
    same = ", ".join(f"{headers[i]} {rows[0][i]}" for i in range(len(headers))
                     if i not in shown and rows)
    return shown, same


@dataclass(frozen=True)
class ReportData:
    """Everything the renderers show, computed once from the runs."""

    sources: tuple[str, ...]
    runs: tuple[Run, ...]
    groups: tuple[Group, ...]
    sweeps: tuple[Sweep, ...]
    weak: tuple[WeakSweep, ...]
    timelines: tuple[F.LegTimeline, ...] = ()  # the last measured round's legs, task by task

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
        return tuple(s.overhead_warning for s in self.sweeps if s.overhead_warning)

    @property
    def left_out(self) -> int:
        """Unclean rounds (a failed image or a mismatch) kept out of every median and fit."""
        return sum(1 for r in self.runs if not r.clean)

    @property
    def left_out_note(self) -> str:
        n = self.left_out
        loaded = sum(1 for r in self.runs if r.clean and r.noisy)
        note = (f"{n} unclean round(s) (a failed image or a mismatch) left out of every median "
                "and fit; the tables count them per group." if n else "Every round was clean.")
        if loaded:
            note += (f" {loaded} clean round(s) ran while other programs took cores the "
                     "benchmark used: left out wherever a quiet round was measured.")
        return note

    # -- tables -------------------------------------------------------------------------

    def tables(self) -> tuple[Table, ...]:
        out = [self.fit_table(), self.study_table(), self.group_table(), self.per_core_table(),
               self.karp_flatt_table()]
        if self.timelines:
            out.append(self.timeline_table())
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
                    str(s.left_out),
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
                "unclean rounds left out",
                "hardware ceiling",
                "Karp-Flatt growth",
            ),
            tuple(rows),
            "T(p) = T1·(f + (1−f)/p) fitted by least squares (a = T1·f ≥ 0, b = T1·(1−f) ≥ 0) "
            "to each clean round's parallel time rescaled by that round's sequential time "
            "(rounds with a failed image or a mismatch are left out); "
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

    def timeline_table(self) -> Table:
        t0 = self.timelines[0]
        rows = tuple(
            (t.executor, str(len(t.lanes)), fmt(t.batch_size), str(sum(len(x.tasks) for x in t.lanes)),
             fmt(t.wall_s, 2), f"{t.busy * 100:.1f}%", fmt(t.gaps_s, 2), fmt(t.tail_s, 2),
             fmt(t.straggler, 2))
            for t in self.timelines
        )
        return Table(
            f"Where each worker's time went ({t0.workload}, {t0.engine} engine; run {t0.run_id}, "
            f"round {t0.round})",
            ("leg", "workers", "batch", "tasks", "wall s", "busy", "gaps s", "tail s",
             "longest / median task"),
            rows,
            "From the task start and end times each worker recorded (the -tasks.csv beside the "
            "results): busy is the share of the workers' time inside a task; gaps are idle "
            "worker-seconds between two tasks of one worker (scheduling, waiting for a batch); "
            "the tail is worker-seconds after a worker's last task until the leg ended.",
        )

    def group_table(self) -> Table:
        configs = [g.config.cells() for g in self.groups]
        shown, same = _varying(Config.headers(), configs)
        rows = []
        for g, cells in zip(self.groups, configs, strict=True):
            s = g.speedup
            rows.append(
                (
                    *(cells[i] for i in shown),
                    str(len(g.runs)),
                    str(g.left_out),
                    str(g.noisy_left_out) + (" (figures over noisy rounds)" if g.noisy else ""),
                    fmt(g.seq_s.median if g.seq_s else None, 2),
                    fmt(g.par_s.median if g.par_s else None, 2),
                    fmt(s.median) if s else MISSING,
                    fmt(s.iqr) if s else MISSING,
                    f"{fmt(s.minimum)} to {fmt(s.maximum)}" if s else MISSING,
                    f"[{s.ci_low:.3f}, {s.ci_high:.3f}]" if s and s.ci_low is not None else MISSING,
                    fmt(g.efficiency),
                    fmt(g.karp_flatt),
                    fmt(g.median("par_throughput"), 2),
                    _accuracy(g.runs),
                    ("NOISY" if s.noisy else "ok") if s else MISSING,
                )
            )
        return Table(
            "Runs grouped by configuration",
            (
                *(Config.headers()[i] for i in shown),
                "trials used",
                "unclean left out",
                "loaded left out",
                "seq s (median)",
                "par s (median)",
                "speedup median",
                "IQR",
                "min to max",
                "95% CI of median",
                "efficiency",
                "Karp-Flatt",
                "par img/s",
                "vs exact engine",
                "noise",
            ),
            tuple(rows),
            "Every figure is over the clean trials run on a quiet machine; a round with a failed "
            "image or a mismatch is counted under 'unclean left out', and one during which other "
            "programs took cores the benchmark used (the CSV's noisy column) under 'loaded left "
            "out' (when no clean round was quiet, the figures are the loaded rounds' and say so). "
            f"Noise rule: a group is NOISY when IQR/median > {A.NOISE_IQR_RATIO} or the 95% CI "
            f"of the median (percentile bootstrap) is wider than {A.NOISE_CI_RATIO} of the median."
            + (f" Same in every row: {same}." if same else ""),
        )

    def per_core_table(self) -> Table:
        """Images per core and what the workload scored (recall by the true face's height band,
        false positives, face-frames left exposed), per configuration."""
        bands = [c for c in QUALITY_COLUMNS if c.startswith("recall_by_height_")]
        rows = tuple(
            (g.config.label(), fmt(g.median("seq_per_core"), 2), fmt(g.median("par_per_core"), 2),
             fmt(g.score("recall")), *(fmt(g.score(c)) for c in bands),
             fmt(g.score("false_positives_per_image"), 2), fmt(g.score("exposed_face_frames")))
            for g in self.groups
        )
        return Table(
            "Images per core and detection quality",
            ("configuration", "seq img/s per core", "par img/s per core", "recall (>= 16 px)",
             *(c.removeprefix("recall_by_height_").replace("_", " ") for c in bands),
             "false positives per image", "face-frames exposed"),
            rows,
            "Images per core: the sequential leg's rate (one core), the parallel leg's over its "
            "workers. Recall counts the true faces at least 16 px tall (IoU >= 0.3), overall and "
            "by the height of the true box; faces under 16 px count nowhere (docs/faces.md).",
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
            freq, load = values(runs, "cpu_freq_mhz"), values(runs, "load_avg_1m")
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
    sources: Sequence[str], rows_per_source: Sequence[Sequence[Mapping[str, str]]],
    task_rows: Sequence[Mapping[str, str]] = (),
) -> ReportData:
    """Group, summarize and fit every run read from the given sources; ``task_rows`` (the
    task timeline of the last source that has one) give where the workers' time went."""
    runs = tuple(
        run
        for source, rows in zip(sources, rows_per_source, strict=True)
        for run in F.to_runs(rows, source)
    )
    return ReportData(
        tuple(sources), runs, F.groups(runs), F.sweeps(runs), F.weak_sweeps(runs),
        F.latest_timelines(task_rows),
    )
