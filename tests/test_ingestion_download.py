"""Each misbehaving server ends in a valid image (downloaded or generated), never a bad file."""

import pytest
from ingestion_support import (
    RawServer,
    assert_dataset_consistent,
    jpeg_bytes,
    png_bomb,
    small_config,
)

from parablur.ingestion import fetch_dataset
from parablur.ingestion.download import Downloader, DownloadFailed, parse_retry_after

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
