"""The basic metrics against known values from the original study."""

import pytest

from parablur.analysis import Spread, efficiency, karp_flatt, speedup


def test_study_figures():
    assert karp_flatt(4.52, 8) == pytest.approx(0.110, abs=5e-4)
    assert efficiency(4.52, 8) == pytest.approx(0.565)
    assert karp_flatt(3.57, 8) == pytest.approx(0.177, abs=5e-4)


def test_speedup_and_edges():
    assert speedup(10.0, 4.0) == pytest.approx(2.5)
    assert karp_flatt(1.0, 1) is None
    assert karp_flatt(2.0, 2) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        speedup(1.0, 0.0)


def test_spread():
    s = Spread.of([3.0, 1.0, 2.0])
    assert (s.median, s.minimum, s.maximum, s.n) == (2.0, 1.0, 3.0, 3)
