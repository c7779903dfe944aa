"""Analysis against known values: the study's own figures, synthetic Amdahl sweeps, Gustafson."""

from __future__ import annotations

import numpy as np
import pytest

from parablur import analysis as A


def test_study_phase2_karp_flatt_and_efficiency() -> None:
    assert round(A.karp_flatt(4.52, 8), 3) == 0.110
    assert round(A.efficiency(4.52, 8), 3) == 0.565
    assert A.STUDY_PHASE2.workers == 8
    assert A.STUDY_PHASE2.ceiling == pytest.approx(9.09, abs=0.01)


def test_study_phase1_figures_are_consistent() -> None:
    s = A.STUDY_PHASE1
    assert round(A.karp_flatt(s.speedup, s.workers), 3) == s.serial_fraction
    assert round(A.efficiency(s.speedup, s.workers), 3) == s.efficiency


def _amdahl_times(f: float, t1: float, ps: list[int], reps: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    workers, times = [], []
    for p in ps:
        for _ in range(reps):
            workers.append(p)
            times.append(t1 * (f + (1 - f) / p) * rng.lognormal(0.0, noise))
    return workers, times


def test_fit_recovers_f_from_noisy_sweep() -> None:
    workers, times = _amdahl_times(0.1, 40.0, list(range(1, 9)), 3, 0.03, seed=1)
    fit = A.fit_amdahl(workers, times)
    assert abs(fit.f - 0.1) < 0.02
    assert fit.ci_low <= 0.1 <= fit.ci_high
    assert fit.ci_low <= fit.f <= fit.ci_high
    assert fit.ceiling == pytest.approx(1 / fit.f)
    assert fit.t1 == pytest.approx(40.0, rel=0.05)
    assert fit.n_points == 24


def test_fit_is_exact_without_noise_and_deterministic() -> None:
    ps = [1, 2, 4, 8]
    times = [10 * (0.25 + 0.75 / p) for p in ps]
    fit = A.fit_amdahl(ps, times)
    assert fit.f == pytest.approx(0.25)
    assert fit.rss == pytest.approx(0.0, abs=1e-12)
    assert fit.speedup(8) == pytest.approx(A.amdahl_speedup(0.25, 8))
    assert A.fit_amdahl(ps, times) == fit


def test_fit_clamps_to_unit_interval() -> None:
    # times that fall faster than 1/p (superlinear) -> f clamps to 0, no ceiling
    assert A.fit_amdahl([1, 2, 4], [10.0, 4.0, 1.5]).f == 0.0
    assert A.fit_amdahl([1, 2, 4], [10.0, 4.0, 1.5]).ceiling is None
    # times that grow with p -> f clamps to 1
    assert A.fit_amdahl([1, 2, 4], [10.0, 11.0, 12.0]).f == pytest.approx(1.0)


def test_fit_rejects_single_worker_count() -> None:
    with pytest.raises(ValueError, match="two different worker counts"):
        A.fit_amdahl([2, 2], [5.0, 5.1])


def test_growing_overhead_triggers_warning_clean_sweep_does_not() -> None:
    rng = np.random.default_rng(7)
    ps = [p for p in range(1, 9) for _ in range(3)]
    clean_t = [40 * (0.1 + 0.9 / p) * rng.lognormal(0, 0.03) for p in ps]
    clean = A.karp_flatt_trend(ps, [40 / t for t in clean_t])
    assert not clean.growing, clean.message
    # a per-worker coordination cost: T(p) = T1*(f + (1-f)/p) + c*(p-1)
    grow_t = [(40 * (0.05 + 0.95 / p) + 1.2 * (p - 1)) * rng.lognormal(0, 0.03) for p in ps]
    grow = A.karp_flatt_trend(ps, [40 / t for t in grow_t])
    assert grow.growing
    assert "grows with the pool" in grow.message
    assert grow.slope is not None and grow.slope > 0


def test_karp_flatt_trend_needs_points() -> None:
    assert not A.karp_flatt_trend([1, 2], [1.0, 1.8]).growing


def test_scaling_points_per_worker_count() -> None:
    pts = A.scaling_points([2, 1, 2, 2], [1.8, 1.0, 1.9, 1.7])
    assert [p.workers for p in pts] == [1, 2]
    assert pts[0].karp_flatt is None
    assert pts[1].speedup == pytest.approx(1.8)
    assert pts[1].efficiency == pytest.approx(0.9)
    assert pts[1].karp_flatt == pytest.approx(A.karp_flatt(1.8, 2))


def test_gustafson() -> None:
    assert A.gustafson_speedup(0.1, 8) == pytest.approx(7.3)
    assert A.gustafson_speedup(0.0, 4) == 4
    assert A.gustafson_speedup(1.0, 4) == 1
    assert A.scaled_speedup(10.0, 12.5, 4) == pytest.approx(3.2)
    ps = [1, 2, 4, 8]
    fit = A.fit_gustafson(ps, [A.gustafson_speedup(0.2, p) for p in ps])
    assert fit.f == pytest.approx(0.2)
    assert fit.speedup(8) == pytest.approx(6.6)


def test_group_stats_and_noise_rule() -> None:
    calm = A.group_stats([1.90, 1.92, 1.95, 1.93, 1.91])
    assert calm.median == pytest.approx(1.92)
    assert calm.minimum == 1.90 and calm.maximum == 1.95
    assert calm.ci_low is not None and calm.ci_low <= calm.median <= calm.ci_high
    assert not calm.noisy
    wild = A.group_stats([1.0, 1.6, 2.2])
    assert wild.noisy and "IQR/median" in wild.noise_reason
    one = A.group_stats([1.5])
    assert one.ci_low is None and not one.noisy and one.iqr == 0
    with pytest.raises(ValueError):
        A.group_stats([])


def test_spread_kept() -> None:
    assert A.Spread.of([3.0, 1.0, 2.0]) == A.Spread(2.0, 1.0, 3.0, 3)
