"""Pure functions that turn timings into speedup, efficiency, serial fractions and fits.

Everything here is arithmetic on numbers handed in (numpy only, no I/O), so the
benchmark, the ``scale`` command and the report share one implementation.
Bootstrap intervals use a seeded generator, so the same data always gives the
same interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: A group of trials is flagged as noisy when IQR / median exceeds this ...
NOISE_IQR_RATIO = 0.15
#: ... or when the width of the 95% CI of the median, over the median, exceeds this.
NOISE_CI_RATIO = 0.20
#: The fitted rise of Karp-Flatt over a sweep must reach this before it is called growth.
KF_MIN_RISE = 0.02
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 20240601


def speedup(sequential_s: float, parallel_s: float) -> float:
    """How many times faster the parallel run was: T1 / Tp."""
    if parallel_s <= 0:
        raise ValueError(f"parallel time must be > 0, got {parallel_s}")
    return sequential_s / parallel_s


def efficiency(speedup_value: float, workers: int) -> float:
    """Speedup per worker: S / p (1.0 is perfect scaling)."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return speedup_value / workers


def images_per_core(throughput: float | None, workers: int | None) -> float | None:
    """Images per second per core: a leg's throughput over the cores it ran on, one per
    worker slot (a sequential leg: 1; a Dask leg: workers x threads per worker).

    The rate to compare tools and machines by; None when either is unknown.
    """
    return throughput / workers if throughput is not None and workers else None


def karp_flatt(speedup_value: float, workers: int) -> float | None:
    """Karp-Flatt experimentally determined serial fraction e = (1/S - 1/p) / (1 - 1/p).

    Undefined (None) for a single worker.
    """
    if workers <= 1:
        return None
    if speedup_value <= 0:
        raise ValueError(f"speedup must be > 0, got {speedup_value}")
    return (1 / speedup_value - 1 / workers) / (1 - 1 / workers)


@dataclass(frozen=True)
class Spread:
    """Median, minimum and maximum of a set of measurements."""

    median: float
    minimum: float
    maximum: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values to summarize")
        return cls(statistics.median(values), min(values), max(values), len(values))


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class StudyFigure:
    """One phase of the original study's results (8-core laptop), the bar we compare to."""

    phase: int
    num_images: int
    batch_size: int
    workers: int
    speedup: float
    efficiency: float
    serial_fraction: float  # Karp-Flatt from the one median speedup

    @property
    def ceiling(self) -> float:
        """The Amdahl ceiling the study quoted: 1 / serial fraction."""
        return 1 / self.serial_fraction


STUDY_PHASE1 = StudyFigure(1, 20, 1, 8, 3.57, 0.446, 0.177)
STUDY_PHASE2 = StudyFigure(2, 160, 4, 8, 4.52, 0.565, 0.110)
STUDY_FIGURES: tuple[StudyFigure, ...] = (STUDY_PHASE1, STUDY_PHASE2)


# --------------------------------------------------------------------------- trial groups


@dataclass(frozen=True)
class GroupStats:
    """Median, quartiles, range and a 95% CI of the median over the trials of one group.

    ``noisy`` follows the documented rule: IQR / median > ``NOISE_IQR_RATIO`` or
    (CI width) / median > ``NOISE_CI_RATIO``; ``noise_reason`` says which tripped.
    The CI is a percentile bootstrap of the median; with 3 trials it is close to
    [min, max], which is all three points can tell. One trial has no CI (None).
    """

    n: int
    median: float
    q1: float
    q3: float
    minimum: float
    maximum: float
    ci_low: float | None
    ci_high: float | None
    noisy: bool
    noise_reason: str

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_median_ci(
    values: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of the median; None for fewer than 2 values."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    idx = _rng(seed).integers(0, x.size, size=(resamples, x.size))
    medians = np.median(x[idx], axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(medians, [alpha, 1 - alpha])
    return float(lo), float(hi)


def group_stats(
    values: Sequence[float],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> GroupStats:
    """Summarize the trials of one configuration (e.g. its speedups) with a noise verdict."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size == 0:
        raise ValueError("no values to summarize")
    med = float(np.median(x))
    q1, q3 = (float(q) for q in np.quantile(x, [0.25, 0.75]))
    ci = bootstrap_median_ci(x, resamples=resamples, seed=seed)
    reasons = []
    if med > 0:
        if (q3 - q1) / med > NOISE_IQR_RATIO:
            reasons.append(f"IQR/median {(q3 - q1) / med:.2f} > {NOISE_IQR_RATIO}")
        if ci is not None and (ci[1] - ci[0]) / med > NOISE_CI_RATIO:
            reasons.append(f"CI width/median {(ci[1] - ci[0]) / med:.2f} > {NOISE_CI_RATIO}")
    return GroupStats(
        n=int(x.size),
        median=med,
        q1=q1,
        q3=q3,
        minimum=float(x.min()),
        maximum=float(x.max()),
        ci_low=None if ci is None else ci[0],
        ci_high=None if ci is None else ci[1],
        noisy=bool(reasons),
        noise_reason="; ".join(reasons),
    )


# --------------------------------------------------------------------------- per worker count


@dataclass(frozen=True)
class ScalingPoint:
    """Median speedup of all trials at one worker count, with its efficiency and Karp-Flatt."""

    workers: int
    n: int
    speedup: float
    efficiency: float
    karp_flatt: float | None


def scaling_points(workers: Sequence[int], speedups: Sequence[float]) -> tuple[ScalingPoint, ...]:
    """Per worker count (ascending): median speedup, efficiency S/p and Karp-Flatt e."""
    if len(workers) != len(speedups):
        raise ValueError(f"{len(workers)} worker counts but {len(speedups)} speedups")
    by_p: dict[int, list[float]] = {}
    for p, s in zip(workers, speedups, strict=True):
        by_p.setdefault(int(p), []).append(float(s))
    out = []
    for p in sorted(by_p):
        s = statistics.median(by_p[p])
        out.append(ScalingPoint(p, len(by_p[p]), s, efficiency(s, p), karp_flatt(s, p)))
    return tuple(out)


# --------------------------------------------------------------------------- Amdahl fit


@dataclass(frozen=True)
class AmdahlFit:
    """Amdahl's law T(p) = T1 * (f + (1-f)/p) fitted by least squares over a sweep.

    ``f`` is the serial fraction with a bootstrap ``confidence`` interval
    [``ci_low``, ``ci_high``]; ``ceiling`` = 1/f is the speedup no number of
    workers can beat (None when f is 0); ``t1`` the fitted one-worker time;
    ``rss`` the residual sum of squares (s^2) over ``n_points`` points.
    """

    f: float
    ci_low: float
    ci_high: float
    t1: float
    ceiling: float | None
    n_points: int
    rss: float
    confidence: float = 0.95
    resamples: int = DEFAULT_RESAMPLES

    def time(self, workers: float) -> float:
        """The fitted time at ``workers``."""
        return self.t1 * (self.f + (1 - self.f) / workers)

    def speedup(self, workers: float) -> float:
        """The fitted speedup over the fitted one-worker time: 1 / (f + (1-f)/p)."""
        return 1 / (self.f + (1 - self.f) / workers)


def _nnls_amdahl(x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise least squares of t = a + b*x with a, b >= 0 (x = 1/p); arrays shaped (B, n).

    The unconstrained solution is used when both coefficients are non-negative;
    otherwise the better of the two one-coefficient fits (a = 0 or b = 0), which
    is the exact constrained optimum for two coefficients.
    """
    n = x.shape[1]
    sx, st = x.sum(1), t.sum(1)
    sxx, sxt = (x * x).sum(1), (x * t).sum(1)
    det = n * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        b = (n * sxt - sx * st) / det
        a = (st - b * sx) / n
    ok = (det > 1e-12 * np.maximum(n * sxx, 1e-300)) & (a >= 0) & (b >= 0)
    # a = 0: t = b0 * x ; b = 0: t = a0
    with np.errstate(divide="ignore", invalid="ignore"):
        b0 = np.maximum(sxt / sxx, 0.0)
    a0 = np.maximum(st / n, 0.0)
    rss_b = ((t - b0[:, None] * x) ** 2).sum(1)
    rss_a = ((t - a0[:, None]) ** 2).sum(1)
    use_a = rss_a < rss_b
    a_c = np.where(use_a, a0, 0.0)
    b_c = np.where(use_a, 0.0, b0)
    return np.where(ok, a, a_c), np.where(ok, b, b_c)


def fit_amdahl(
    workers: Sequence[float],
    times: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> AmdahlFit:
    """Fit T = a + b/p (a = T1*f, b = T1*(1-f), both >= 0) and bootstrap f's interval.

    f = a / (a + b) lies in [0, 1] by construction. The interval resamples the
    (p, T) points with replacement; resamples with fewer than two distinct
    worker counts cannot identify f and are dropped.
    """
    p = np.asarray(workers, dtype=float)
    t = np.asarray(times, dtype=float)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} worker counts but {t.size} times")
    if np.any(p < 1):
        raise ValueError("worker counts must be >= 1")
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise ValueError("times must be finite and > 0")
    if np.unique(p).size < 2:
        raise ValueError("an Amdahl fit needs at least two different worker counts")
    x = 1 / p
    a, b = _nnls_amdahl(x[None, :], t[None, :])
    a, b = float(a[0]), float(b[0])
    t1 = a + b
    f = a / t1
    rss = float(((t - (a + b * x)) ** 2).sum())

    idx = _rng(seed).integers(0, p.size, size=(resamples, p.size))
    xb, tb = x[idx], t[idx]
    keep = np.ptp(xb, axis=1) > 0
    ab, bb = _nnls_amdahl(xb[keep], tb[keep])
    fb = ab / (ab + bb) if ab.size else np.array([f])
    alpha = (1 - confidence) / 2
    lo, hi = (float(v) for v in np.quantile(fb, [alpha, 1 - alpha]))
    return AmdahlFit(
        f=f,
        ci_low=min(lo, f),
        ci_high=max(hi, f),
        t1=t1,
        ceiling=None if f <= 0 else 1 / f,
        n_points=int(p.size),
        rss=rss,
        confidence=confidence,
        resamples=int(keep.sum()),
    )


def amdahl_speedup(serial_fraction: float, workers: float) -> float:
    """Amdahl's predicted speedup 1 / (f + (1-f)/p)."""
    return 1 / (serial_fraction + (1 - serial_fraction) / workers)


# --------------------------------------------------------------------------- Karp-Flatt trend


@dataclass(frozen=True)
class KarpFlattTrend:
    """Whether Karp-Flatt e grows with the pool: overhead that scales with p, not a serial part.

    ``slope`` is the least-squares slope of e against p over every trial with
    p >= 2, [``slope_low``, ``slope_high``] its 95% bootstrap interval, ``rise``
    the fitted change of e from the smallest to the largest p. ``growing`` is
    True when the whole interval is above zero and ``rise`` >= ``KF_MIN_RISE``.
    """

    slope: float | None
    slope_low: float | None
    slope_high: float | None
    rise: float | None
    growing: bool
    message: str


def karp_flatt_trend(
    workers: Sequence[int],
    speedups: Sequence[float],
    *,
    min_rise: float = KF_MIN_RISE,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> KarpFlattTrend:
    """Test whether the Karp-Flatt serial fraction rises with the worker count beyond noise."""
    pts = [(float(p), karp_flatt(s, int(p))) for p, s in zip(workers, speedups, strict=True)]
    pts = [(p, e) for p, e in pts if e is not None]
    if len(pts) < 3 or len({p for p, _ in pts}) < 2:
        return KarpFlattTrend(
            None, None, None, None, False, "too few points (need 3 over 2+ worker counts > 1)"
        )
    p = np.array([q for q, _ in pts])
    e = np.array([v for _, v in pts])

    def slopes(pp: np.ndarray, ee: np.ndarray) -> np.ndarray:
        pc = pp - pp.mean(1, keepdims=True)
        den = (pc * pc).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (pc * (ee - ee.mean(1, keepdims=True))).sum(1) / den

    slope = float(slopes(p[None, :], e[None, :])[0])
    idx = _rng(seed).integers(0, p.size, size=(resamples, p.size))
    bs = slopes(p[idx], e[idx])
    bs = bs[np.isfinite(bs)]
    lo, hi = (float(v) for v in np.quantile(bs, [0.025, 0.975]))
    rise = slope * float(p.max() - p.min())
    growing = lo > 0 and rise >= min_rise
    if growing:
        msg = (
            f"Karp-Flatt serial fraction grows with the pool (+{rise:.3f} from p={p.min():g} "
            f"to p={p.max():g}; slope 95% CI [{lo:.4f}, {hi:.4f}] per worker): overhead rises "
            "with the worker count, so it is not a fixed serial part and 1/f overstates "
            "the ceiling"
        )
    else:
        msg = f"no growth beyond noise (slope {slope:+.4f}/worker, 95% CI [{lo:.4f}, {hi:.4f}])"
    return KarpFlattTrend(slope, lo, hi, rise, growing, msg)


# --------------------------------------------------------------------------- Gustafson


def gustafson_speedup(serial_fraction: float, workers: float) -> float:
    """Gustafson's scaled speedup S = p - f_s * (p - 1) for a problem grown with p."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers - serial_fraction * (workers - 1)


def scaled_speedup(t1_s: float, tp_s: float, workers: int) -> float:
    """Measured weak-scaling speedup p * T1 / Tp.

    T1 is one worker on the base problem, Tp is p workers on a problem p times larger.
    """
    if tp_s <= 0:
        raise ValueError(f"parallel time must be > 0, got {tp_s}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers * t1_s / tp_s


@dataclass(frozen=True)
class GustafsonFit:
    """Gustafson serial fraction f_s fitted by least squares to measured scaled speedups."""

    f: float
    n_points: int
    rss: float

    def speedup(self, workers: float) -> float:
        return gustafson_speedup(self.f, workers)


def fit_gustafson(workers: Sequence[float], scaled: Sequence[float]) -> GustafsonFit:
    """Fit p - S = f_s * (p - 1) through the origin; f_s clamped to [0, 1]."""
    p = np.asarray(workers, dtype=float)
    s = np.asarray(scaled, dtype=float)
    if p.shape != s.shape or p.size == 0:
        raise ValueError("need matching, non-empty workers and scaled speedups")
    d = p - 1
    den = float((d * d).sum())
    if den == 0:
        raise ValueError("a Gustafson fit needs a worker count above 1")
    f = min(max(float((d * (p - s)).sum()) / den, 0.0), 1.0)
    rss = float(((s - (p - f * d)) ** 2).sum())
    return GustafsonFit(f, int(p.size), rss)
