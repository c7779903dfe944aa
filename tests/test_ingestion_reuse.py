"""Nothing fetched is lost: shrinking keeps images, another source reuses them, and a killed
re-fetch keeps every reuse record."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from ingestion_support import (
    RawServer,
    assert_dataset_consistent,
    closed_port,
    folder_state,
    jpeg_bytes,
    small_config,
)

from parablur.benchmark import prepare_dataset
from parablur.cli import main
from parablur.config import DEFAULT_SOURCE_URL
from parablur.ingestion import fetch_dataset
from parablur.ingestion.generate import generate_image
from parablur.ingestion.manifest import MANIFEST_NAME, sha256_bytes, sha256_file

pytestmark = pytest.mark.timeout(90)
SRC = Path(__file__).resolve().parents[1] / "src"


def offline_url() -> str:
    return f"http://127.0.0.1:{closed_port()}/img"


def write_url_list(path: Path, urls: list[str]) -> Path:
    path.write_text("\n".join(urls) + "\n")
    return path


def images_state(folder: Path) -> dict:
    return {k: v for k, v in folder_state(folder).items() if k != MANIFEST_NAME}


def bench_args(folder: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["bench", "--input-dir", str(folder), "--width", "64", "--height", "64",
            "--executors", "threads", "--workers", "2", "--blur-radius", "2", "--trials", "1",
            "--warmup", "0", "--no-ceiling", "--no-report", "--quiet",
            "--output-dir", str(tmp_path / "out"), "--report-csv", str(tmp_path / "r.csv"),
            *extra]


def test_shrinking_keeps_every_image_and_bench_uses_the_first_n(tmp_path, capsys):
    data = tmp_path / "data"
    fetch = ["fetch", "--input-dir", str(data), "--width", "64", "--height", "64",
             "--source-url", offline_url(), "--quiet"]
    assert main([*fetch, "--num-images", "20"]) == 0
    assert_dataset_consistent(data, 20)
    before = images_state(data)
    capsys.readouterr()
    assert main([*fetch, "--num-images", "10", "--summary-json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "0 downloaded, 10 reused, 0 generated" in out
    assert f"Using the first 10 of 20 images in {data}; the other 10 are kept" in out
    assert images_state(data) == before  # not one image deleted or rewritten
    assert_dataset_consistent(data, 20)  # and the manifest still describes all 20
    first_ten = [str(data / f"img_{i:04d}.jpg") for i in range(10)]
    assert json.loads((tmp_path / "f.json").read_text())["images"] == first_ten

    summary = tmp_path / "b.json"
    assert main(bench_args(data, tmp_path, "--num-images", "10", "--source-url", offline_url(),
                           "--summary-json", str(summary))) == 0
    assert json.loads(summary.read_text())["images"] == 10
    blurred = sorted(p.name for p in (tmp_path / "out" / "sequential").iterdir()
                     if not p.name.startswith("."))
    assert blurred == [f"img_{i:04d}.jpg" for i in range(10)]
    assert images_state(data) == before


def test_bench_and_scale_measure_exactly_the_fetched_images(tmp_path):
    data = tmp_path / "data"
    config = small_config(data, num_images=3, source_url=offline_url())
    fetch_dataset(config, progress=False)
    (data / "holiday.jpg").write_bytes(jpeg_bytes(9))  # dropped in by hand: not the dataset's
    lines = []
    images, summary = prepare_dataset(small_config(data, num_images=2,
                                                   source_url=offline_url()),
                                      echo=lines.append, progress=False)
    assert images == ["img_0000.jpg", "img_0001.jpg"]  # their keys in the dataset's store
    assert summary["images"] == [str(data / k) for k in images] and summary["kept"] == 1
    assert "Using the first 2 of 3 images" in lines[0]
    assert (data / "holiday.jpg").read_bytes() == jpeg_bytes(9)


def test_bench_reuses_a_dataset_fetched_from_another_source(tmp_path, httpserver, capsys):
    for i in range(4):
        httpserver.expect_request(f"/photo/{i}").respond_with_data(jpeg_bytes(i),
                                                                   content_type="image/jpeg")
    scene = tmp_path / "scene"
    url_list = write_url_list(tmp_path / "u.txt", [httpserver.url_for(f"/photo/{i}")
                                                   for i in range(4)])
    assert main(["fetch", "--input-dir", str(scene), "--url-list", str(url_list),
                 "--num-images", "4", "--quiet"]) == 0
    before = images_state(scene)
    capsys.readouterr()
    # The default source (picsum.photos) now: nothing is asked of it, nothing replaced.
    assert main(bench_args(scene, tmp_path, "--num-images", "4")) == 0
    out = capsys.readouterr().out
    assert f"from {DEFAULT_SOURCE_URL}: 0 downloaded, 4 reused, 0 generated" in out
    assert f"4 of the reused images came from another source than {DEFAULT_SOURCE_URL}" in out
    assert images_state(scene) == before


def test_another_source_replaces_images_only_when_forced(tmp_path, httpserver):
    for i in range(3):
        httpserver.expect_request(f"/a/{i}").respond_with_data(jpeg_bytes(i),
                                                               content_type="image/jpeg")
        httpserver.expect_request(f"/b/{i}").respond_with_data(jpeg_bytes(10 + i),
                                                               content_type="image/jpeg")
    folder = tmp_path / "data"
    list_a = write_url_list(tmp_path / "a.txt", [httpserver.url_for(f"/a/{i}") for i in range(3)])
    list_b = write_url_list(tmp_path / "b.txt", [httpserver.url_for(f"/b/{i}") for i in range(3)])
    first = fetch_dataset(small_config(folder, url_list=list_a, num_images=3), progress=False)
    assert first.downloaded == 3
    asked = len(httpserver.log)
    again = fetch_dataset(small_config(folder, url_list=list_b, num_images=3), progress=False)
    assert (again.downloaded, again.reused, again.other_source) == (0, 3, 3)
    assert again.dataset_checksum == first.dataset_checksum
    assert len(httpserver.log) == asked  # source b was not even asked
    forced = fetch_dataset(small_config(folder, url_list=list_b, num_images=3,
                                        force_download=True), progress=False)
    assert (forced.downloaded, forced.reused) == (3, 0)
    doc = assert_dataset_consistent(folder, 3)
    assert [e["sha256"] for e in doc["images"]] == [sha256_bytes(jpeg_bytes(10 + i))
                                                    for i in range(3)]


def test_generated_stand_ins_are_reused_whatever_was_asked(tmp_path):
    folder = tmp_path / "data"
    first = fetch_dataset(small_config(folder, num_images=2, source_url=offline_url()),
                          progress=False)
    assert first.generated == 2
    # another source, fallback kind, seed and size: the images already there are kept
    again = fetch_dataset(small_config(folder, num_images=2, source_url=offline_url(),
                                       fallback="noise", seed=7, width=80, height=80),
                          progress=False)
    assert (again.reused, again.generated, again.other_source) == (2, 0, 2)
    assert again.dataset_checksum == first.dataset_checksum
    # forced, the stand-ins are made again as now asked
    forced = fetch_dataset(small_config(folder, num_images=2, source_url=offline_url(),
                                        fallback="noise", seed=7, width=80, height=80,
                                        force_download=True), progress=False)
    assert (forced.reused, forced.generated) == (0, 2)
    assert cv2.imread(str(forced.images[0])).shape == (80, 80, 3)
    assert_dataset_consistent(folder, 2)


def test_a_failed_forced_download_keeps_the_photo_already_there(tmp_path, httpserver):
    httpserver.expect_request("/photo").respond_with_data(jpeg_bytes(4),
                                                          content_type="image/jpeg")
    folder = tmp_path / "data"
    fetch_dataset(small_config(folder, num_images=2, source_url=httpserver.url_for("/photo")),
                  progress=False)
    before = images_state(folder)
    forced = fetch_dataset(small_config(folder, num_images=2, source_url=offline_url(),
                                        force_download=True), progress=False)
    assert (forced.downloaded, forced.reused, forced.generated) == (0, 2, 0)
    assert [f["outcome"] for f in forced.failures] == ["kept", "kept"]
    assert "2 forced re-download(s) failed, the images already there were kept" \
        in forced.format_summary()
    assert images_state(folder) == before
    assert_dataset_consistent(folder, 2)


def test_a_rewritten_image_past_the_first_n_is_forgotten_not_deleted(tmp_path):
    folder = tmp_path / "data"
    config = small_config(folder, num_images=4, source_url=offline_url())
    fetch_dataset(config, progress=False)
    mine = generate_image(0, 32, 32, seed=5)  # the user drew over image 3
    assert cv2.imwrite(str(folder / "img_0003.jpg"), mine)
    summary = fetch_dataset(small_config(folder, num_images=2, source_url=offline_url()),
                            progress=False)
    assert summary.kept == 1  # image 2; image 3 no longer matches its record
    doc = json.loads((folder / MANIFEST_NAME).read_text())
    assert [e["index"] for e in doc["images"]] == [0, 1, 2]
    assert cv2.imread(str(folder / "img_0003.jpg")).shape == (32, 32, 3)


@pytest.fixture
def slow_server():
    server = RawServer(jpeg_bytes(2), delay=0.4)
    yield server
    server.close()


@pytest.mark.slow
def test_a_killed_forced_refetch_keeps_every_reuse_record(tmp_path, slow_server):
    folder = tmp_path / "data"
    fast = RawServer(jpeg_bytes(1))
    try:
        old_list = write_url_list(tmp_path / "old.txt", [fast.url(f"/ok/{i}") for i in range(24)])
        assert fetch_dataset(small_config(folder, url_list=old_list, num_images=24,
                                          download_workers=4), progress=False).downloaded == 24
    finally:
        fast.close()
    # 24 images at 0.4 s each over 2 connections take ~5 s: ample time to kill it part-way.
    new_list = write_url_list(tmp_path / "new.txt", [slow_server.url(f"/ok/{i}")
                                                     for i in range(24)])
    new_sha = sha256_bytes(jpeg_bytes(2))
    argv = ["fetch", "--input-dir", str(folder), "--url-list", str(new_list), "--num-images",
            "24", "--force-download", "--download-workers", "2", "--width", "64", "--height",
            "64", "--quiet"]
    child = subprocess.Popen([sys.executable, "-m", "parablur", *argv],
                             env=dict(os.environ, PYTHONPATH=str(SRC)))
    try:
        deadline = time.monotonic() + 30
        replaced = 0
        while time.monotonic() < deadline and replaced < 3:
            assert child.poll() is None, "the fetch finished before it could be killed"
            doc = json.loads((folder / MANIFEST_NAME).read_text())
            replaced = sum(e["sha256"] == new_sha for e in doc["images"])
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    entries = json.loads((folder / MANIFEST_NAME).read_text())["images"]
    # Only the images being written at the kill (2 connections) may have lost their record.
    assert len(entries) >= 22
    for entry in entries:
        assert sha256_file(folder / entry["file"]) == entry["sha256"], entry
    assert 3 <= sum(e["sha256"] == new_sha for e in entries) < 24

    summary = fetch_dataset(small_config(folder, url_list=new_list, num_images=24,
                                         download_workers=4), progress=False)
    assert summary.reused == len(entries) and summary.downloaded == 24 - len(entries)
    assert summary.generated == summary.failed == 0
    assert_dataset_consistent(folder, 24)


def test_a_command_pointed_at_a_parablur_dataset_uses_its_count_and_kind(tmp_path, capsys):
    """`fetch --fallback faces --num-images 4` then a bench without those flags: the same 4
    face images, not 160 images padded out with scenes."""
    data = tmp_path / "faces"
    assert main(["fetch", "--fallback", "faces", "--num-images", "4", "--width", "64",
                 "--height", "64", "--input-dir", str(data), "--quiet",
                 "--source-url", offline_url()]) == 0
    before = images_state(data)
    capsys.readouterr()
    assert main(["fetch", "--input-dir", str(data), "--quiet", "--width", "64", "--height", "64",
                 "--source-url", offline_url()]) == 0
    assert "4 reused, 0 generated" in capsys.readouterr().out
    assert images_state(data) == before
    manifest = json.loads((data / "manifest.json").read_text())
    assert len(manifest["images"]) == 4 and manifest["meta"]["fallback"] == "faces"
