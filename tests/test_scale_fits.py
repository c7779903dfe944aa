"""scale's fits and flags.

Which rounds the scaling fits use: strong (Amdahl) and weak (Gustafson) leave noisy rounds
out alike (pure functions on synthetic CSV rows whose fits have a known answer); and how
``scale`` takes --workers and --batch-size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cli import closed_port_url

from parablur import figures, results
from parablur.cli import main
from parablur.scaling import ScaleSummary


def _row(mode: str, workers: int, par_s: float, *, noisy: bool = False, clean: bool = True) -> dict:
    return {"mode": mode, "hostname": "h", "executor": "dask", "batch_size": 4, "workers": workers,
            "num_images": 8 * workers if mode == "scale-weak" else 8, "width": 64, "height": 64,
            "seq_s": 10.0 * workers if mode == "scale-weak" else 10.0, "par_s": par_s,
            "clean": clean, "noisy": noisy}


def _weak(rows: list[dict]) -> figures.WeakSweep:
    (sweep,) = figures.weak_sweeps(figures.from_rows(rows))
    return sweep


def test_weak_fit_leaves_noisy_rounds_out_like_the_strong_fit():
    # Perfect weak scaling when quiet: p workers on p times the images take as long as one
    # on one share, so the scaled speedups are exactly 1, 2, 4 and Gustafson's f_s is 0.
    quiet = [_row("scale-weak", p, 10.0) for p in (1, 2, 4)]
    # Another program took a core during one 2-worker round: it took twice as long. Were it
    # fitted, f_s would be 1/11 (p - S = 0, 0, 0, 1 over p - 1 = 0, 1, 3, 1).
    noisy = _row("scale-weak", 2, 20.0, noisy=True)
    unclean = _row("scale-weak", 4, 40.0, clean=False)
    weak = _weak([*quiet, noisy, unclean])
    assert weak.fit is not None and weak.fit.f == pytest.approx(0.0, abs=1e-12)
    assert weak.workers == (1, 2, 4) and weak.scaled == pytest.approx((1.0, 2.0, 4.0))
    assert (weak.left_out, weak.noisy_left_out, weak.noisy) == (1, 1, False)
    assert weak.noise_warning.endswith(
        ": 1 noisy round (other programs took cores) left out of the Gustafson fit")

    # The same rounds as a strong sweep are chosen by the same rule, with the same counts.
    strong_rows = [{**r, "mode": "scale-strong", "num_images": 8} for r in [*quiet, noisy, unclean]]
    (strong,) = figures.sweeps(figures.from_rows(strong_rows))
    assert [r.index for r in strong.runs] == [0, 1, 2]
    assert (strong.left_out, strong.noisy_left_out, strong.noisy) == (1, 1, False)


def test_without_quiet_rounds_at_two_worker_counts_both_fits_are_over_the_noisy_ones():
    rows = [_row("scale-weak", 1, 10.0), _row("scale-weak", 2, 20.0, noisy=True)]
    weak = _weak(rows)
    assert weak.fit is not None and weak.fit.f == pytest.approx(1.0)  # scaled speedup 1 at p = 2
    assert (weak.noisy_left_out, weak.noisy) == (0, True)
    assert "so the Gustafson fit is over noisy rounds" in weak.noise_warning
    chosen = figures.fit_rows(figures.from_rows(rows))
    assert len(chosen.runs) == 2 and chosen.noisy


def test_scale_summary_reports_the_weak_fit_and_its_noise():
    runs = figures.from_rows([*(_row("scale-weak", p, 10.0) for p in (1, 2)),
                              _row("scale-weak", 2, 20.0, noisy=True)])
    summary = ScaleSummary("id", [], figures.sweeps(runs), "r.csv", figures.weak_sweeps(runs))
    gustafson = summary.to_dict()["gustafson"]["dask, batch size 4"]
    assert gustafson["f"] == pytest.approx(0.0, abs=1e-12) and gustafson["noisy_left_out"] == 1
    assert summary.warnings == (
        f"{summary.weak[0].config.label(skip=['workers', 'num_images'])}: 1 noisy round "
        "(other programs took cores) left out of the Gustafson fit",)


# -- scale's --workers and --batch-size: one point of the sweep's axis, or refused --------


def _scale_args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "scale", "--trials", "1", "--warmup", "0", "--num-images", "2", "--width", "48",
        "--height", "32", "--blur-radius", "1", "--executors", "threads", "--no-ceiling",
        "--quiet", "--no-report", "--source-url", closed_port_url(),
        "--input-dir", str(tmp_path / "d"), "--output-dir", str(tmp_path / "p"),
        "--report-csv", str(tmp_path / "s.csv"), *extra,
    ]


@pytest.mark.parametrize("flags", [
    ("--workers", "3", "--workers-list", "1,2"),
    ("--batch-size", "4", "--batch-sizes", "1,2"),
    ("--workers-list", "1", "--batch-size", "auto"),
])
def test_scale_refuses_disagreeing_sweep_flags_before_any_work(tmp_path: Path, capsys, flags):
    assert main(_scale_args(tmp_path, *flags)) == 2
    err = capsys.readouterr().err
    assert err.startswith("parablur scale: error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())  # no dataset fetched, no output, no CSV


def test_scale_sweeps_exactly_the_workers_and_batch_size_it_is_given(tmp_path: Path, capsys):
    # --workers 1 --batch-size 2 is --workers-list 1 --batch-sizes 2: one point, not 1,2,4,8.
    assert main(_scale_args(tmp_path, "--workers", "1", "--batch-size", "2")) == 0
    rows = results.read_rows(tmp_path / "s.csv")
    assert [(r["workers"], r["batch_size"]) for r in rows] == [("1", "2")]
    # both forms that agree are one point too
    assert main(_scale_args(tmp_path, "--workers", "2", "--workers-list", "2",
                            "--batch-size", "1", "--batch-sizes", "1")) == 0
    rows = results.read_rows(tmp_path / "s.csv")
    assert [(r["workers"], r["batch_size"]) for r in rows] == [("1", "2"), ("2", "1")]
