"""The report's PNG figures, drawn headless on the Agg canvas (no pyplot, no display).

Each builder returns a Figure, or a sentence saying why its data is absent;
an absent plot is skipped and listed in the report, never an error.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .. import analysis as A
from ..figures import STAGES, Config, Run
from ..files import write_atomic
from ._data import ReportData

_SIZE = (7.0, 4.2)
_DPI = 100


@dataclass(frozen=True)
class Plot:
    """One figure of the report: written to ``path``, or skipped for ``skipped``."""

    name: str
    title: str
    path: Path | None
    skipped: str = ""
    caption: str = ""  # what to read in it, never its title again


def _legend(data: ReportData, config: Config, *skip: str) -> str:
    """A short legend label: what varies is kept, the workload description is dropped."""
    hosts = {r.config.hostname for r in data.runs}
    drop = {"mode", "num_images", "blur_radius", "passes", "size", *skip}
    if len(hosts) == 1:
        drop.add("hostname")
    if len({r.config.mode for r in data.runs}) > 1 and "mode" not in skip:
        drop.discard("mode")
    return config.label(skip=drop)


def _variant(config: Config) -> str:
    """The workload and engine of ``config`` where they are not the default blur's."""
    return " ".join(v for v in (config.workload if config.workload not in (None, "blur") else "",
                                config.engine if config.engine not in (None, "exact") else "") if v)


def _with_variant(name: str, config: Config) -> str:
    variant = _variant(config)
    return f"{name} ({variant})" if variant else name


def round_series(runs: Sequence[Run]) -> dict[str, list[tuple[int, float, Run]]]:
    """The lines of ``seq_vs_par``: (round number, seconds, row) per label, one line for each
    workload and engine (a line never joins two of them), the sequential time once a round."""
    rounds: dict[tuple, int] = {}
    for r in runs:  # a round is shared by the executors measured in it
        rounds.setdefault(_round_key(r), len(rounds) + 1)
    series: dict[str, list[tuple[int, float, Run]]] = {}
    seen: set[int] = set()
    for r in runs:
        x = rounds[_round_key(r)]
        if r.seq_s is not None and x not in seen:
            seen.add(x)
            series.setdefault(_with_variant("sequential", r.config), []).append((x, r.seq_s, r))
        if r.par_s is not None:
            name = f"{r.config.executor} p={r.workers}" if r.workers else r.config.executor
            series.setdefault(_with_variant(f"parallel: {name}", r.config), []).append((x, r.par_s, r))
    return series


def _figure() -> tuple[Figure, object]:
    fig = Figure(figsize=_SIZE, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _round_key(r: Run) -> tuple:
    """Rows of one round share its sequential time: same file, run, round and workload."""
    if not r.round:
        return (r.source, r.index)
    return (r.source, r.run_id, r.round, replace(r.config, executor="", workers=None))


def seq_vs_par(data: ReportData) -> Figure | str:
    runs = [r for r in data.runs if r.seq_s is not None or r.par_s is not None]
    if not runs:
        return "no row has seq_s or par_s"
    fig, ax = _figure()
    series = round_series(runs)
    variants = sorted({_variant(r.config) for pts in series.values() for _, _, r in pts})
    for label, pts in sorted(series.items()):
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        color = f"C{variants.index(_variant(pts[0][2].config)) % 10}"  # one colour per workload/engine
        if label.startswith("sequential"):
            ax.plot(xs, ys, "-o", color=color, ms=4, label=label)
        else:
            ax.plot(xs, ys, "o", mfc="none", color=color, ms=5, label=label)
    unclean = [(x, y) for label, pts in series.items() if not label.startswith("sequential")
               for x, y, r in pts if not r.clean]
    if unclean:
        ax.plot(*zip(*unclean, strict=True), "x", color="r", ms=7, label="unclean (left out)")
    ax.set_xlabel("round (in file order)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("seconds")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Sequential vs parallel time per round")
    return fig


def throughput(data: ReportData) -> Figure | str:
    """Images per second, sequential and parallel, per executor and workload/engine: over
    the rounds each group's figures use (``figures.headline``: clean and quiet)."""
    series: dict[str, list[float]] = {}
    for g in data.groups:
        for r in g.runs:
            if r.seq_throughput:
                series.setdefault(_with_variant("sequential", r.config), []).append(r.seq_throughput)
            if r.par_throughput:
                series.setdefault(_with_variant(r.config.executor, r.config), []).append(r.par_throughput)
    if not series:
        return "no throughput (num_images with seq_s/par_s) in the rows"
    fig, ax = _figure()
    names = sorted(series, key=lambda n: (n.split(" ", 1)[1:] or [""], n.split(" ")[0] != "sequential", n))
    med = [statistics.median(series[n]) for n in names]
    lo = [m - min(series[n]) for m, n in zip(med, names, strict=True)]
    hi = [max(series[n]) - m for m, n in zip(med, names, strict=True)]
    colors = ["0.5" if n.startswith("sequential") else "C0" for n in names]
    ax.bar(names, med, yerr=[lo, hi], capsize=4, color=colors)
    ax.tick_params(axis="x", labelrotation=20, labelsize=7)
    ax.set_ylabel("images / s (median, bars: min–max)")
    ax.set_title("Throughput per executor (clean, quiet rounds of each configuration)")
    return fig


def speedup_vs_workers(data: ReportData) -> Figure | str:
    sweeps = data.sweeps
    if not sweeps:
        return "no configuration was measured at two or more worker counts"
    fig, ax = _figure()
    pmax = max(p.workers for s in sweeps for p in s.points)
    for i, s in enumerate(sweeps):
        color = f"C{i % 10}"
        label = _legend(data, s.config, "workers")
        ps = [r.workers for r in s.runs if r.speedup]
        ax.plot(ps, [r.speedup for r in s.runs if r.speedup], "o", color=color, alpha=0.5, ms=4)
        ax.plot(
            [p.workers for p in s.points],
            [p.speedup for p in s.points],
            "-",
            color=color,
            label=f"{label} (median)",
        )
        if s.fit is not None and s.seq_median:
            grid = np.linspace(1, max(pmax, 2), 100)
            ax.plot(
                grid,
                [s.seq_median / s.fit.time(p) for p in grid],
                "--",
                color=color,
                label=f"Amdahl f={s.fit.f:.3f}",
            )
    grid = np.linspace(1, max(pmax, 2), 2)
    ax.plot(grid, grid, ":", color="k", label="ideal S = p")
    ceilings = [s.ceiling for s in sweeps if s.ceiling]
    if ceilings:
        ax.axhline(
            statistics.median(ceilings),
            color="r",
            lw=1,
            label=f"hardware ceiling {statistics.median(ceilings):.2f}x",
        )
    ax.set_xlabel("workers p")
    ax.set_ylabel("speedup over sequential")
    ax.set_xticks(range(1, pmax + 1))
    ax.legend(fontsize=7)
    ax.set_title("Measured speedup, fitted Amdahl curve, ideal and ceiling")
    return fig


def efficiency_vs_workers(data: ReportData) -> Figure | str:
    if not data.sweeps:
        return "no configuration was measured at two or more worker counts"
    fig, ax = _figure()
    for i, s in enumerate(data.sweeps):
        ax.plot(
            [p.workers for p in s.points],
            [p.efficiency for p in s.points],
            "-o",
            color=f"C{i % 10}",
            label=_legend(data, s.config, "workers"),
        )
    ax.axhline(1.0, color="k", ls=":", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("workers p")
    ax.set_ylabel("efficiency S/p (median)")
    ax.set_ylim(0, 1.15)
    ax.legend(fontsize=7)
    ax.set_title("Efficiency vs workers")
    return fig


def karp_flatt_vs_workers(data: ReportData) -> Figure | str:
    sweeps = [s for s in data.sweeps if any(p.karp_flatt is not None for p in s.points)]
    if not sweeps:
        return "no sweep has a worker count above 1"
    fig, ax = _figure()
    for i, s in enumerate(sweeps):
        pts = [(p.workers, p.karp_flatt) for p in s.points if p.karp_flatt is not None]
        tag = " (growing)" if s.trend.growing else ""
        ax.plot(
            *zip(*pts, strict=True),
            "-o",
            color=f"C{i % 10}",
            label=_legend(data, s.config, "workers") + tag,
        )
    for study in A.STUDY_FIGURES:
        ax.axhline(study.serial_fraction, color="0.6", ls=":", lw=1)
        ax.annotate(
            f"study phase {study.phase}",
            (ax.get_xlim()[0], study.serial_fraction),
            fontsize=7,
            color="0.4",
            va="bottom",
        )
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("workers p")
    ax.set_ylabel("Karp-Flatt serial fraction e")
    ax.legend(fontsize=7)
    ax.set_title("Karp-Flatt per worker count")
    return fig


def stage_breakdown(data: ReportData) -> Figure | str:
    bars = []
    for g in data.groups:
        sums = {k: [r.stage(k) for r in g.runs if r.stage(k) is not None] for k in STAGES}
        if not any(sums.values()):
            continue
        med = {k: statistics.median(v) if v else 0.0 for k, v in sums.items()}
        total = sum(med.values())
        if total > 0:
            label = _legend(data, g.config)
            bars.append((label, {k: v / total for k, v in med.items()}))
    if not bars:
        return "no stage timings (read_s ... idle_s) in the rows"
    fig = Figure(figsize=(7.0, 1.6 + 0.28 * len(bars)), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left = np.zeros(len(bars))
    for i, k in enumerate(STAGES):
        vals = np.array([b[1][k] for b in bars])
        ax.barh([b[0] for b in bars], vals, left=left, color=f"C{i}", label=k.removesuffix("_s"))
        left += vals
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("share of worker time (medians over trials)")
    ax.set_xlim(0, 1)
    ax.legend(
        fontsize=7,
        ncols=6,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.35 if len(bars) < 4 else -0.1),
    )
    ax.set_title("Stage breakdown of the parallel run")
    return fig


def speedup_vs_batch(data: ReportData) -> Figure | str:
    lines: dict[str, dict[int, float]] = {}
    for g in data.groups:
        if g.speedup and g.config.batch_size is not None and g.config.mode != "scale-weak":
            label = _legend(data, g.config, "batch_size")
            lines.setdefault(label, {})[g.config.batch_size] = g.speedup.median
    lines = {k: v for k, v in lines.items() if len(v) >= 2}
    if not lines:
        return "no configuration was measured at two or more batch sizes"
    fig, ax = _figure()
    for i, (label, pts) in enumerate(sorted(lines.items())):
        xs = sorted(pts)
        ax.plot(xs, [pts[x] for x in xs], "-o", color=f"C{i % 10}", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (images per task)")
    ax.set_ylabel("median speedup")
    ax.legend(fontsize=7)
    ax.set_title("Speedup vs batch size")
    return fig


def weak_scaling(data: ReportData) -> Figure | str:
    if not data.weak:
        return "no scale-weak rows"
    fig, ax = _figure()
    pmax = max(max(w.workers) for w in data.weak)
    for i, w in enumerate(data.weak):
        color = f"C{i % 10}"
        ax.plot(
            w.workers,
            w.scaled,
            "o",
            color=color,
            label=_legend(data, w.config, "workers"),
        )
        if w.fit is not None:
            grid = np.linspace(1, max(pmax, 2), 50)
            ax.plot(
                grid,
                [w.fit.speedup(p) for p in grid],
                "--",
                color=color,
                label=f"Gustafson f_s={w.fit.f:.3f}",
            )
    ax.plot([1, max(pmax, 2)], [1, max(pmax, 2)], ":", color="k", label="ideal")
    ax.set_xlabel("workers p (problem grown with p)")
    ax.set_ylabel("scaled speedup p·T1/Tp")
    ax.legend(fontsize=7)
    ax.set_title("Weak scaling")
    return fig


def worker_timeline(data: ReportData) -> Figure | str:
    """Every task of the last measured round, one lane per worker, one block per leg."""
    if not data.timelines:
        return "no task timeline (the -tasks.csv a benchmark writes beside its results CSV)"
    lanes = [(t, lane) for t in data.timelines for lane in t.lanes]
    fig = Figure(figsize=(_SIZE[0], max(2.0, 0.35 * len(lanes) + 1.2)), dpi=_DPI,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colors = {t.executor: f"C{i}" for i, t in enumerate(data.timelines)}
    labels = []
    for y, (t, lane) in enumerate(lanes):
        bars = [(s, max(e - s, 1e-4)) for s, e, _ in lane.tasks]
        ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=colors[t.executor],
                       edgecolors="white", linewidth=0.5)
        ax.plot([t.wall_s], [y], "|", color="k", ms=8)
        labels.append(f"{t.executor} {lane.worker.rsplit(':', 1)[-1]}")
    ax.set_yticks(range(len(lanes)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds after the leg started (| marks its end)")
    t0 = data.timelines[0]
    ax.set_title(f"Worker timeline: {t0.workload} ({t0.engine}), run {t0.run_id} round {t0.round}")
    return fig


#: Each figure: file name, title (drawn on it too), a caption that says how to read it, builder.
BUILDERS: tuple[tuple[str, str, str, Callable[[ReportData], Figure | str]], ...] = (
    ("seq_vs_par", "Sequential vs parallel time per round",
     "Each round's wall time in file order: filled dots joined for the sequential run, open "
     "dots for the parallel one, one colour per workload and engine; crosses mark rounds left "
     "out as unclean.", seq_vs_par),
    ("throughput", "Throughput per executor",
     "Median images per second of each executor, workload and engine; the bars span the "
     "rounds' minimum to maximum.", throughput),
    ("speedup_vs_workers", "Speedup vs workers with the Amdahl fit",
     "Dots are rounds, solid lines their medians, dashed lines the fitted curve; the dotted "
     "diagonal is perfect scaling.", speedup_vs_workers),
    ("efficiency_vs_workers", "Efficiency vs workers",
     "Median speedup divided by the workers; 1.0 is perfect scaling.", efficiency_vs_workers),
    ("karp_flatt_vs_workers", "Karp-Flatt vs workers",
     "The serial fraction measured at each worker count; grey lines are the original study's.",
     karp_flatt_vs_workers),
    ("stage_breakdown", "Stage breakdown",
     "Share of the workers' time in each stage, medians over the trials of each configuration.",
     stage_breakdown),
    ("speedup_vs_batch", "Speedup vs batch size",
     "Median speedup at each batch size, one line per configuration.", speedup_vs_batch),
    ("weak_scaling", "Weak scaling",
     "Scaled speedup with the problem grown with the workers, and the Gustafson fit.", weak_scaling),
    ("worker_timeline", "Where each worker's time went",
     "The last measured round's tasks, one lane per worker; gaps are idle time.", worker_timeline),
)


def render_plots(data: ReportData, out_dir: Path) -> tuple[Plot, ...]:
    """Write every plot that has data as ``out_dir/<name>.png``; list the others as skipped
    (and remove a skipped plot's figure left by an earlier report in this folder of ours)."""
    out = []
    for name, title, caption, build in BUILDERS:
        fig = build(data)
        path = out_dir / f"{name}.png"
        if isinstance(fig, str):
            path.unlink(missing_ok=True)
            out.append(Plot(name, title, None, fig, caption))
            continue
        buf = io.BytesIO()
        # no Software tag: keeps the PNG free of matplotlib's URL
        fig.savefig(buf, format="png", metadata={"Software": None})
        write_atomic(path, buf.getvalue(), durable=False)
        out.append(Plot(name, title, path, caption=caption))
    return tuple(out)
