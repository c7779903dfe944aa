"""Whole fetches: sources, reuse, checksums, offline fail-fast and surviving a SIGKILL."""

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
    jpeg_bytes,
    small_config,
)

from parablur.errors import DatasetError
from parablur.ingestion import FetchSummary, fetch_dataset
from parablur.ingestion.manifest import MANIFEST_NAME

pytestmark = pytest.mark.timeout(60)
SRC = Path(__file__).resolve().parents[1] / "src"


def serve_images(httpserver, count):
    for i in range(count):
        httpserver.expect_request(f"/img/{i}").respond_with_data(jpeg_bytes(i),
                                                                 content_type="image/jpeg")
    return [httpserver.url_for(f"/img/{i}") for i in range(count)]


def write_url_list(path, urls):
    path.write_text("# my images\n\n" + "\n".join(urls) + "\n  \n# end\n")
    return path


def test_url_list_gives_image_i_from_line_i(tmp_path, httpserver):
    urls = serve_images(httpserver, 3)
    config = small_config(tmp_path / "data", url_list=write_url_list(tmp_path / "u.txt", urls),
                          num_images=10)
    summary = fetch_dataset(config, progress=False)
    doc = assert_dataset_consistent(config.input_dir, 3)  # min(3 URLs, num_images=10)
    assert summary.downloaded == 3 and [e["url"] for e in doc["images"]] == urls
    for i, entry in enumerate(doc["images"]):
        assert (config.input_dir / entry["file"]).read_bytes() == jpeg_bytes(i)


def test_url_list_is_cut_to_num_images_and_bad_schemes_fall_back(tmp_path, httpserver):
    urls = serve_images(httpserver, 3)
    urls.insert(1, "ftp://example.com/x.jpg")
    config = small_config(tmp_path / "data", url_list=write_url_list(tmp_path / "u.txt", urls),
                          num_images=3)
    summary = fetch_dataset(config, progress=False)
    assert_dataset_consistent(config.input_dir, 3)
    assert (summary.downloaded, summary.generated) == (2, 1)
    assert summary.failures[0]["index"] == 1 and "scheme" in summary.failures[0]["reason"]


def test_empty_url_list_is_an_error(tmp_path):
    (tmp_path / "u.txt").write_text("# nothing\n")
    with pytest.raises(DatasetError, match="no URLs"):
        fetch_dataset(small_config(tmp_path / "d", url_list=tmp_path / "u.txt"), progress=False)


def test_own_images_are_used_as_they_are(tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(jpeg_bytes(1))
    (folder / "sub" / "b.jpg").write_bytes(jpeg_bytes(2))
    (folder / "notes.txt").write_text("not an image")
    summary = fetch_dataset(small_config(folder, num_images=50), progress=False)
    assert summary.local and summary.images == [folder / "a.jpg", folder / "sub" / "b.jpg"]
    assert summary.downloaded == summary.generated == 0
    assert not (folder / MANIFEST_NAME).exists()
    assert "nothing downloaded" in summary.format_summary()


def test_second_fetch_reuses_everything_and_checksum_is_stable(tmp_path, httpserver):
    urls = serve_images(httpserver, 4)
    config = small_config(tmp_path / "data", url_list=write_url_list(tmp_path / "u.txt", urls),
                          num_images=4)
    first = fetch_dataset(config, progress=False)
    assert first.downloaded == 4
    served = len(httpserver.log)
    second = fetch_dataset(config, progress=False)
    assert (second.downloaded, second.reused, second.generated) == (0, 4, 0)
    assert len(httpserver.log) == served  # nothing was asked of the server
    assert second.dataset_checksum == first.dataset_checksum
    assert json.loads((config.input_dir / MANIFEST_NAME).read_text())["dataset_checksum"] \
        == first.dataset_checksum
    json.dumps(second.to_dict())


def test_changed_file_is_refetched_and_force_download_refetches_all(tmp_path, httpserver):
    urls = serve_images(httpserver, 3)
    config = small_config(tmp_path / "data", url_list=write_url_list(tmp_path / "u.txt", urls),
                          num_images=3)
    first = fetch_dataset(config, progress=False)
    (config.input_dir / "img_0001.jpg").write_bytes(jpeg_bytes(7))
    again = fetch_dataset(config, progress=False)
    assert (again.downloaded, again.reused) == (1, 2)
    assert again.dataset_checksum == first.dataset_checksum
    forced = fetch_dataset(small_config(config.input_dir, url_list=config.url_list,
                                        num_images=3, force_download=True), progress=False)
    assert (forced.downloaded, forced.reused) == (3, 0)
    assert_dataset_consistent(config.input_dir, 3)


def test_offline_fails_fast_to_generated_images(tmp_path):
    port = closed_port()
    config = small_config(tmp_path / "data", source_url=f"http://127.0.0.1:{port}/img",
                          num_images=12, retries=5, backoff_base_s=0.2, backoff_max_s=5,
                          download_workers=4, breaker_threshold=3)
    summary = fetch_dataset(config, progress=False)
    assert summary.unreachable_hosts == [f"127.0.0.1:{port}"]
    assert (summary.downloaded, summary.generated, summary.failed) == (0, 12, 0)
    assert summary.retried < 12  # the breaker stopped the retry loops
    assert all(f["outcome"] == "generated" for f in summary.failures)
    assert "circuit breaker open" in summary.failures[-1]["reason"]
    assert_dataset_consistent(config.input_dir, 12)
    # Fallbacks are deterministic: a fresh folder gets the same dataset.
    other = fetch_dataset(small_config(tmp_path / "other", source_url=config.source_url,
                                       num_images=12), progress=False)
    assert other.dataset_checksum == summary.dataset_checksum


def test_noise_fallback(tmp_path):
    config = small_config(tmp_path / "data", source_url=f"http://127.0.0.1:{closed_port()}/",
                          num_images=2, fallback="noise", width=128, height=96)
    summary = fetch_dataset(config, progress=False)
    doc = assert_dataset_consistent(config.input_dir, 2)
    assert {e["source"] for e in doc["images"]} == {"generated:noise"}
    assert cv2.imread(str(summary.images[0])).shape == (96, 128, 3)
    assert summary.format_summary().count("\n") >= 2


def test_summary_to_dict_round_trips_as_json(tmp_path):
    summary = FetchSummary(images=[tmp_path / "a.jpg"], downloaded=1, reused=0, generated=0,
                           retried=0, failed=0)
    assert json.loads(json.dumps(summary.to_dict()))["images"] == [str(tmp_path / "a.jpg")]


@pytest.fixture
def slow_server():
    server = RawServer(jpeg_bytes(), delay=0.4)
    yield server
    server.close()


@pytest.mark.slow
def test_fetch_killed_part_way_resumes_consistently(tmp_path, slow_server):
    # 24 images at 0.4 s each over 2 connections take ~5 s: ample time to kill it part-way
    urls = [slow_server.url(f"/ok/{i}") for i in range(24)]
    url_list = write_url_list(tmp_path / "u.txt", urls)
    folder = tmp_path / "data"
    script = ("import sys; from pathlib import Path; from parablur.config import FetchConfig; "
              "from parablur.ingestion import fetch_dataset; "
              f"fetch_dataset(FetchConfig(input_dir=Path({str(folder)!r}), "
              f"url_list=Path({str(url_list)!r}), width=64, height=64, download_workers=2, "
              "timeout_s=5), progress=False)")
    env = dict(os.environ, PYTHONPATH=str(SRC))
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(folder.glob("img_*"))) < 4:
            assert child.poll() is None, "fetch finished before it could be killed"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    done = sorted(folder.glob("img_*"))
    assert 4 <= len(done) < 24
    for path in done:  # nothing half-written under a final name
        assert cv2.imread(str(path)) is not None

    summary = fetch_dataset(small_config(folder, url_list=url_list, num_images=24,
                                         download_workers=4),
                            progress=False)
    assert summary.reused >= 3 and summary.reused + summary.downloaded == 24
    assert summary.generated == summary.failed == 0
    assert_dataset_consistent(folder, 24)
