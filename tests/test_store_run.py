"""`parablur run` with URL input and output: workers read and write the store themselves.

Against the real SeaweedFS of conftest (``seaweed``) and `dask scheduler`/`dask worker`
subprocesses whose folders are apart from the client's; ``file://`` URLs without either.
"""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_images
from dask_cluster import DaskCluster, start_cluster
from seaweed import BUCKET, FlakyProxy

from parablur import cli
from parablur.config import RunConfig
from parablur.errors import ConfigError
from parablur.pipeline import anonymize, fixed_batches, plan_tasks
from parablur.storage import open_store
from parablur.worker import Job

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> DaskCluster:
    c = start_cluster(tmp_path_factory.mktemp("store-cluster"), workers=2)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def prefix() -> str:
    return f"run-{uuid.uuid4().hex[:10]}"


def _dataset(folder: Path) -> dict[str, Path]:
    """Five JPEGs and a PNG in a subfolder: key -> local file."""
    make_images(folder, 5, size=(64, 96), seed=11)
    make_images(folder / "sub", 1, size=(72, 88), seed=12, suffix=".png")
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.*"))}


def _upload(seaweed, files: dict[str, Path], prefix: str) -> None:
    seaweed.client().pipe({f"{BUCKET}/{prefix}/{key}": path.read_bytes() for key, path in files.items()})


def _options_file(path: Path, options: dict) -> str:
    path.write_text(json.dumps(options))
    return f"@{path}"


def _puts(requests: list[str], under: str) -> list[str]:
    return [line for line in requests if line.startswith("PUT ") and line.split()[1].startswith(under)
            and not line.split()[1].endswith("/.parablur-lock")]  # the run's lock: not an output


@pytest.mark.slow
def test_s3_run_on_dask_matches_local_sequential_then_skips(seaweed, cluster, prefix, tmp_path,
                                                            capsys) -> None:
    files = _dataset(tmp_path / "local")
    _upload(seaweed, files, f"{prefix}/in")
    anonymize(RunConfig(input_dir=tmp_path / "local", output_dir=tmp_path / "ref"))
    proxy = FlakyProxy(seaweed.s3_port)  # forwards every request, and notes it
    try:
        options = _options_file(tmp_path / "s3.json", seaweed.options(endpoint=proxy.endpoint))
        argv = ["run", "--input-dir", f"s3://{BUCKET}/{prefix}/in", "--output-dir",
                f"s3://{BUCKET}/{prefix}/out", "--executor", "dask", "--scheduler", cluster.address,
                "--storage-options", options, "--batch-size", "2", "--quiet"]
        assert cli.main([*argv, "--summary-json", str(tmp_path / "first.json")]) == 0
        first = json.loads((tmp_path / "first.json").read_text())
        assert (first["images"], first["ok"], first["skipped"], first["failed"]) == (6, 6, 0, 0)
        assert first["output_dir"] == f"s3://{BUCKET}/{prefix}/out/dask"

        out_keys = sorted(k for k in seaweed.keys(f"{prefix}/out"))
        assert out_keys == sorted([f"{prefix}/out/dask/.parablur-output",
                                   *(f"{prefix}/out/dask/{key}" for key in files)])
        client = seaweed.client()
        for key in files:
            got = client.cat_file(f"{BUCKET}/{prefix}/out/dask/{key}")
            want = (tmp_path / "ref" / "sequential" / key).read_bytes()
            assert got == want, key
            assert np.array_equal(cv2.imdecode(np.frombuffer(got, np.uint8), cv2.IMREAD_UNCHANGED),
                                  cv2.imread(str(tmp_path / "ref" / "sequential" / key),
                                             cv2.IMREAD_UNCHANGED))
        # Each output is one PUT to its final key (no temporary name), made by the workers.
        image_puts = _puts(proxy.settled(), f"/{BUCKET}/{prefix}/out/dask/")
        assert sorted(image_puts) == sorted(
            [*(f"PUT /{BUCKET}/{prefix}/out/dask/{key}" for key in files),
             f"PUT /{BUCKET}/{prefix}/out/dask/.parablur-output"]
            + [p for p in image_puts if "/.parablur-probe-" in p])

        # The workers opened the store themselves (one filesystem per worker process).
        with cluster.client() as c:
            opened = c.run(lambda: len(__import__("parablur.storage.fsspec_store").storage
                                       .fsspec_store._FILESYSTEMS))
        assert len(opened) == 2 and all(n >= 1 for n in opened.values()), opened

        mark = len(proxy.settled())
        assert cli.main([*argv, "--summary-json", str(tmp_path / "second.json")]) == 0
        second = json.loads((tmp_path / "second.json").read_text())
        assert (second["images"], second["ok"], second["skipped"]) == (6, 0, 6)
        again = [p for p in _puts(proxy.settled()[mark:], f"/{BUCKET}/{prefix}/out/dask/")
                 if "/.parablur-probe-" not in p]
        assert again == []  # nothing rewritten
        reads = {line.split()[1] for line in proxy.settled()[mark:] if line.startswith("GET ")
                 and line.split()[1].startswith(f"/{BUCKET}/{prefix}/in/")}
        # Skipped from the listing's ETag and one HEAD each: no input read but the read probe's.
        assert reads == {f"/{BUCKET}/{prefix}/in/img_000.jpg"}, reads

        mark = len(proxy.settled())
        assert cli.main([*argv, "--force", "--summary-json", str(tmp_path / "third.json")]) == 0
        third = json.loads((tmp_path / "third.json").read_text())
        assert (third["ok"], third["skipped"]) == (6, 0)
        assert len([p for p in _puts(proxy.settled()[mark:], f"/{BUCKET}/{prefix}/out/dask/")
                    if "/.parablur-probe-" not in p]) == 6
    finally:
        proxy.close()
    secret = seaweed.options()["secret"]
    out = capsys.readouterr()
    assert secret not in out.out + out.err
    for name in ("first.json", "second.json", "third.json"):
        assert secret not in (tmp_path / name).read_text()


def test_wrong_secret_is_one_line_exit_2_before_any_cluster(seaweed, prefix, tmp_path, capsys) -> None:
    from ingestion_support import closed_port

    _upload(seaweed, _dataset(tmp_path / "local"), f"{prefix}/in")
    secret = "wrong-secret-0d9b1e"
    options = _options_file(tmp_path / "s3.json", seaweed.options(secret=secret))
    # A scheduler nobody listens on: had a cluster been reached first, its error would show.
    code = cli.main(["run", "--input-dir", f"s3://{BUCKET}/{prefix}/in", "--output-dir",
                     f"s3://{BUCKET}/{prefix}/out", "--executor", "dask", "--scheduler",
                     f"tcp://127.0.0.1:{closed_port()}", "--storage-options", options, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "the credentials were refused" in err, err
    assert secret not in err
    assert seaweed.keys(f"{prefix}/out") == []


@pytest.mark.parametrize("flags", [[], ["--force"], ["--workload", "faces", "--draw-boxes"]])
def test_an_output_prefix_holding_a_users_objects_is_refused_and_left_alone(
        seaweed, prefix, tmp_path, capsys, flags) -> None:
    _upload(seaweed, _dataset(tmp_path / "local"), f"{prefix}/in")
    mine = {f"{BUCKET}/{prefix}/out/sequential/img_0000.jpg": b"the user's own photo",
            f"{BUCKET}/{prefix}/out/sequential-boxes/notes.txt": b"the user's notes"}
    seaweed.client().pipe(mine)
    options = _options_file(tmp_path / "s3.json", seaweed.options())
    code = cli.main(["run", "--input-dir", f"s3://{BUCKET}/{prefix}/in", "--output-dir",
                     f"s3://{BUCKET}/{prefix}/out", "--storage-options", options, "--quiet",
                     *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "refusing to write into" in err, err
    # Refused before anything is written there: no probe, no marker, the user's bytes as they were.
    assert sorted(seaweed.keys(f"{prefix}/out")) == sorted(k.split("/", 1)[1] for k in mine)
    assert all(seaweed.client().cat_file(k) == v for k, v in mine.items())


def test_a_corrupt_object_fails_alone(seaweed, cluster, prefix, tmp_path) -> None:
    files = _dataset(tmp_path / "local")
    _upload(seaweed, files, f"{prefix}/in")
    seaweed.client().pipe_file(f"{BUCKET}/{prefix}/in/img_002b.jpg", b"\xff\xd8 not a jpeg at all")
    code = cli.main(["run", "--input-dir", f"s3://{BUCKET}/{prefix}/in", "--output-dir",
                     f"s3://{BUCKET}/{prefix}/out", "--executor", "dask", "--scheduler",
                     cluster.address, "--storage-options",
                     _options_file(tmp_path / "s3.json", seaweed.options()), "--batch-size", "3",
                     "--quiet", "--summary-json", str(tmp_path / "s.json")])
    summary = json.loads((tmp_path / "s.json").read_text())
    assert code == 1
    assert (summary["ok"], summary["failed"]) == (6, 1)
    assert [f["image"] for f in summary["failures"]] == ["img_002b.jpg"]
    assert sorted(seaweed.keys(f"{prefix}/out/dask")) == sorted(
        [f"{prefix}/out/dask/.parablur-output", *(f"{prefix}/out/dask/{key}" for key in files)])


def test_task_payloads_carry_keys_not_bytes(seaweed, prefix, tmp_path) -> None:
    # Images of ~40 KB each (noise compresses badly): a task that held its image could not be small.
    rng = np.random.default_rng(5)
    blobs = {f"n{i:02d}.png": cv2.imencode(".png", rng.integers(0, 256, (120, 120, 3), np.uint8))[1]
             .tobytes() for i in range(9)}
    seaweed.client().pipe({f"{BUCKET}/{prefix}/in/{k}": v for k, v in blobs.items()})
    inp = open_store(f"s3://{BUCKET}/{prefix}/in", seaweed.options())
    out = open_store(f"s3://{BUCKET}/{prefix}/out/dask", seaweed.options())
    batches = list(fixed_batches(plan_tasks(inp, out, Job(), inp.scan_images()), 4))
    assert [len(b) for b in batches] == [4, 4, 1]
    assert min(len(v) for v in blobs.values()) > 30_000
    for batch in batches:
        size = len(pickle.dumps(batch))
        assert size < 1500 * len(batch) + 1000, size  # the two stores once, then ~100 B per key
        back = pickle.loads(pickle.dumps(batch))
        assert back[0].store_in.read(back[0].src) == blobs[batch[0].name]  # keys that work


def test_file_urls_resume_by_input_and_force(tmp_path) -> None:
    files = _dataset(tmp_path / "in")
    anonymize(RunConfig(input_dir=tmp_path / "in", output_dir=tmp_path / "ref"))
    config = RunConfig(input_dir=f"file://{tmp_path / 'in'}", output_dir=f"file://{tmp_path / 'out'}",
                       batch_size=4)
    first = anonymize(config)
    assert (first.images, first.ok, first.skipped) == (6, 6, 0)
    for key in files:
        assert (tmp_path / "out/sequential" / key).read_bytes() == \
            (tmp_path / "ref/sequential" / key).read_bytes()
    second = anonymize(config)
    assert (second.images, second.ok, second.skipped) == (6, 0, 6)
    make_images(tmp_path / "other", 1, size=(64, 96), seed=99)
    (tmp_path / "other/img_000.jpg").replace(tmp_path / "in/img_003.jpg")  # new content, same key
    third = anonymize(config)
    assert (third.ok, third.skipped) == (1, 5)
    from dataclasses import replace

    assert anonymize(replace(config, force=True)).ok == 6


def test_url_locations_are_kept_and_must_not_contain_one_another(tmp_path) -> None:
    with pytest.raises(ConfigError, match="must not contain one another"):
        RunConfig(input_dir="s3://b/photos", output_dir="s3://b/photos/out")
    with pytest.raises(ConfigError, match="must not contain one another"):
        RunConfig(input_dir=f"file://{tmp_path}/in", output_dir=tmp_path / "in" / "out")
    config = RunConfig(input_dir="s3://b/photos", output_dir="s3://b/photos-out",
                       storage_options={"secret": "s3cr3t-value"})
    assert (config.input_dir, config.output_dir) == ("s3://b/photos", "s3://b/photos-out")
    assert "s3cr3t-value" not in repr(config)
    with pytest.raises(ConfigError) as caught:
        RunConfig(input_dir="s3://me:pw-93ab1c@host/b/in", output_dir="s3://me:pw-93ab1c@host/b/in/o")
    assert "pw-93ab1c" not in str(caught.value) and "s3://me:***@host/b/in" in str(caught.value)


def test_bench_reads_a_dataset_in_the_store_and_verifies_outputs(seaweed, cluster, prefix,
                                                                 tmp_path, capsys) -> None:
    files = _dataset(tmp_path / "local")
    _upload(seaweed, files, f"{prefix}/in")
    anonymize(RunConfig(input_dir=tmp_path / "local", output_dir=tmp_path / "ref"))
    proxy = FlakyProxy(seaweed.s3_port)
    try:
        options = _options_file(tmp_path / "s3.json", seaweed.options(endpoint=proxy.endpoint))
        code = cli.main(["bench", "--input-dir", f"s3://{BUCKET}/{prefix}/in", "--storage-options",
                         options, "--output-dir", str(tmp_path / "out"), "--executors", "dask",
                         "--scheduler", cluster.address, "--trials", "2", "--warmup", "0",
                         "--batch-size", "2", "--no-ceiling", "--no-report", "--quiet",
                         "--report-csv", str(tmp_path / "r.csv"),
                         "--summary-json", str(tmp_path / "s.json")])
        requests = proxy.settled()
    finally:
        proxy.close()
    assert code == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ok"] and summary["images"] == 6
    stats = summary["executors"]["dask"]
    assert stats["speedup"] > 0 and stats["clean_rounds"] == 2
    assert stats["stage_share"]["read"] > 0  # reading from the store is the read stage
    assert all(r["dask_identical"] for r in summary["rounds"])
    # Each image was read from the store in every leg of every round, by the workers.
    for key in files:
        gets = requests.count(f"GET /{BUCKET}/{prefix}/in/{key}")
        assert gets >= 4, (key, gets)
    for leg in ("sequential", "dask"):
        for key in files:
            assert (tmp_path / "out" / leg / key).read_bytes() == \
                (tmp_path / "ref" / "sequential" / key).read_bytes()
    secret = seaweed.options()["secret"]
    out = capsys.readouterr()
    for text in (out.out, out.err, (tmp_path / "s.json").read_text(), (tmp_path / "r.csv").read_text()):
        assert secret not in text
