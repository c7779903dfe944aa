"""`parablur fetch --input-dir s3://...`: images and manifest in SeaweedFS, reused on a second fetch."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from ingestion_support import closed_port
from seaweed import BUCKET, FlakyProxy

from parablur import cli

pytestmark = [pytest.mark.timeout(180)]


SOURCE = f"http://127.0.0.1:{closed_port()}/img"


def _fetch(url: str, options: Path, summary: Path, *extra: str) -> int:
    # Nothing listens at the source: every image is generated (the fallback), offline and fast.
    return cli.main(["fetch", "--input-dir", url, "--num-images", "5", "--width", "64",
                     "--height", "48", "--source-url", SOURCE,
                     "--retries", "0", "--storage-options", f"@{options}", "--quiet",
                     "--summary-json", str(summary), *extra])


def test_fetch_uploads_images_and_manifest_then_reuses_them(seaweed, tmp_path) -> None:
    prefix = f"fetch-{uuid.uuid4().hex[:10]}"
    url = f"s3://{BUCKET}/{prefix}/data"
    proxy = FlakyProxy(seaweed.s3_port)
    try:
        options = tmp_path / "s3.json"
        options.write_text(json.dumps(seaweed.options(endpoint=proxy.endpoint)))
        assert _fetch(url, options, tmp_path / "one.json") == 0
        one = json.loads((tmp_path / "one.json").read_text())
        assert (one["generated"], one["failed"], len(one["images"])) == (5, 0, 5)
        names = [f"img_{i:04d}.jpg" for i in range(5)]
        assert sorted(seaweed.keys(f"{prefix}/data")) == sorted(
            f"{prefix}/data/{n}" for n in [*names, "manifest.json"])
        client = seaweed.client()
        manifest = json.loads(client.cat_file(f"{BUCKET}/{prefix}/data/manifest.json"))
        assert [e["file"] for e in manifest["images"]] == names
        for entry in manifest["images"]:
            body = client.cat_file(f"{BUCKET}/{prefix}/data/{entry['file']}")
            assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert one["dataset_checksum"]

        mark = len(proxy.settled())
        assert _fetch(url, options, tmp_path / "two.json") == 0
        two = json.loads((tmp_path / "two.json").read_text())
        assert (two["reused"], two["generated"], two["downloaded"]) == (5, 0, 0)
        assert two["dataset_checksum"] == one["dataset_checksum"]
        writes = [r for r in proxy.settled()[mark:] if r.startswith("PUT ")
                  and "/.parablur-probe-" not in r]
        assert writes == []  # reused in place: nothing uploaded again

        # A changed image is noticed (its ETag no longer matches) and replaced.
        client.pipe_file(f"{BUCKET}/{prefix}/data/img_0002.jpg", b"not the image")
        assert _fetch(url, options, tmp_path / "three.json") == 0
        three = json.loads((tmp_path / "three.json").read_text())
        assert three["dataset_checksum"] == one["dataset_checksum"]
        body = client.cat_file(f"{BUCKET}/{prefix}/data/img_0002.jpg")
        assert hashlib.sha256(body).hexdigest() == manifest["images"][2]["sha256"]
        secret = seaweed.options()["secret"]
        for name in ("one.json", "two.json", "three.json"):
            assert secret not in (tmp_path / name).read_text()
    finally:
        proxy.close()


def test_fetch_leaves_a_users_prefix_as_it_is(seaweed, tmp_path) -> None:
    prefix = f"users-{uuid.uuid4().hex[:10]}"
    seaweed.client().pipe({f"{BUCKET}/{prefix}/mine/a.jpg": b"a", f"{BUCKET}/{prefix}/mine/b.png": b"b"})
    options = tmp_path / "s3.json"
    options.write_text(json.dumps(seaweed.options()))
    assert _fetch(f"s3://{BUCKET}/{prefix}/mine", options, tmp_path / "s.json") == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["local"] is True and summary["images"] == ["a.jpg", "b.png"]
    assert sorted(seaweed.keys(f"{prefix}/mine")) == [f"{prefix}/mine/a.jpg", f"{prefix}/mine/b.png"]


def test_fetch_faces_video_into_s3_then_reuses_the_clips(seaweed, tmp_path) -> None:
    prefix = f"clips-{uuid.uuid4().hex[:10]}"
    url = f"s3://{BUCKET}/{prefix}/data"
    options = tmp_path / "s3.json"
    options.write_text(json.dumps(seaweed.options()))
    argv = ["fetch", "--fallback", "faces-video", "--input-dir", url, "--num-images", "2",
            "--width", "160", "--height", "120", "--clip-seconds", "1", "--storage-options",
            f"@{options}", "--quiet", "--summary-json"]
    assert cli.main([*argv, str(tmp_path / "one.json")]) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    assert (one["generated"], one["media"], one["images"]) == (2, "clips", ["clip_0000.mp4", "clip_0001.mp4"])
    assert sorted(seaweed.keys(f"{prefix}/data")) == sorted(
        f"{prefix}/data/{n}" for n in ["clip_0000.mp4", "clip_0001.mp4", "manifest.json"])
    client = seaweed.client()
    manifest = json.loads(client.cat_file(f"{BUCKET}/{prefix}/data/manifest.json"))
    for entry in manifest["images"]:
        body = client.cat_file(f"{BUCKET}/{prefix}/data/{entry['file']}")
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert len(entry["video"]["faces"]) == entry["video"]["frames"] == 30
    assert cli.main([*argv, str(tmp_path / "two.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())
    assert (two["reused"], two["generated"]) == (2, 0)
    assert two["dataset_checksum"] == one["dataset_checksum"]
