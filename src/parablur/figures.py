"""Results rows -> typed runs, comparable configurations, and every figure computed from them.

One place for each number that ParaBlur shows: ``bench`` and ``scale`` compute
their medians and fits here from the rows they append to the results CSV, and
the report computes its own here from the same rows read back, so the CLI, the
summary JSON and the report agree. Rows are taken as the CSV stores them
(strings); ``from_rows`` turns freshly built rows into that form first.

Older CSVs lack columns; a missing value is None and whatever can be derived
(speedup from the two times, efficiency from speedup and workers, Karp-Flatt,
throughput, cleanliness from ``identical`` and ``failed``) is derived.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

from . import analysis as A
from .results import QUALITY_COLUMNS, cell

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


def _bool(value: str | None) -> bool | None:
    text = (value or "").strip().lower()
    return {"true": True, "false": False}.get(text)


def _text(value: str | None) -> str | None:
    return (value or "").strip() or None


def fmt(value: object, digits: int = 3) -> str:
    """A table cell: blanks as a dash, floats to ``digits`` significant decimals."""
    if value is None or value == "":
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# Kept apart in the grouping, too long for a table cell.
_UNSHOWN = frozenset({"workload_params"})


@dataclass(frozen=True, order=True)
class Config:
    """What makes runs comparable: rows sharing all of these are trials of one configuration.

    Every parameter that changes the measurement is here; None means the row
    did not record it (an older CSV), which is kept apart from any recorded value.
    """

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
    threads_per_worker: int | None = None
    transfer: str | None = None
    include_startup: bool | None = None
    cluster: str | None = None
    overlap_io: bool | None = None
    workload: str | None = None
    engine: str | None = None
    workload_params: str | None = None  # JSON, as the CSV records it

    @staticmethod
    def headers() -> tuple[str, ...]:
        return tuple(f.name for f in fields(Config) if f.name not in _UNSHOWN)

    def cells(self) -> tuple[str, ...]:
        return tuple(
            fmt(getattr(self, f.name), 1) if f.name == "blur_radius" else fmt(getattr(self, f.name))
            for f in fields(Config) if f.name not in _UNSHOWN
        )

    def label(self, *, skip: Iterable[str] = ()) -> str:
        """A short name; the settings that usually stay at their default show only when set."""
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
        if self.threads_per_worker not in (None, 1):
            parts.append(f"threads={self.threads_per_worker}")
        if self.transfer not in (None, "paths"):
            parts.append(f"transfer={self.transfer}")
        if self.include_startup:
            parts.append("+startup")
        if self.overlap_io:
            parts.append("overlap-io")
        if self.workload not in (None, "blur"):
            parts.append(f"workload={self.workload}")
        if self.engine not in (None, "exact"):
            parts.append(f"engine={self.engine}")
        if self.cluster not in (None, "local"):
            parts.append(f"cluster={self.cluster}")
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
    """One row: one measured round of one parallel executor, with derived metrics filled in.

    ``clean`` is False for a round with a failed image or a mismatch: such a
    round is shown but left out of every median and fit. ``noisy`` is True for a
    round during which other programs took cores the benchmark used
    (``parablur.noise``): it is left out too, unless no round was quiet.
    """

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
    clean: bool = True
    noisy: bool = False
    psnr_db: float | None = None  # a non-exact engine against exact, on the round's sample
    max_abs_diff: float | None = None
    seq_frame_rate: float | None = None  # frames/s (video clips among the inputs)
    par_frame_rate: float | None = None
    seq_per_core: float | None = None  # images/s per core (analysis.images_per_core)
    par_per_core: float | None = None
    # The workload's scores the CSV keeps (results.QUALITY_COLUMNS: recall, by height band, ...).
    quality: tuple[tuple[str, float | None], ...] = ()

    @property
    def workers(self) -> int | None:
        return self.config.workers

    @property
    def vs_ceiling(self) -> float | None:
        """The round's speedup as a share of the hardware ceiling measured with it."""
        return self.speedup / self.ceiling if self.speedup and self.ceiling else None

    def stage(self, name: str) -> float | None:
        return dict(self.stages).get(name)

    def score(self, name: str) -> float | None:
        """The workload's score ``name`` (a column of ``results.QUALITY_COLUMNS``), or None."""
        return dict(self.quality).get(name)


def _is_clean(row: Mapping[str, str]) -> bool:
    """The row's ``clean`` column; without it, no mismatch and no failed image."""
    clean = _bool(row.get("clean"))
    if clean is not None:
        return clean
    return _bool(row.get("identical")) is not False and not _int(row.get("failed"))


# The configuration's columns after mode, hostname and executor, with their parsers.
_CONFIG_COLUMNS = {
    "num_images": _int, "width": _int, "height": _int, "blur_radius": _float, "passes": _int,
    "batch_size": _int, "workers": _int, "threads_per_worker": _int, "transfer": _text,
    "include_startup": _bool, "cluster": _text, "overlap_io": _bool, "workload": _text,
    "engine": _text, "workload_params": _text,
}


def to_run(row: Mapping[str, str], source: str, index: int) -> Run:
    """Parse one CSV row, deriving what an older format left out."""
    g = row.get
    config = Config(
        mode=(g("mode") or "").strip() or "bench",
        hostname=(g("hostname") or "").strip() or "unknown",
        executor=(g("executor") or "").strip() or "unknown",
        **{name: parse(g(name)) for name, parse in _CONFIG_COLUMNS.items()},
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
        clean=_is_clean(row),
        noisy=bool(_bool(row.get("noisy"))),
        psnr_db=_float(g("psnr_db")),
        max_abs_diff=_float(g("max_abs_diff")),
        seq_frame_rate=_float(g("seq_frame_rate")),
        par_frame_rate=_float(g("par_frame_rate")),
        seq_per_core=A.images_per_core(seq_tp, 1),
        par_per_core=A.images_per_core(par_tp, p),
        quality=tuple((k, _float(g(k))) for k in QUALITY_COLUMNS),
    )


def to_runs(rows: Iterable[Mapping[str, str]], source: str = "") -> tuple[Run, ...]:
    """Every row of one source (as ``results.read_rows`` gives them), typed."""
    return tuple(to_run(row, source, i) for i, row in enumerate(rows))


def from_rows(rows: Iterable[Mapping[str, object]], source: str = "") -> tuple[Run, ...]:
    """Rows just appended to the results CSV, typed exactly as the CSV will give them back."""
    return to_runs(({k: cell(v) for k, v in row.items()} for row in rows), source)


def values(runs: Iterable[Run], attr: str) -> list[float]:
    return [v for v in (getattr(r, attr) for r in runs) if v is not None]


def _median(vals: Sequence[float]) -> float | None:
    return statistics.median(vals) if vals else None


def headline(runs: Sequence[Run]) -> tuple[tuple[Run, ...], int, int, bool]:
    """The runs a figure is computed from: the clean, quiet ones (the clean noisy ones when
    none was quiet); with how many were left out as unclean, how many as noisy, and
    whether the figure is over noisy rounds."""
    clean = tuple(r for r in runs if r.clean)
    quiet = tuple(r for r in clean if not r.noisy)
    use = quiet or clean
    return use, len(runs) - len(clean), len(clean) - len(use), bool(clean) and not quiet


@dataclass(frozen=True)
class Group:
    """The trials of one configuration and their statistics, over its clean, quiet rounds.

    ``runs`` are those trials; ``left_out`` counts the unclean rounds (a failed
    image or a mismatch) and ``noisy_left_out`` the noisy ones that were recorded
    but kept out of every figure; ``noisy`` is True when no clean round was quiet
    and the figures are the noisy rounds'.
    """

    config: Config
    runs: tuple[Run, ...]
    left_out: int
    speedup: A.GroupStats | None
    seq_s: A.GroupStats | None
    par_s: A.GroupStats | None
    noisy_left_out: int = 0
    noisy: bool = False

    @property
    def vs_ceiling(self) -> float | None:
        """Median of each round's speedup over the ceiling measured with it."""
        return _median(values(self.runs, "vs_ceiling"))

    @property
    def efficiency(self) -> float | None:
        p = self.config.workers
        return A.efficiency(self.speedup.median, p) if self.speedup and p else None

    @property
    def karp_flatt(self) -> float | None:
        """Karp-Flatt of the median speedup; None over noisy rounds (it would measure their load)."""
        p = self.config.workers
        return A.karp_flatt(self.speedup.median, p) if self.speedup and p and not self.noisy else None

    def median(self, attr: str) -> float | None:
        return _median(values(self.runs, attr))

    def score(self, name: str) -> float | None:
        """Median over the trials of the workload's score ``name`` (``Run.score``)."""
        return _median([v for v in (r.score(name) for r in self.runs) if v is not None])


def group(config: Config, runs: Sequence[Run]) -> Group:
    """The figures of one configuration's trials (the clean, quiet ones: ``headline``)."""
    use, unclean, noisy, over_noisy = headline(runs)
    sp, seq, par = (values(use, a) for a in ("speedup", "seq_s", "par_s"))
    return Group(
        config,
        use,
        unclean,
        A.group_stats(sp) if sp else None,
        A.group_stats(seq) if seq else None,
        A.group_stats(par) if par else None,
        noisy,
        over_noisy,
    )


def _by(runs: Iterable[Run], key) -> dict[Config, list[Run]]:
    out: dict[Config, list[Run]] = {}
    for r in runs:
        out.setdefault(key(r.config), []).append(r)
    return {c: out[c] for c in sorted(out, key=Config.sort_key)}


def groups(runs: Iterable[Run]) -> tuple[Group, ...]:
    """One group per configuration, in configuration order."""
    return tuple(group(c, rs) for c, rs in _by(runs, lambda c: c).items())


def _noise_warning(label: str, fit: str, noisy_left_out: int, over_noisy: bool) -> str | None:
    """What a scaling fit did with noisy rounds (``fit_rows``), else None."""
    if over_noisy:
        return (f"{label}: no quiet rounds at two worker counts, so the {fit} fit is over "
                "noisy rounds: its f measures other programs' load, not a serial fraction; "
                "rerun on a quiet machine")
    n = noisy_left_out
    if n:
        return (f"{label}: {n} noisy round{'s' if n > 1 else ''} (other programs took cores) "
                f"left out of the {fit} fit")
    return None


@dataclass(frozen=True)
class Sweep:
    """A strong-scaling sweep: one configuration but for the worker count, with its Amdahl fit.

    The fit uses each clean round's parallel time rescaled by that round's own
    sequential time (par_s * median(seq_s) / seq_s), which cancels the machine's
    drift between rounds; raw par_s when a row lacks seq_s. ``left_out`` counts
    the unclean rounds kept out of it.
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
    left_out: int = 0
    noisy_left_out: int = 0
    noisy: bool = False  # no quiet rounds at two worker counts: fitted over noisy ones

    @property
    def noise_warning(self) -> str | None:
        """What the fit did with noisy rounds (other programs took cores), else None."""
        return _noise_warning(self.config.label(skip=["workers"]), "Amdahl", self.noisy_left_out,
                              self.noisy)

    @property
    def overhead_warning(self) -> str | None:
        """The warning shown when Karp-Flatt grows with the pool, else None."""
        if not self.trend.growing:
            return None
        return f"{self.config.label(skip=['workers'])}: {self.trend.message}"


@dataclass(frozen=True)
class FitRows:
    """The rounds a scaling fit (Amdahl's or Gustafson's) is computed from, and what was left out.

    ``runs`` are the clean rounds with a worker count and a parallel time; of them, the
    quiet ones when quiet rounds were measured at two worker counts or more, else all of
    them (``noisy`` is then True if any was noisy: the fit is over noisy rounds).
    ``left_out`` counts the unclean rounds left out, ``noisy_left_out`` the noisy ones.
    """

    runs: tuple[Run, ...]
    left_out: int
    noisy_left_out: int
    noisy: bool


def fit_rows(runs: Iterable[Run]) -> FitRows:
    """The one selection every scaling fit uses: strong (``sweeps``) and weak (``weak_sweeps``)."""
    usable = [r for r in runs if r.workers and r.par_s and r.par_s > 0]
    clean = [r for r in usable if r.clean]
    quiet = [r for r in clean if not r.noisy]
    if len({r.workers for r in quiet}) >= 2:
        return FitRows(tuple(quiet), len(usable) - len(clean), len(clean) - len(quiet), False)
    return FitRows(tuple(clean), len(usable) - len(clean), 0, len(quiet) < len(clean))


def _sweep(config: Config, runs: Sequence[Run]) -> Sweep | None:
    chosen = fit_rows(runs)
    clean = list(chosen.runs)
    if len({r.workers for r in clean}) < 2:
        return None
    seqs = [r.seq_s for r in clean if r.seq_s]
    corrected = len(seqs) == len(clean)
    ref = statistics.median(seqs) if seqs else None
    times = [r.par_s * ref / r.seq_s if corrected else r.par_s for r in clean]
    ps = [r.workers for r in clean]
    fit, note = None, ""
    try:
        fit = A.fit_amdahl(ps, times)
    except ValueError as exc:
        note = str(exc)
    with_s = [r for r in clean if r.speedup]
    points = A.scaling_points([r.workers for r in with_s], [r.speedup for r in with_s])
    trend = A.karp_flatt_trend([r.workers for r in with_s], [r.speedup for r in with_s])
    return Sweep(
        config,
        tuple(clean),
        points,
        fit,
        note,
        trend,
        ref,
        _median(values(clean, "ceiling")),
        corrected,
        chosen.left_out,
        chosen.noisy_left_out,
        chosen.noisy,
    )


def sweeps(runs: Iterable[Run]) -> tuple[Sweep, ...]:
    """Every strong-scaling sweep (rows not in ``scale-weak`` mode) over two or more worker counts."""
    strong = (r for r in runs if r.config.mode != "scale-weak")
    found = (_sweep(c, rs) for c, rs in _by(strong, lambda c: replace(c, workers=None)).items())
    return tuple(s for s in found if s is not None)


@dataclass(frozen=True)
class WeakSweep:
    """A weak-scaling sweep (problem grown with p): measured scaled speedups and Gustafson's fit.

    Its rounds are chosen as a strong sweep's are (``fit_rows``): the clean ones, and of
    them the quiet ones when quiet rounds were measured at two worker counts.
    """

    config: Config  # workers and num_images are None
    workers: tuple[int, ...]
    scaled: tuple[float, ...]
    basis: str
    fit: A.GustafsonFit | None
    left_out: int = 0
    noisy_left_out: int = 0
    noisy: bool = False  # no quiet rounds at two worker counts: fitted over noisy ones

    @property
    def noise_warning(self) -> str | None:
        """What the fit did with noisy rounds (other programs took cores), else None."""
        return _noise_warning(self.config.label(skip=["workers", "num_images"]), "Gustafson",
                              self.noisy_left_out, self.noisy)


def _weak(config: Config, runs: Sequence[Run]) -> WeakSweep | None:
    chosen = fit_rows(runs)
    usable = chosen.runs
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
    return WeakSweep(config, tuple(ws), tuple(ss), basis, fit, chosen.left_out,
                     chosen.noisy_left_out, chosen.noisy)


def _weak_key(config: Config) -> Config:
    return replace(config, workers=None, num_images=None)


def weak_sweeps(runs: Iterable[Run]) -> tuple[WeakSweep, ...]:
    """Every weak-scaling sweep (``scale-weak`` rows), over the worker counts."""
    weak = (r for r in runs if r.config.mode == "scale-weak")
    found = (_weak(c, rs) for c, rs in _by(weak, _weak_key).items())
    return tuple(w for w in found if w is not None)


# -- where each worker's time went: the task timeline ----------------------------------


@dataclass(frozen=True)
class Lane:
    """One worker's tasks in one leg of a round: (start s, end s, images) after the leg began."""

    worker: str
    tasks: tuple[tuple[float, float, int], ...]


@dataclass(frozen=True)
class LegTimeline:
    """One leg of a round (an executor on the round's images), task by task, worker by worker.

    ``busy`` is the share of the workers' time inside a task; ``gaps_s`` the worker-seconds
    idle between two tasks of one worker (scheduling, waiting for the next batch);
    ``tail_s`` the worker-seconds after a worker's last task until the leg's last one ended
    (the tail: too few batches left to keep everyone busy); ``straggler`` the longest task
    over the median one.
    """

    executor: str
    run_id: str
    round: str
    batch_size: int | None
    lanes: tuple[Lane, ...]
    wall_s: float
    busy: float
    gaps_s: float
    tail_s: float
    straggler: float | None
    engine: str = ""
    workload: str = ""


def timeline(rows: Sequence[Mapping[str, str]], executor: str, run_id: str, round_: str
             ) -> LegTimeline | None:
    """The timeline of one leg from the task rows (``results.TASK_COLUMNS``), or None."""
    mine = [r for r in rows if r.get("executor") == executor and r.get("run_id") == run_id
            and r.get("round") == round_]
    spans = [(r.get("worker") or "?", _float(r.get("start_s")), _float(r.get("end_s")),
              _int(r.get("images")) or 0) for r in mine]
    spans = [(w, s, e, n) for w, s, e, n in spans if s is not None and e is not None and e >= s]
    if not spans:
        return None
    t0 = min(s for _, s, _, _ in spans)
    lanes: dict[str, list[tuple[float, float, int]]] = {}
    for w, s, e, n in spans:
        lanes.setdefault(w, []).append((s - t0, e - t0, n))
    wall = max(e for t in lanes.values() for _, e, _ in t)
    gaps = tail = busy = 0.0
    for tasks in lanes.values():
        tasks.sort()
        busy += sum(e - s for s, e, _ in tasks)
        gaps += sum(max(b[0] - a[1], 0.0) for a, b in zip(tasks, tasks[1:], strict=False))
        tail += wall - tasks[-1][1]
    durations = [e - s for t in lanes.values() for s, e, _ in t]
    med = statistics.median(durations)
    return LegTimeline(
        executor, run_id, round_, _int(mine[0].get("batch_size")),
        tuple(Lane(w, tuple(t)) for w, t in sorted(lanes.items())), wall,
        busy / (wall * len(lanes)) if wall > 0 else 0.0, gaps, tail,
        max(durations) / med if med > 0 else None)


def latest_timelines(rows: Sequence[Mapping[str, str]]) -> tuple[LegTimeline, ...]:
    """Every leg of the last measured round of the last run in the task rows (of the last
    configuration measured in it: the engine and workload of the last row)."""
    if not rows:
        return ()
    last = rows[-1]
    key = ("run_id", "round", "engine", "workload")
    mine = [r for r in rows if all(r.get(k) == last.get(k) for k in key)]
    legs = dict.fromkeys(r.get("executor") or "" for r in mine)
    found = (timeline(mine, leg, last.get("run_id") or "", last.get("round") or "")
             for leg in legs)
    return tuple(replace(t, engine=last.get("engine") or "", workload=last.get("workload") or "")
                 for t in found if t is not None)
