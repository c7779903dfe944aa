"""Workloads as a plug-in point: a user's MODULE:FUNCTION under the same harness as the study's blur."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_images, user_package

from parablur import results
from parablur.cli import main
from parablur.config import RunConfig
from parablur.errors import ConfigError
from parablur.pipeline import anonymize
from parablur.workloads import CustomWorkload

STEPS = textwrap.dedent('''
    import cv2
    import numpy as np

    def sharpen(image):
        """Unsharp mask: a CPU-bound step of a user's own."""
        soft = cv2.GaussianBlur(image, (0, 0), 2)
        return cv2.addWeighted(image, 1.5, soft, -0.5, 0)

    def count_dark(image):
        """An output and a small record."""
        return 255 - image, {"dark_pixels": int((image < 64).sum())}

    def not_an_image(image):
        return "oops"
''')


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "userpkg"))
    with user_package(tmp_path, "mysteps", STEPS, monkeypatch) as folder:
        yield folder


def _decoded(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_a_users_function_runs_on_every_image_with_its_records(tmp_path: Path, user_module: Path):
    images = make_images(tmp_path / "in", 5, size=(40, 56), suffix=".png")
    summary = anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                  workload="mysteps.steps:count_dark"))
    assert summary.ok == 5 and summary.failed == 0
    out = tmp_path / "out" / "sequential"
    for src in images:
        assert np.array_equal(_decoded(out / src.name), 255 - _decoded(src))
    lines = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert [x["image"] for x in lines] == [p.name for p in images]
    assert all(x["dark_pixels"] == int((_decoded(p) < 64).sum()) for x, p in zip(lines, images,
                                                                                 strict=True))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_dask_and_sequential_outputs_of_a_users_function_are_identical(
        tmp_path: Path, user_module: Path):
    make_images(tmp_path / "in", 7, size=(48, 64))
    for executor in ("sequential", "dask", "processes"):
        s = anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                executor=executor, workers=2, batch_size=3,
                                workload="mysteps.steps:sharpen"))
        assert s.ok == 7, (executor, s.failures)
    from parablur.verify import compare_dirs

    for executor in ("dask", "processes"):
        ver = compare_dirs(tmp_path / "out" / "sequential", tmp_path / "out" / executor)
        assert ver.ok and ver.identical == 7


def test_a_bad_return_value_fails_that_image_with_the_reason(tmp_path: Path, user_module: Path):
    make_images(tmp_path / "in", 2, size=(32, 32))
    summary = anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                  workload="mysteps.steps:not_an_image"))
    assert summary.failed == 2
    assert "returned str, not an image array" in summary.failures[0]["reason"]


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuchpkg.steps:sharpen", "cannot import nosuchpkg"),
    ("mysteps.steps:nosuchfunc", "has no function nosuchfunc"),
    ("not a spec", "workload must be one of blur"),
])
def test_a_workload_that_cannot_be_loaded_is_one_line_exit_2(
        tmp_path: Path, user_module: Path, capsys: pytest.CaptureFixture, spec: str,
        message: str):
    make_images(tmp_path / "in", 2, size=(32, 32))
    code = main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                 str(tmp_path / "out"), "--workload", spec, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out" / "sequential").exists() or not any(
        p.suffix == ".jpg" for p in (tmp_path / "out" / "sequential").iterdir())


def test_custom_workload_rejects_bad_specs():
    with pytest.raises(ConfigError, match="MODULE:FUNCTION"):
        CustomWorkload("just_a_module")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_workers_that_cannot_import_the_users_module_are_refused_before_any_image(
        tmp_path: Path, user_module: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch):
    """The client can import it; the cluster's workers (started without it) cannot."""
    from dask_cluster import start_cluster

    monkeypatch.delenv("PYTHONPATH")  # the workers start without the user's package
    cluster = start_cluster(tmp_path / "cluster", workers=1)
    try:
        make_images(tmp_path / "in", 3, size=(32, 32))
        code = main(["run", "--input-dir", str(tmp_path / "in"), "--output-dir",
                     str(tmp_path / "out"), "--executor", "dask", "--scheduler",
                     cluster.address, "--workload", "mysteps.steps:sharpen", "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "cannot import mysteps" in err[0] and "on 1 worker(s): tcp://127.0.0.1" in err[0]
    finally:
        cluster.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_bench_records_the_workload_and_its_parameters(tmp_path: Path, user_module: Path):
    make_images(tmp_path / "in", 6, size=(48, 48))
    code = main(["bench", "--input-dir", str(tmp_path / "in"), "--output-dir",
                 str(tmp_path / "out"), "--executors", "threads", "--workers", "2",
                 "--trials", "1", "--warmup", "0", "--no-ceiling", "--no-report", "--quiet",
                 "--workload", "mysteps.steps:sharpen", "--report-csv", str(tmp_path / "r.csv")])
    assert code == 0
    (row,) = results.read_rows(tmp_path / "r.csv")
    assert row["workload"] == "mysteps.steps:sharpen" and row["engine"] == "exact"
    params = json.loads(row["workload_params"])
    assert params.pop("source").startswith("sha256:")  # the module's source, for resume
    assert params == {"workload": "mysteps.steps:sharpen", "function": "mysteps.steps:sharpen",
                      "jpeg_quality": 92}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_compares_engines_side_by_side_with_fast_accuracy(tmp_path: Path, capsys):
    """Both engines on the same images and pools; per engine, Dask outputs identical to
    sequential ones; fast's PSNR against exact measured on a sample in every round."""
    from parablur.ingestion.generate import encode_jpeg, generate_image

    data = tmp_path / "in"
    data.mkdir()
    for i in range(3):  # large enough for the fast engine's reduced JPEG decode (1/4)
        (data / f"scene_{i}.jpg").write_bytes(encode_jpeg(generate_image(i, 1024, 1024, 0,
                                                                         "scene")))
    code = main(["bench", "--input-dir", str(data), "--output-dir", str(tmp_path / "out"),
                 "--engines", "exact,fast", "--executors", "dask", "--workers", "2",
                 "--batch-size", "1", "--trials", "1", "--warmup", "0", "--no-ceiling",
                 "--no-report", "--no-dashboard", "--quiet", "--report-csv",
                 str(tmp_path / "r.csv"), "--summary-json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((tmp_path / "s.json").read_text())["engines"]
    assert set(summary) == {"exact", "fast"}
    for engine in ("exact", "fast"):
        assert summary[engine]["ok"] and summary[engine]["rounds"][0]["dask_identical"]
    acc = summary["fast"]["accuracy_vs_exact"]
    assert acc["images"] == 3 and acc["psnr_db"] >= 50 and acc["max_abs_diff"] <= 8
    assert summary["exact"]["accuracy_vs_exact"] is None
    rows = {r["engine"]: r for r in results.read_rows(tmp_path / "r.csv")}
    assert set(rows) == {"exact", "fast"} and float(rows["fast"]["psnr_db"]) >= 50
    assert rows["exact"]["psnr_db"] == ""
    assert "engines side by side" in out and "fast / exact, dask images per second" in out
    tasks = results.read_rows(results.tasks_path(tmp_path / "r.csv"))
    assert {(t["executor"], t["engine"]) for t in tasks} == {
        (e, g) for e in ("sequential", "dask") for g in ("exact", "fast")}
    assert sum(int(t["images"]) for t in tasks if t["executor"] == "dask") == 2 * 3
