"""`parablur fetch --fallback faces-video`: generated clips with audio and every face's box in every
frame in the manifest, in a folder or a store alike; reused, grown, and refused where it must be."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import av
import pytest

from parablur import cli
from parablur.config import FetchConfig
from parablur.errors import ConfigError, DatasetError
from parablur.files import sha256_file
from parablur.ingestion import fetch_dataset
from parablur.ingestion.face_clips import generate_face_clip
from parablur.ingestion.fetch import fetch_into
from parablur.ingestion.folder_fetch import pixel_box
from parablur.ingestion.manifest import MANIFEST_NAME, clip_truth, compact_json, dataset_settings
from parablur.storage import open_store

pytestmark = pytest.mark.timeout(120)

W, H, SECONDS, FPS = 160, 120, 1, 30
SMALL = ["--width", str(W), "--height", str(H), "--clip-seconds", str(SECONDS), "--quiet"]


def _fetch(where, *extra: str) -> int:
    return cli.main(["fetch", "--fallback", "faces-video", "--input-dir", str(where), *SMALL, *extra])


def _summary(path: Path) -> dict:
    return json.loads(path.read_text())


def _config(where, **overrides) -> FetchConfig:
    values = dict(input_dir=where, fallback="faces-video", num_images=2, width=W, height=H,
                  clip_seconds=SECONDS, download_workers=2)
    values.update(overrides)
    return FetchConfig(**values)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Two clips fetched into a folder (module-wide: each test copies what it changes)."""
    folder = tmp_path_factory.mktemp("fetch-clips") / "clips"
    assert _fetch(folder, "--num-images", "2") == 0
    return folder


def test_clips_play_with_audio_and_the_manifest_has_each_frames_true_boxes(clips):
    doc = json.loads((clips / MANIFEST_NAME).read_text())
    assert doc["meta"]["fallback"] == "faces-video"
    assert (doc["meta"]["clip_seconds"], doc["meta"]["clip_fps"]) == (SECONDS, FPS)
    entries = doc["images"]
    assert [e["file"] for e in entries] == ["clip_0000.mp4", "clip_0001.mp4"]
    assert sorted(p.name for p in clips.iterdir()) == ["clip_0000.mp4", "clip_0001.mp4", MANIFEST_NAME]
    for entry in entries:
        path = clips / entry["file"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]
        assert entry["url"] is None and entry["source"] == "generated:faces-video"
        assert entry["faces"] is None  # the image field: a clip's truth is per frame, in "video"
        video = entry["video"]
        assert (video["fps"], video["frames"], video["seconds"]) == (FPS, FPS * SECONDS, SECONDS)
        with av.open(str(path)) as c:
            v, a = c.streams.video[0], c.streams.audio[0]
            assert (v.codec_context.name, v.width, v.height) == ("h264", W, H)
            assert v.average_rate == FPS and a.codec_context.name == "aac"
            decoded = sum(1 for _ in c.decode(video=0))
        assert decoded == video["frames"] == len(video["faces"])
        # The truth is the generator's, each box the pixels it touches, in whole pixels.
        clip = generate_face_clip(entry["index"], W, H, seconds=SECONDS, fps=FPS, seed=0)
        assert video["faces"] == [[pixel_box(b, W, H) for b in frame] for frame in clip.truth()]
        for frame in video["faces"]:
            for x, y, w, h in frame:
                assert all(type(v) is int for v in (x, y, w, h))
                assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= W and y + h <= H
    assert any(frame for e in entries for frame in e["video"]["faces"])
    assert clip_truth(clips) == {e["file"]: e["video"] for e in entries}


def test_the_manifest_takes_a_line_per_frame(clips):
    """Each frame's boxes are written on one line, not a line per number."""
    text = (clips / MANIFEST_NAME).read_text()
    frames = [line for line in text.splitlines()
              if re.fullmatch(r"\s*\[(\[\d+, \d+, \d+, \d+\](, )?)*\],?", line)]
    assert len(frames) == 2 * FPS * SECONDS
    assert len(text.splitlines()) < len(frames) + 80


def test_compact_json_changes_layout_only():
    doc = {"s": "[\n 1,\n 2\n]", "boxes": [[1, 2.5, -3, 4e20], []], "rows": [[[1, 2]], [[3, 4], [5, 6]]],
           "mixed": [1, "a", [2]]}
    text = compact_json(doc)
    assert json.loads(text) == doc
    assert '"boxes": [[1, 2.5, -3, 4e+20], []]' in text and "[[3, 4], [5, 6]]" in text


def test_a_rerun_reuses_the_clips_and_a_plain_fetch_keeps_the_datasets_settings(clips, tmp_path, capsys):
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in clips.glob("*.mp4")}
    assert _fetch(clips, "--summary-json", str(tmp_path / "s.json")) == 0
    again = _summary(tmp_path / "s.json")
    assert (again["reused"], again["generated"], again["media"]) == (2, 0, "clips")
    # No flags at all: the dataset's own kind, count, size, length and rate; nothing made otherwise.
    capsys.readouterr()
    assert cli.main(["fetch", "--input-dir", str(clips), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Dataset of 2 clips from faces-video") and "another size" not in out
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in clips.glob("*.mp4")} == before
    assert dataset_settings(clips) == {"num_images": 2, "fallback": "faces-video", "width": W,
                                       "height": H, "clip_seconds": SECONDS, "clip_fps": FPS}


def test_more_clips_are_added_as_the_dataset_was_made_and_force_makes_the_same_again(clips, tmp_path):
    folder = tmp_path / "grow"
    folder.mkdir()
    for p in clips.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    assert cli.main(["fetch", "--input-dir", str(folder), "--num-images", "3", "--quiet",
                     "--summary-json", str(tmp_path / "s.json")]) == 0
    grown = _summary(tmp_path / "s.json")
    assert (grown["reused"], grown["generated"], len(grown["images"])) == (2, 1, 3)
    third = json.loads((folder / MANIFEST_NAME).read_text())["images"][2]
    assert (third["file"], third["width"], third["height"]) == ("clip_0002.mp4", W, H)
    assert third["video"]["frames"] == FPS * SECONDS
    old = (folder / "clip_0000.mp4").read_bytes()
    assert cli.main(["fetch", "--input-dir", str(folder), "--force-download", "--quiet",
                     "--summary-json", str(tmp_path / "f.json")]) == 0
    assert _summary(tmp_path / "f.json")["generated"] == 3
    assert (folder / "clip_0000.mp4").read_bytes() == old  # deterministic from seed and index
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_a_memory_store_gets_the_clips_by_key_and_reuses_them_as_they_are(tmp_path):
    store = open_store(f"memory://parablur-clips-{os.getpid()}-{uuid.uuid4().hex[:8]}/data")
    config = _config(tmp_path / "not-read")
    summary = fetch_into(store, config, progress=False)
    assert summary.images == [Path("clip_0000.mp4"), Path("clip_0001.mp4")] and summary.media == "clips"
    doc = json.loads(store.read(MANIFEST_NAME))
    assert sorted(doc["meta"]["object_etags"]) == ["clip_0000.mp4", "clip_0001.mp4"]
    assert [len(e["video"]["faces"]) for e in doc["images"]] == [FPS * SECONDS] * 2
    again = fetch_into(store, config, progress=False)
    assert (again.reused, again.generated, again.media) == (2, 0, "clips")
    assert again.dataset_checksum == summary.dataset_checksum
    assert clip_truth(store) == {e["file"]: e["video"] for e in doc["images"]}


def test_a_file_url_through_the_command_line_is_filled_and_reused(clips, tmp_path):
    (tmp_path / "data").mkdir()  # a file:// root must exist, as for images
    url = f"file://{tmp_path / 'data'}"
    assert _fetch(url, "--num-images", "2", "--summary-json", str(tmp_path / "a.json")) == 0
    first = _summary(tmp_path / "a.json")
    assert first["images"] == ["clip_0000.mp4", "clip_0001.mp4"] and first["generated"] == 2
    # the same clips as the folder's (deterministic), uploaded with the manifest last
    for name in first["images"]:
        assert (tmp_path / "data" / name).read_bytes() == (clips / name).read_bytes()
    assert _fetch(url, "--summary-json", str(tmp_path / "b.json")) == 0
    assert _summary(tmp_path / "b.json")["reused"] == 2


def test_defaults_for_clips_differ_from_the_images(tmp_path, capsys):
    a = cli.build_parser().parse_args(["fetch", "--fallback", "faces-video", "--input-dir",
                                       str(tmp_path / "new")])
    config = cli._fetch_config(a)
    assert (config.num_images, config.width, config.height) == (4, 1280, 720)
    assert (config.clip_seconds, config.clip_fps) == (10.0, 30.0)
    images = cli._fetch_config(cli.build_parser().parse_args(["fetch", "--input-dir", str(tmp_path / "i")]))
    assert (images.num_images, images.width, images.height) == (160, 2000, 2000)
    with pytest.raises(SystemExit):
        cli.main(["fetch", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "or 4 clips with --fallback faces-video" in help_text and "1280 for clips" in help_text


@pytest.mark.parametrize(("flags", "message"), [
    (["--clip-seconds", "0"], "clip-seconds must be > 0"),
    (["--clip-fps", "0"], "clip-fps must be in 1..240"),
    (["--clip-seconds", "0.01"], "at least one frame"),
    (["--width", "161"], "must be even and >= 16"),
])
def test_bad_clip_settings_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    folder = tmp_path / "c"
    assert cli.main(["fetch", "--fallback", "faces-video", "--input-dir", str(folder), "--quiet",
                     *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not folder.exists()


def test_a_url_list_and_faces_video_are_refused_together(tmp_path):
    with pytest.raises(ConfigError, match="always generated"):
        _config(tmp_path, url_list=tmp_path / "urls.txt")


def test_images_and_clips_never_share_a_dataset(clips, tmp_path, capsys):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in clips.iterdir())
    assert cli.main(["fetch", "--input-dir", str(clips), "--fallback", "faces", "--quiet"]) == 2
    assert "is a dataset of faces-video clips" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in clips.iterdir()) == before
    images = tmp_path / "images"
    assert cli.main(["fetch", "--input-dir", str(images), "--num-images", "1", "--width", "64",
                     "--height", "64", "--source-url", "http://127.0.0.1:9/x", "--retries", "0",
                     "--quiet"]) == 0
    assert _fetch(images) == 2
    assert "is a dataset of images" in capsys.readouterr().err
    assert sorted(p.name for p in images.iterdir()) == ["img_0000.jpg", MANIFEST_NAME]


def test_clips_of_your_own_are_used_read_only_and_never_written_over(tmp_path):
    """A folder or prefix with clips and no ParaBlur manifest is yours: nothing is generated there."""
    mine = b"my own video"
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "clip_0000.mp4").write_bytes(mine)
    summary = fetch_dataset(_config(folder), progress=False)
    assert summary.local and summary.generated == 0 and summary.images == [folder / "clip_0000.mp4"]
    url_root = tmp_path / "prefix"
    url_root.mkdir()
    (url_root / "clip_0001.mp4").write_bytes(mine)
    summary = fetch_dataset(_config(f"file://{url_root}"), progress=False)
    assert summary.local and summary.generated == 0 and summary.images == [Path("clip_0001.mp4")]
    with pytest.raises(DatasetError, match="read-only"):
        fetch_dataset(_config(folder, force_download=True), progress=False)
    assert [p.name for p in folder.iterdir()] == ["clip_0000.mp4"]
    assert [p.name for p in url_root.iterdir()] == ["clip_0001.mp4"]
    assert (folder / "clip_0000.mp4").read_bytes() == (url_root / "clip_0001.mp4").read_bytes() == mine
