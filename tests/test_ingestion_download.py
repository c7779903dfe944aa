"""Each misbehaving server ends in a valid image (downloaded or generated), never a bad file;
a disk that refuses one image costs that image only; Ctrl-C stops every download."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from ingestion_support import (
    RawServer,
    assert_dataset_consistent,
    jpeg_bytes,
    png_bomb,
    small_config,
)

from parablur.cli import main
from parablur.ingestion import fetch_dataset
from parablur.ingestion.download import (
    DownloadCancelled,
    Downloader,
    DownloadFailed,
    parse_retry_after,
)
from parablur.ingestion.manifest import MANIFEST_NAME

pytestmark = pytest.mark.timeout(30)
GOOD = jpeg_bytes()


def fetch_one(tmp_path, url, **overrides):
    """Fetch a one-image dataset from ``url`` and check it is complete and consistent."""
    config = small_config(tmp_path / "data", source_url=url, **overrides)
    summary = fetch_dataset(config, progress=False)
    doc = assert_dataset_consistent(config.input_dir, 1)
    assert summary.failed == 0 and len(summary.images) == 1
    return summary, doc["images"][0]


def assert_downloaded(summary, entry):
    assert summary.downloaded == 1 and summary.generated == 0
    assert entry["file"] == "img_0000.jpg" and entry["bytes"] == len(GOOD)
    assert entry["source"].startswith("http://")


def assert_fell_back(summary, entry, reason):
    assert summary.downloaded == 0 and summary.generated == 1
    assert entry["source"] == "generated:scene"
    assert reason in entry["last_error"]
    assert summary.failures == [{"index": 0, "reason": entry["last_error"],
                                 "outcome": "generated"}]


def test_plain_success(tmp_path, httpserver):
    httpserver.expect_request("/img").respond_with_data(GOOD, content_type="image/jpeg")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))
    assert_downloaded(summary, entry)
    assert entry["attempts"] == 1 and entry["last_error"] is None and summary.retried == 0


def test_503_with_retry_after_then_success(tmp_path, httpserver):
    httpserver.expect_oneshot_request("/img").respond_with_data(
        "busy", status=503, headers={"Retry-After": "1"})
    httpserver.expect_request("/img").respond_with_data(GOOD, content_type="image/jpeg")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"), retry_after_cap_s=1.0)
    assert_downloaded(summary, entry)
    assert entry["attempts"] == 2 and summary.retried == 1


def test_retry_after_is_capped(tmp_path, httpserver):
    httpserver.expect_oneshot_request("/img").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "3600"})
    httpserver.expect_request("/img").respond_with_data(GOOD, content_type="image/jpeg")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))  # cap 0.2 s
    assert_downloaded(summary, entry)


def test_429_forever_falls_back_after_all_retries(tmp_path, httpserver):
    httpserver.expect_request("/img").respond_with_data("slow down", status=429)
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"), retries=2)
    assert_fell_back(summary, entry, "HTTP 429")
    assert entry["attempts"] == 3 and summary.retried == 2


def test_404_is_not_retried(tmp_path, httpserver):
    httpserver.expect_request("/img").respond_with_data("gone", status=404)
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))
    assert_fell_back(summary, entry, "HTTP 404")
    assert entry["attempts"] == 1


@pytest.mark.parametrize("body,content_type,reason", [
    (b"<html><body>Service unavailable</body></html>", "text/html", "text/html, not an image"),
    (b"<html><body>sneaky</body></html>", "image/jpeg", "not a recognised image"),
    (b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "image/jpeg", "JPEG"),
    (b"", "image/jpeg", "empty body"),
])
def test_bad_200_bodies_fall_back(tmp_path, httpserver, body, content_type, reason):
    httpserver.expect_request("/img").respond_with_data(body, content_type=content_type)
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))
    assert_fell_back(summary, entry, reason)


def test_body_over_max_bytes_is_refused(tmp_path, httpserver):
    big = GOOD + b"\0" * 5000
    httpserver.expect_request("/img").respond_with_data(big, content_type="image/jpeg")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"), max_bytes=4096)
    assert_fell_back(summary, entry, "max-bytes")


def test_png_declaring_30000x30000_is_refused(tmp_path, httpserver):
    httpserver.expect_request("/img").respond_with_data(png_bomb(), content_type="image/png")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))
    assert_fell_back(summary, entry, "30000x30000")


def test_png_is_stored_with_png_extension(tmp_path, httpserver):
    import cv2
    import numpy as np
    png = cv2.imencode(".png", np.full((20, 30, 3), 90, np.uint8))[1].tobytes()
    httpserver.expect_request("/img").respond_with_data(png, content_type="image/png")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))
    assert entry["file"] == "img_0000.png" and (entry["width"], entry["height"]) == (30, 20)


def test_redirect_is_followed(tmp_path, httpserver):
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data(GOOD, content_type="image/jpeg")
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/a"))
    assert_downloaded(summary, entry)
    assert entry["source"].endswith("/b") and entry["url"].endswith("/a")


def test_redirect_to_file_url_is_refused(tmp_path, httpserver):
    httpserver.expect_request("/img").respond_with_data(
        "", status=302, headers={"Location": "file:///etc/passwd"})
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/img"))
    assert_fell_back(summary, entry, "file: URL")
    assert entry["attempts"] == 1


def test_redirect_loop_is_detected(tmp_path, httpserver):
    httpserver.expect_request("/a").respond_with_data("", status=302, headers={"Location": "/b"})
    httpserver.expect_request("/b").respond_with_data("", status=301, headers={"Location": "/a"})
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/a"))
    assert_fell_back(summary, entry, "redirect loop")


def test_too_many_redirects(tmp_path, httpserver):
    for i in range(4):
        httpserver.expect_request(f"/r{i}").respond_with_data(
            "", status=307, headers={"Location": f"/r{i + 1}"})
    summary, entry = fetch_one(tmp_path, httpserver.url_for("/r0"), max_redirects=2)
    assert_fell_back(summary, entry, "more than 2 redirects")


@pytest.fixture
def raw_server():
    server = RawServer(GOOD)
    yield server
    server.close()


def test_connection_reset_is_retried(tmp_path, raw_server):
    summary, entry = fetch_one(tmp_path, raw_server.url("/reset-once"))
    assert_downloaded(summary, entry)
    assert entry["attempts"] == 2 and raw_server.hits("/reset-once") == 2


def test_content_length_of_odd_digits_is_ignored(tmp_path, raw_server):
    summary, entry = fetch_one(tmp_path, raw_server.url("/oddlength"))
    assert_downloaded(summary, entry)


def test_connection_reset_forever_falls_back(tmp_path, raw_server):
    summary, entry = fetch_one(tmp_path, raw_server.url("/reset"), retries=1)
    assert_fell_back(summary, entry, "connection error")
    assert raw_server.hits("/reset") == 2


def test_response_slower_than_timeout_falls_back(tmp_path, raw_server):
    summary, entry = fetch_one(tmp_path, raw_server.url("/slow"), retries=1, timeout_s=0.3)
    assert_fell_back(summary, entry, "timed out")
    assert entry["attempts"] == 2


def test_truncated_body_is_retried_then_succeeds(tmp_path, raw_server):
    summary, entry = fetch_one(tmp_path, raw_server.url("/truncated-once"))
    assert_downloaded(summary, entry)
    assert entry["attempts"] == 2


def test_truncated_body_forever_falls_back(tmp_path, raw_server):
    summary, entry = fetch_one(tmp_path, raw_server.url("/truncated"), retries=1)
    assert_fell_back(summary, entry, "cut off")
    assert raw_server.hits("/truncated") == 2


def test_downloader_reports_attempts_on_failure(tmp_path, httpserver):
    httpserver.expect_request("/img").respond_with_data("oops", status=500)
    downloader = Downloader(small_config(tmp_path, retries=3))
    with pytest.raises(DownloadFailed) as info:
        downloader.fetch(httpserver.url_for("/img"))
    downloader.close()
    assert info.value.attempts == 4 and "HTTP 500" in info.value.reason


def test_parse_retry_after():
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_an_unwritable_image_fails_alone_and_the_fetch_goes_on(tmp_path, httpserver, capsys):
    png = cv2.imencode(".png", np.full((20, 30, 3), 90, np.uint8))[1].tobytes()
    httpserver.expect_request("/0").respond_with_data(GOOD, content_type="image/jpeg")
    httpserver.expect_request("/1").respond_with_data(png, content_type="image/png")
    httpserver.expect_request("/2").respond_with_data(GOOD, content_type="image/jpeg")
    (tmp_path / "u.txt").write_text("".join(httpserver.url_for(f"/{i}") + "\n" for i in range(3)))
    folder = tmp_path / "data"
    # A dataset of ParaBlur's with its first image (fetch builds only in a folder of its own).
    assert main(["fetch", "--input-dir", str(folder), "--url-list", str(tmp_path / "u.txt"),
                 "--num-images", "1", "--quiet"]) == 0
    # Folders where images 1 and 2 go: no file can be put there, even by root.
    (folder / "img_0001.png").mkdir()
    (folder / "img_0002.jpg").mkdir()
    code = main(["fetch", "--input-dir", str(folder), "--url-list", str(tmp_path / "u.txt"),
                 "--num-images", "3", "--width", "64", "--height", "64", "--quiet",
                 "--summary-json", str(tmp_path / "f.json")])
    assert code == 1  # image 2 could not be stored at all
    doc = json.loads((tmp_path / "f.json").read_text())
    assert (doc["reused"], doc["generated"], doc["failed"]) == (1, 1, 1)
    one, two = doc["failures"]
    assert one["index"] == 1 and one["outcome"] == "generated"
    assert "cannot write img_0001.png" in one["reason"]
    assert two["index"] == 2 and two["outcome"] == "failed"
    assert "cannot write img_0002.jpg" in two["reason"]
    assert "image 2 FAILED" in capsys.readouterr().out
    entries = json.loads((folder / MANIFEST_NAME).read_text())["images"]
    assert [(e["index"], e["file"]) for e in entries] == [(0, "img_0000.jpg"),
                                                          (1, "img_0001.jpg")]
    assert (folder / "img_0001.png").is_dir() and (folder / "img_0002.jpg").is_dir()
    assert not list(folder.glob(".*.part"))


def test_closing_the_downloader_ends_a_backoff_sleep_without_retrying(tmp_path, raw_server):
    downloader = Downloader(small_config(tmp_path, retries=5, retry_after_cap_s=30))
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(
        pytest.raises(DownloadCancelled, downloader.fetch, raw_server.url("/busy"))))
    worker.start()
    deadline = time.monotonic() + 10
    while raw_server.hits("/busy") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # now in the 30 s wait that the 503's Retry-After asked for
    downloader.close()
    worker.join(5)
    assert not worker.is_alive() and outcome
    assert raw_server.hits("/busy") == 1  # the wait was cut short, not turned into a retry


def _default_signals() -> None:
    """In the child: SIGINT as a foreground terminal program has it (not inherited-ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.timeout(60)
@pytest.mark.slow
def test_ctrl_c_stops_downloads_in_flight(tmp_path, raw_server):
    # Image 0 waits out a 30 s Retry-After; image 1's body arrives at 100 bytes per 0.5 s
    # (about 10 s). Ctrl-C must end both at once, with no retry and no stand-in image.
    urls = [raw_server.url("/busy/0"), raw_server.url("/trickle/1")]
    (tmp_path / "u.txt").write_text("\n".join(urls) + "\n")
    folder = tmp_path / "data"
    argv = ["fetch", "--input-dir", str(folder), "--url-list", str(tmp_path / "u.txt"),
            "--num-images", "2", "--retries", "5", "--timeout-s", "60", "--download-workers",
            "2", "--width", "64", "--height", "64", "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    child = subprocess.Popen([sys.executable, "-m", "parablur", *argv], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=_default_signals)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                raw_server.hits("/busy/0") and raw_server.hits("/trickle/1")):
            assert child.poll() is None, child.communicate()
            time.sleep(0.02)
        time.sleep(0.5)  # image 0 is in its backoff wait, image 1 part-way through its body
        hits = (raw_server.hits("/busy/0"), raw_server.hits("/trickle/1"))
        assert hits == (1, 1)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=5)  # not the 10 s of the body, nor 30 s of waiting
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    assert child.returncode == 130, err.decode()[-2000:]
    assert err.decode().strip().splitlines()[-1].endswith("run again to do the rest")
    assert (raw_server.hits("/busy/0"), raw_server.hits("/trickle/1")) == hits
    assert not list(folder.glob("img_*"))  # no stand-in was generated for either
    assert json.loads((folder / MANIFEST_NAME).read_text())["images"] == []
