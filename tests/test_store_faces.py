"""Workloads with records (faces' detections.jsonl, a user's records.jsonl) and --draw-boxes with
URL input and output, and `bench` on a store's dataset with faces and the fast engine.

Against the real SeaweedFS of conftest (``seaweed``) and the real YuNet model (``face_model``).
"""

from __future__ import annotations

import importlib
import json
import textwrap
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_images, user_package
from seaweed import BUCKET

from parablur.cli import main
from parablur.config import RunConfig
from parablur.pipeline import anonymize
from parablur.workloads import face_quality

pytestmark = [pytest.mark.timeout(300)]

FACE_IMAGES = [f"img_{i:04d}.jpg" for i in range(4)]


def _options_file(path: Path, options: dict) -> str:
    path.write_text(json.dumps(options))
    return f"@{path}"


@pytest.fixture(scope="module")
def face_prefix(seaweed, tmp_path_factory) -> str:
    """Four generated 480x480 face scenes fetched into the store, their manifest beside them."""
    prefix = f"faces-{uuid.uuid4().hex[:10]}"
    options = _options_file(tmp_path_factory.mktemp("opts") / "s3.json", seaweed.options())
    assert main(["fetch", "--fallback", "faces", "--num-images", "4", "--width", "480",
                 "--height", "480", "--input-dir", f"s3://{BUCKET}/{prefix}/in",
                 "--storage-options", options, "--quiet", "--source-url",
                 "http://127.0.0.1:9/x"]) == 0
    return prefix


def _local_copy(seaweed, prefix: str, folder: Path) -> Path:
    """The store's images in a folder (the manifest left behind), for a reference run."""
    folder.mkdir(parents=True)
    client = seaweed.client()
    for name in FACE_IMAGES:
        (folder / name).write_bytes(client.cat_file(f"{BUCKET}/{prefix}/in/{name}"))
    return folder


@pytest.mark.slow
def test_faces_in_the_store_match_a_folder_run_with_records_boxes_resume_and_force(
        seaweed, face_prefix, face_model, tmp_path) -> None:
    local = _local_copy(seaweed, face_prefix, tmp_path / "local")
    ref = tmp_path / "ref"
    assert main(["run", "--workload", "faces", "--input-dir", str(local), "--output-dir", str(ref),
                 "--face-model", str(face_model), "--draw-boxes", "--quiet"]) == 0
    want_records = (ref / "sequential" / "detections.jsonl").read_bytes()
    assert len(want_records.splitlines()) == 4

    out = f"{face_prefix}/out-{uuid.uuid4().hex[:6]}"
    options = _options_file(tmp_path / "s3.json", seaweed.options())
    argv = ["run", "--workload", "faces", "--input-dir", f"s3://{BUCKET}/{face_prefix}/in",
            "--output-dir", f"s3://{BUCKET}/{out}", "--executor", "dask", "--workers", "2",
            "--batch-size", "1", "--face-model", str(face_model), "--draw-boxes",
            "--storage-options", options, "--quiet", "--no-dashboard"]

    def run(*extra: str) -> dict:
        path = tmp_path / f"s-{uuid.uuid4().hex[:6]}.json"
        assert main([*argv, *extra, "--summary-json", str(path)]) == 0
        return json.loads(path.read_text())

    client = seaweed.client()

    def records() -> bytes:
        return client.cat_file(f"{BUCKET}/{out}/dask/detections.jsonl")

    first = run()
    assert (first["images"], first["ok"], first["skipped"], first["failed"]) == (4, 4, 0, 0)
    assert sorted(seaweed.keys(f"{out}/dask")) == sorted(
        [f"{out}/dask/.parablur-output", f"{out}/dask/detections.jsonl",
         *(f"{out}/dask/{name}" for name in FACE_IMAGES)])
    for name in FACE_IMAGES:  # the workers' outputs are the folder run's, byte for byte
        assert client.cat_file(f"{BUCKET}/{out}/dask/{name}") == \
            (ref / "sequential" / name).read_bytes(), name
    assert records() == want_records
    assert all(json.loads(line)["faces"] for line in want_records.splitlines())
    # The debug copies: beside the outputs, never over them, as the folder run draws them.
    assert sorted(seaweed.keys(f"{out}/dask-boxes")) == sorted(
        [f"{out}/dask-boxes/.parablur-output", *(f"{out}/dask-boxes/{n}" for n in FACE_IMAGES)])
    for name in FACE_IMAGES:
        drawn = client.cat_file(f"{BUCKET}/{out}/dask-boxes/{name}")
        assert drawn == (ref / "sequential-boxes" / name).read_bytes(), name
        assert drawn != client.cat_file(f"{BUCKET}/{out}/dask/{name}")

    # One output gone: it alone is redone; the three skipped keep their lines.
    client.rm_file(f"{BUCKET}/{out}/dask/img_0001.jpg")
    client.rm_file(f"{BUCKET}/{out}/dask-boxes/img_0002.jpg")
    second = run()
    assert (second["ok"], second["skipped"], second["failed"]) == (1, 3, 0)
    assert records() == want_records
    assert client.cat_file(f"{BUCKET}/{out}/dask/img_0001.jpg") == \
        (ref / "sequential" / "img_0001.jpg").read_bytes()
    assert client.cat_file(f"{BUCKET}/{out}/dask-boxes/img_0002.jpg") == \
        (ref / "sequential-boxes" / "img_0002.jpg").read_bytes()  # drawn for a skipped image too

    # A line of an image no longer in the input: kept by a resumed run, gone with --force.
    client.pipe_file(f"{BUCKET}/{out}/dask/detections.jsonl",
                     want_records + b'{"faces": [], "image": "gone.jpg"}\n')
    assert run()["skipped"] == 4
    assert records().endswith(b'"gone.jpg"}\n')
    forced = run("--force")
    assert (forced["ok"], forced["skipped"]) == (4, 0)
    assert records() == want_records


STEPS = textwrap.dedent('''
    import os

    CALLS = [0]

    def count_dark(image):
        """An output and a record; Ctrl-C at the call PARABLUR_TEST_STOP_AT names."""
        CALLS[0] += 1
        if CALLS[0] == int(os.environ.get("PARABLUR_TEST_STOP_AT", "0")):
            raise KeyboardInterrupt
        return 255 - image, {"dark_pixels": int((image < 64).sum())}

    def plain(image):
        """An output and no record."""
        return 255 - image

    def count_bright(image):
        """Another output and another record."""
        return image // 2, {"bright_pixels": int((image > 192).sum())}
''')


@pytest.fixture
def stop_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with user_package(tmp_path, "stopsteps", STEPS, monkeypatch):
        yield importlib.import_module("stopsteps.steps")


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_interrupted_run_keeps_the_records_of_its_finished_images(
        where, stop_module, seaweed, tmp_path, monkeypatch) -> None:
    make_images(tmp_path / "in", 5, size=(40, 56), seed=3)
    workload = "stopsteps.steps:count_dark"
    anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "ref", workload=workload))
    want = (tmp_path / "ref" / "sequential" / "records.jsonl").read_bytes()
    assert len(want.splitlines()) == 5
    if where == "s3":
        prefix = f"stop-{uuid.uuid4().hex[:10]}"
        seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{p.name}": p.read_bytes()
                               for p in sorted((tmp_path / "in").iterdir())})
        config = RunConfig(input_dir=f"s3://{BUCKET}/{prefix}/in",
                           output_dir=f"s3://{BUCKET}/{prefix}/out", workload=workload,
                           batch_size=1, storage_options=seaweed.options())

        def records() -> bytes:
            return seaweed.client().cat_file(f"{BUCKET}/{prefix}/out/sequential/records.jsonl")
    else:
        config = RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                           workload=workload, batch_size=1)

        def records() -> bytes:
            return (tmp_path / "out" / "sequential" / "records.jsonl").read_bytes()

    stop_module.CALLS[0] = 0
    monkeypatch.setenv("PARABLUR_TEST_STOP_AT", "3")  # Ctrl-C while the third image is computed
    with pytest.raises(KeyboardInterrupt):
        anonymize(config)
    assert records() == b"".join(want.splitlines(keepends=True)[:2])
    monkeypatch.delenv("PARABLUR_TEST_STOP_AT")
    rest = anonymize(config)
    assert (rest.ok, rest.skipped) == (3, 2)
    assert records() == want


def _four_in_the_store(seaweed, tmp_path: Path, name: str, *, seed: int) -> tuple[RunConfig, str]:
    """Four images in a new prefix, run once with a workload that gives records: the run's
    configuration and the key of its record object."""
    make_images(tmp_path / "in", 4, size=(40, 56), seed=seed)
    prefix = f"{name}-{uuid.uuid4().hex[:10]}"
    seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{p.name}": p.read_bytes()
                           for p in sorted((tmp_path / "in").iterdir())})
    config = RunConfig(input_dir=f"s3://{BUCKET}/{prefix}/in", output_dir=f"s3://{BUCKET}/{prefix}/out",
                       workload="stopsteps.steps:count_dark", storage_options=seaweed.options())
    assert anonymize(config).ok == 4
    return config, f"{BUCKET}/{prefix}/out/sequential/records.jsonl"


def test_an_output_whose_record_line_was_lost_is_redone_with_it(stop_module, seaweed,
                                                                tmp_path) -> None:
    config, key = _four_in_the_store(seaweed, tmp_path, "lost", seed=5)
    prefix = config.input_dir.split("/")[3]
    client = seaweed.client()
    full = client.cat_file(key)
    # What a client stopped before it saved the record leaves: the outputs, not their lines.
    client.pipe_file(key, b"".join(full.splitlines(keepends=True)[1:]))
    again = anonymize(config)
    assert (again.ok, again.skipped) == (1, 3)
    assert client.cat_file(key) == full
    # A workload that gives no record: its outputs are skipped as usual.
    plain = replace(config, workload="stopsteps.steps:plain", output_dir=f"s3://{BUCKET}/{prefix}/o2")
    assert anonymize(plain).ok == 4
    assert (anonymize(plain).skipped, seaweed.keys(f"{prefix}/o2/sequential/records")) == (4, [])


def test_a_line_left_by_another_run_is_never_kept_with_a_newer_output(stop_module, seaweed,
                                                                     tmp_path) -> None:
    first, key = _four_in_the_store(seaweed, tmp_path, "stale", seed=6)
    client = seaweed.client()
    old_lines = client.cat_file(key)
    # Run B (other parameters) rewrites every output, then stops before saving its lines:
    # the outputs are B's, the record still holds run A's lines for them.
    second = replace(first, workload="stopsteps.steps:count_bright")
    assert anonymize(second).ok == 4
    new_lines = client.cat_file(key)
    assert new_lines != old_lines
    client.pipe_file(key, old_lines)
    again = anonymize(second)
    assert (again.ok, again.skipped) == (4, 0)
    assert client.cat_file(key) == new_lines
    assert (anonymize(second).ok, anonymize(second).skipped) == (0, 4)


def test_a_missing_face_model_is_one_line_before_any_image(seaweed, face_prefix, tmp_path,
                                                           capsys) -> None:
    out = f"{face_prefix}/out-{uuid.uuid4().hex[:6]}"
    code = main(["run", "--workload", "faces", "--input-dir", f"s3://{BUCKET}/{face_prefix}/in",
                 "--output-dir", f"s3://{BUCKET}/{out}", "--face-model",
                 str(tmp_path / "no-such.onnx"), "--storage-options",
                 _options_file(tmp_path / "s3.json", seaweed.options()), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "face model" in err and "not found" in err, err
    assert seaweed.keys(f"{out}/sequential") == []  # a refused run leaves nothing behind


@pytest.mark.slow
def test_bench_faces_on_a_store_dataset_scores_recall_from_its_manifest(
        seaweed, face_prefix, face_model, tmp_path, capsys) -> None:
    # No --num-images or --fallback: the store's dataset is used as it is, as a folder's is.
    code = main(["bench", "--workload", "faces", "--input-dir", f"s3://{BUCKET}/{face_prefix}/in",
                 "--storage-options", _options_file(tmp_path / "s3.json", seaweed.options()),
                 "--output-dir", str(tmp_path / "p"), "--executors", "threads", "--workers", "2",
                 "--trials", "1", "--warmup", "0", "--batch-size", "1", "--face-model",
                 str(face_model), "--no-ceiling", "--no-report", "--quiet", "--report-csv",
                 str(tmp_path / "r.csv"), "--summary-json", str(tmp_path / "s.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["images"] == 4 and summary["ok"]
    assert all(r["threads_identical"] for r in summary["rounds"])
    quality = summary["detection_quality"]
    # Scored against the manifest in the store: its every true face at least 16 px tall; the
    # faces of 45 px and over are found at the default settings (the small ones are the
    # detector's targets, measured in its own tests and benchmarks).
    manifest = json.loads(seaweed.client().cat_file(f"{BUCKET}/{face_prefix}/in/manifest.json"))
    tall = [b for e in manifest["images"] for b in e["faces"] if b[3] >= face_quality.MIN_HEIGHT]
    assert quality["images"] == 4 and quality["faces"] == len(tall) > 0
    assert quality["recall_by_height"]["45px_up"] >= 0.8
    assert "quality: recall" in out
    assert sorted(k.rsplit("/", 1)[1] for k in seaweed.keys(f"{face_prefix}/in")) == \
        [*FACE_IMAGES, "manifest.json"]  # nothing fetched or generated into it


@pytest.mark.slow
def test_bench_engines_on_a_store_dataset_measures_fast_against_exact(seaweed, tmp_path) -> None:
    prefix = f"eng-{uuid.uuid4().hex[:10]}"
    images = make_images(tmp_path / "local", 4, size=(320, 256), seed=21)
    seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{p.name}": p.read_bytes() for p in images})
    code = main(["bench", "--engines", "exact,fast", "--input-dir", f"s3://{BUCKET}/{prefix}/in",
                 "--storage-options", _options_file(tmp_path / "s3.json", seaweed.options()),
                 "--output-dir", str(tmp_path / "p"), "--executors", "threads", "--workers", "2",
                 "--trials", "1", "--warmup", "0", "--batch-size", "2", "--blur-radius", "4",
                 "--no-ceiling", "--no-report", "--quiet", "--report-csv", str(tmp_path / "r.csv"),
                 "--summary-json", str(tmp_path / "s.json")])
    assert code == 0
    engines = json.loads((tmp_path / "s.json").read_text())["engines"]
    assert set(engines) == {"exact", "fast"}
    assert engines["exact"]["accuracy_vs_exact"] is None
    fast = engines["fast"]["accuracy_vs_exact"]
    assert fast["images"] == 4 and fast["psnr_db"] > 40
    for summary in engines.values():
        assert summary["ok"] and all(r["threads_identical"] for r in summary["rounds"])
        assert summary["executors"]["threads"]["stage_share"]["read"] > 0
