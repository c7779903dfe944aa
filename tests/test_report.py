"""The report built from saved results: figures, HTML, Markdown, old formats, several files."""

from __future__ import annotations

import re
import struct
import zlib
from html import escape as html_escape
from pathlib import Path

import pytest

from parablur.errors import ResultsError
from parablur.report import build_report
from parablur.results import append_rows

FIXTURES = Path(__file__).parent / "fixtures"
V1 = FIXTURES / "results_v1.csv"
OLD = FIXTURES / "results_old.csv"
V1_PLOTS = (
    "seq_vs_par",
    "throughput",
    "speedup_vs_workers",
    "efficiency_vs_workers",
    "karp_flatt_vs_workers",
    "stage_breakdown",
    "speedup_vs_batch",
)


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"{path}: bad CRC in {kind!r}"
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


@pytest.fixture(scope="module")
def v1_report(tmp_path_factory: pytest.TempPathFactory):
    return build_report([V1], tmp_path_factory.mktemp("v1"))


def test_every_expected_png_is_written_and_valid(v1_report) -> None:
    for name in V1_PLOTS:
        path = v1_report.out_dir / f"{name}.png"
        assert path in v1_report.files
        assert_valid_png(path)
    assert [p.name for p in v1_report.skipped] == ["weak_scaling", "worker_timeline"]
    assert v1_report.html.is_file() and v1_report.markdown.is_file()
    assert v1_report.html in v1_report.files and v1_report.markdown in v1_report.files


def test_fit_and_warnings_on_the_fixture(v1_report) -> None:
    fit = v1_report.amdahl
    assert fit is not None and fit.n_points == 9
    assert 0 < fit.ci_low <= fit.f <= fit.ci_high <= 1
    assert len(v1_report.fits) == 3  # strong sweeps at batch 1, 4, 16; bench rows are all p=2
    # p=3 on two cores only adds contention: Karp-Flatt grows with the pool
    assert any("grows with the pool" in w for w in v1_report.warnings)


def test_html_is_self_contained_with_tables_and_fit(v1_report) -> None:
    text = v1_report.html.read_text(encoding="utf-8")
    assert "Runs grouped by configuration" in text
    assert "Karp-Flatt per worker count" in text
    assert "Environment of each run" in text
    assert "study phase 2" in text and "4.52x" in text
    assert f"f = {v1_report.amdahl.f:.3f}" in text
    assert text.count("<table>") >= 4
    assert text.count('src="data:image/png;base64,') == len(V1_PLOTS)
    assert not re.search(r"https?://", text)
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)
    assert "bench-2c" in text and "Xeon" in text
    assert "Weak scaling: no scale-weak rows" in text


def test_markdown_summary(v1_report) -> None:
    text = v1_report.markdown.read_text(encoding="utf-8")
    assert text.startswith("# ParaBlur report")
    assert f"f = {v1_report.amdahl.f:.3f}" in text
    assert "| executor |" in text or "executor" in text
    assert "(speedup_vs_workers.png)" in text


def test_old_format_builds_a_report(tmp_path: Path) -> None:
    result = build_report([OLD], tmp_path)
    assert result.amdahl is None  # one worker count: nothing to fit
    html = result.html.read_text(encoding="utf-8")
    # the row without a speedup gets one from its times: 40.8 / 26.0
    assert "1.569" in html
    assert "Runs grouped by configuration" in html
    for p in result.plots:
        if p.path is not None:
            assert_valid_png(p.path)
    assert {p.name for p in result.plots if p.path} >= {"seq_vs_par", "throughput"}
    assert "No sweep over two or more worker counts" in html


def test_two_csvs_together(tmp_path: Path) -> None:
    result = build_report([V1, OLD], tmp_path)
    html = result.html.read_text(encoding="utf-8")
    assert "results_v1.csv" in html and "results_old.csv" in html
    assert len(result.data.runs) == 33 + 4
    assert result.amdahl is not None


def test_csv_text_is_escaped_and_weak_scaling_is_plotted(tmp_path: Path) -> None:
    csv_path = tmp_path / "weak.csv"
    rows = []
    for rnd in (1, 2):
        for p, t in ((1, 10.0), (2, 10.6), (3, 11.5)):
            rows.append(
                {
                    "mode": "scale-weak",
                    "round": rnd,
                    "executor": "dask",
                    "workers": p,
                    "num_images": 10 * p,
                    "batch_size": 2,
                    "seq_s": 10.0 * p,
                    "par_s": t + 0.1 * rnd,
                    "hostname": "<script>alert(1)</script>",
                    "cpu_model": "A & B <cpu>",
                }
            )
    append_rows(csv_path, rows)
    result = build_report([csv_path], tmp_path / "out")
    html = result.html.read_text(encoding="utf-8")
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "A &amp; B &lt;cpu&gt;" in html
    assert_valid_png(tmp_path / "out" / "weak_scaling.png")
    assert "Weak scaling (Gustafson)" in html
    weak = result.data.weak[0]
    # T1 = median one-worker time 10.15 s; p=3 in round 1: 3 * 10.15 / 11.6
    assert weak.workers == (1, 1, 2, 2, 3, 3)
    assert weak.scaled[4:] == pytest.approx((3 * 10.15 / 11.7, 3 * 10.15 / 11.6))
    assert weak.fit is not None and 0 < weak.fit.f < 0.3


def test_missing_csv_raises_results_error(tmp_path: Path) -> None:
    with pytest.raises(ResultsError):
        build_report([tmp_path / "nope.csv"], tmp_path / "out")


def _row(**over) -> dict:
    row = {"mode": "bench", "round": 1, "executor": "dask", "num_images": 8, "width": 64,
           "height": 64, "batch_size": 2, "workers": 2, "threads_per_worker": 1,
           "blur_radius": 2, "passes": 1, "transfer": "paths", "cluster": "local",
           "include_startup": False, "overlap_io": False, "seq_s": 10.0, "par_s": 5.5,
           "failed": 0, "identical": True, "clean": True, "hostname": "h"}
    row.update(over)
    return row


def test_rows_that_differ_in_any_measured_parameter_are_not_pooled(tmp_path: Path) -> None:
    """Threads per worker, transfer, start-up, cluster and overlapped I/O each change the
    measurement: rows differing only in one of them were pooled into one group."""
    variations = [{}, {"threads_per_worker": 2}, {"transfer": "bytes"}, {"include_startup": True},
                  {"cluster": "tcp://10.0.0.5:8786"}, {"overlap_io": True}]
    csv_path = tmp_path / "r.csv"
    append_rows(csv_path, [_row(**v, par_s=5.0 + i) for i, v in enumerate(variations)])
    data = build_report([csv_path], tmp_path / "out").data
    assert len(data.groups) == len(variations)
    assert sorted(g.speedup.median for g in data.groups) == pytest.approx(
        sorted(10.0 / (5.0 + i) for i in range(len(variations))))
    labels = {g.config.label() for g in data.groups}
    assert len(labels) == len(variations)  # each group is named apart too


def test_unclean_rounds_are_left_out_of_medians_and_fits_and_counted(tmp_path: Path) -> None:
    clean = [_row(mode="scale-strong", round=r, workers=p, seq_s=10.0 + 0.1 * r,
                  par_s=(10.0 + 0.1 * r) * (0.2 + 0.8 / p))
             for r in (1, 2, 3) for p in (1, 2)]
    unclean = [_row(mode="scale-strong", round=4, workers=2, par_s=1.0, identical=False,
                    clean=False),  # a 10x "speedup" from a round whose outputs differ
               _row(mode="scale-strong", round=5, workers=2, par_s=1.5, failed=3, clean=False)]
    only_clean, mixed = tmp_path / "clean.csv", tmp_path / "mixed.csv"
    append_rows(only_clean, clean)
    append_rows(mixed, clean[:3] + unclean + clean[3:])
    want = build_report([only_clean], tmp_path / "a")
    got = build_report([mixed], tmp_path / "b")
    two = next(g for g in got.data.groups if g.config.workers == 2)
    assert two.left_out == 2 and len(two.runs) == 3
    assert two.speedup.median == pytest.approx(1 / 0.6)
    assert two.speedup.maximum < 2  # the unclean 10x and 6.7x rounds are not in it
    assert got.amdahl == want.amdahl and got.amdahl.n_points == 6
    assert got.data.sweeps[0].left_out == 2
    html = got.html.read_text(encoding="utf-8")
    assert "unclean left out" in html and "2 unclean round(s)" in html
    md = got.markdown.read_text(encoding="utf-8")
    assert "2 unclean round(s)" in md


def test_older_rows_without_a_clean_column_are_judged_by_identical_and_failed(
        tmp_path: Path) -> None:
    csv_path = tmp_path / "old.csv"
    csv_path.write_text("timestamp,workers,seq_s,par_s,identical,failed\n"
                        "t,2,10,5,true,0\nt,2,10,1,false,0\nt,2,10,2,true,4\nt,2,10,4,,\n")
    (group,) = build_report([csv_path], tmp_path / "out").data.groups
    assert group.left_out == 2 and group.speedup.median == pytest.approx((2.0 + 2.5) / 2)


def test_the_task_timeline_shows_where_each_workers_time_went(tmp_path):
    """Idle gaps, the tail and stragglers, from task start and end times, for every leg."""
    from parablur import results
    from parablur.figures import latest_timelines
    from parablur.report import build_report

    csv = tmp_path / "r.csv"
    results.append_rows(csv, [{"run_id": "r1", "round": 1, "executor": "dask", "seq_s": 2.0,
                               "par_s": 1.2, "workers": 2, "clean": True}])
    tasks = [  # worker a: two tasks with a 0.1 s gap; worker b: one task, then idle (the tail)
        ("dask", "h:1", 0.0, 0.5), ("dask", "h:1", 0.6, 1.2), ("dask", "h:2", 0.0, 0.4),
        ("sequential", "h:0", 0.0, 1.0), ("sequential", "h:0", 1.0, 2.0),
    ]
    results.append_tasks(csv, [{"run_id": "r1", "round": 1, "executor": e, "workload": "blur",
                                "engine": "exact", "batch_size": 4, "workers": 2, "worker": w,
                                "start_s": s + 100, "end_s": t + 100, "images": 4}
                               for e, w, s, t in tasks])
    rows = results.read_rows(results.tasks_path(csv))
    dask, seq = latest_timelines(rows)
    assert (dask.executor, seq.executor) == ("dask", "sequential")
    assert dask.wall_s == pytest.approx(1.2) and len(dask.lanes) == 2
    assert dask.gaps_s == pytest.approx(0.1) and dask.tail_s == pytest.approx(0.8)
    assert dask.busy == pytest.approx((0.5 + 0.6 + 0.4) / (2 * 1.2))
    assert dask.straggler == pytest.approx(0.6 / 0.5)
    assert seq.busy == pytest.approx(1.0) and seq.gaps_s == 0 and seq.tail_s == 0
    report = build_report([csv], tmp_path / "rep")
    assert (tmp_path / "rep" / "worker_timeline.png").is_file()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Where each worker&#x27;s time went" in html or "Where each worker's time went" in html
    assert any(p.name == "worker_timeline" and p.path for p in report.plots)


def test_no_serial_fraction_is_shown_for_a_group_measured_only_in_noisy_rounds(tmp_path: Path) -> None:
    """Before: the study table gave Karp-Flatt 0.987 ("ceiling 1.0x") for the fast engine's
    rounds, all taken while other programs held a core; bench itself said n/a."""
    csv_path = tmp_path / "r.csv"
    all_noisy = [_row(round=r, par_s=10.0 / s, noisy=True) for r, s in ((1, 1.01), (2, 0.96))]
    one_noisy = [_row(round=r, batch_size=4, par_s=10.0 / s, noisy=r == 2)
                 for r, s in ((1, 1.9), (2, 1.2), (3, 1.8))]
    append_rows(csv_path, all_noisy + one_noisy)
    result = build_report([csv_path], tmp_path / "out")
    noisy, quiet = sorted(result.data.groups, key=lambda g: g.config.batch_size)
    assert noisy.noisy and noisy.speedup.median == pytest.approx(0.985, rel=1e-4)
    assert noisy.karp_flatt is None
    assert quiet.karp_flatt == pytest.approx(2 / 1.85 - 1, rel=1e-3)  # Karp-Flatt of the quiet rounds' 1.85x
    groups = {g["configuration"]: g for g in result.to_dict()["groups"]}
    assert [g["serial_fraction"] for g in groups.values()].count(None) == 1
    md = result.markdown.read_text(encoding="utf-8")
    study = md.split("## The original study beside ours", 1)[1].split("\n## ", 1)[0]
    ours = [line for line in study.splitlines() if line.startswith("| ours")]
    assert [line.split("|")[-3:-1] for line in ours] == [[" – ", " – "], [" 0.081 ", " 12.3x "]]


def _mixed_csv(tmp_path: Path) -> Path:
    """Blur (exact and fast) and faces rounds interleaved in one file, as ``bench`` appends them."""
    csv_path = tmp_path / "r.csv"
    rows = []
    for r in (1, 2, 3):
        rows += [_row(round=r, run_id="a", seq_s=10.0 + r, par_s=5.5, seq_throughput=0.8,
                      par_throughput=1.5),
                 _row(round=r, run_id="b", engine="fast", seq_s=4.0, par_s=2.2 + 0.1 * r),
                 _row(round=r, run_id="c", workload="faces", seq_s=6.0, par_s=3.1,
                      recall=0.99, recall_by_height_16_to_20px=0.9, recall_by_height_45px_up=1.0,
                      false_positives_per_image=0.25)]
    append_rows(csv_path, rows)
    return csv_path


def test_no_plotted_line_joins_two_engines_or_workloads(tmp_path: Path) -> None:
    from parablur.report.plots import round_series

    data = build_report([_mixed_csv(tmp_path)], tmp_path / "out").data
    series = round_series(data.runs)
    assert len([k for k in series if k.startswith("sequential")]) == 3
    for label, pts in series.items():
        assert len({(r.config.workload or "blur", r.config.engine or "exact") for _, _, r in pts}) == 1, label
        assert len(pts) == 3, label  # every round of that variant, and the sequential time once a round


def test_captions_never_repeat_the_figures_titles(v1_report) -> None:
    result = v1_report
    html = result.html.read_text()
    drawn = [p for p in result.plots if p.path is not None]
    assert len(drawn) >= 5
    for plot in result.plots:
        assert plot.caption and not plot.caption.lower().startswith(plot.title.lower()), plot.name
    for plot in drawn:
        assert f"<figcaption>{html_escape(plot.caption)}</figcaption>" in html
    # The title drawn on each figure is not its caption either.
    from parablur.report.plots import BUILDERS

    for name, _, caption, build in BUILDERS:
        fig = build(result.data)
        if not isinstance(fig, str):
            title = fig.axes[0].get_title()
            assert title and not caption.lower().startswith(title.lower()), name


def test_tables_fit_the_page_and_show_recall_by_band_and_images_per_core(tmp_path: Path) -> None:
    result = build_report([_mixed_csv(tmp_path)], tmp_path / "out")
    html = (tmp_path / "out" / "report.html").read_text()
    css = html[html.index("<style>"):html.index("</style>")]
    assert re.search(r"table\{[^}]*max-width:100%", css) and "overflow-wrap:break-word" in css
    grouped = next(t for t in result.data.tables() if t.title == "Runs grouped by configuration")
    # Only the settings that differ between the groups are columns; the rest are named once.
    assert grouped.headers[:3] == ("workload", "engine", "trials used")
    assert "Same in every row: mode bench, hostname h, executor dask" in grouped.note
    table = next(t for t in result.data.tables() if t.title == "Images per core and detection quality")
    assert table.headers[1:4] == ("seq img/s per core", "par img/s per core", "recall (>= 16 px)")
    faces = next(row for row in table.rows if "workload=faces" in row[0])
    cells = dict(zip(table.headers, faces, strict=True))
    assert (cells["recall (>= 16 px)"], cells["16 to 20px"], cells["45px up"]) == ("0.990", "0.900", "1.000")
    assert cells["20 to 30px"] == "–" and cells["false positives per image"] == "0.25"
    blur = next(row for row in table.rows if "workload" not in row[0] and "engine" not in row[0])
    # 0.8 img/s on one core; 1.5 img/s on the two workers: 0.75 a core.
    assert dict(zip(table.headers, blur, strict=True))["par img/s per core"] == "0.75"
    assert dict(zip(table.headers, blur, strict=True))["seq img/s per core"] == "0.80"
