"""A folder ParaBlur did not create is the user's: used read-only, never written to."""

import hashlib
import json
from pathlib import Path

import pytest
from ingestion_support import closed_port, folder_state, jpeg_bytes, small_config

from parablur.cli import main
from parablur.errors import DatasetError
from parablur.ingestion import fetch_dataset
from parablur.ingestion.manifest import MANIFEST_FORMAT, MANIFEST_NAME

pytestmark = pytest.mark.timeout(60)

# manifest.json files that ParaBlur did not write, or cannot trust.
FOREIGN = {
    "another program's": json.dumps({"app": "PhotoSorter", "version": 3,
                                     "images": ["img_0000.jpg", "img_0003.jpg"]}),
    "not JSON": "\x00\x01 not json at all",
    "a newer ParaBlur's": json.dumps({"format": MANIFEST_FORMAT, "version": 2, "meta": {},
                                      "images": []}),
    "one naming a file outside": json.dumps({
        "format": MANIFEST_FORMAT, "version": 1, "meta": {}, "images": [{
            "index": 0, "file": "../escape.jpg", "url": None, "source": "generated:scene",
            "sha256": "0" * 64, "bytes": 1, "width": 8, "height": 8, "attempts": 0,
            "last_error": None}]}),
}


def users_photos(folder: Path, manifest: str) -> Path:
    """A folder of the user's: photos named like ParaBlur's, a sub-folder, notes, a manifest."""
    (folder / "trip").mkdir(parents=True)
    (folder / "img_0000.jpg").write_bytes(jpeg_bytes(1))
    (folder / "img_0003.jpg").write_bytes(jpeg_bytes(2))
    (folder / "trip" / "beach.jpg").write_bytes(jpeg_bytes(3))
    (folder / "notes.txt").write_text("my holiday\n")
    (folder / MANIFEST_NAME).write_text(manifest)
    return folder


def offline_url() -> str:
    return f"http://127.0.0.1:{closed_port()}/img"


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_foreign_manifest_makes_the_folder_read_only(tmp_path, kind):
    photos = users_photos(tmp_path / "photos", FOREIGN[kind])
    before = folder_state(photos)
    summary = fetch_dataset(small_config(photos, num_images=2, source_url=offline_url()),
                            progress=False)
    assert folder_state(photos) == before
    assert summary.local and summary.foreign_manifest
    assert summary.images == [photos / "img_0000.jpg", photos / "img_0003.jpg",
                              photos / "trip" / "beach.jpg"]
    assert summary.downloaded == summary.generated == 0
    text = summary.format_summary()
    assert "read-only" in text and "Not a dataset ParaBlur created" in text


@pytest.mark.parametrize("command", ["fetch", "run", "bench"])
def test_no_command_modifies_a_users_folder_with_a_foreign_manifest(tmp_path, monkeypatch,
                                                                    capsys, command):
    photos = users_photos(tmp_path / "photos", FOREIGN["another program's"])
    before = folder_state(photos)
    monkeypatch.chdir(tmp_path)  # default outputs (processed/, the CSV) land beside photos/
    dataset = ["--num-images", "2", "--width", "64", "--height", "64",
               "--source-url", offline_url()]
    argv = {
        "fetch": ["fetch", *dataset],
        "run": ["run", "--blur-radius", "2"],
        "bench": ["bench", *dataset, "--executors", "threads", "--workers", "2",
                  "--blur-radius", "2", "--trials", "1", "--warmup", "0", "--no-ceiling",
                  "--no-report"],
    }[command]
    assert main([*argv, "--input-dir", "photos", "--quiet"]) == 0
    assert folder_state(photos) == before
    out = capsys.readouterr().out
    if command != "run":
        assert "Using 3 images already in photos (your own images, read-only" in out
    if command != "fetch":  # the photos were blurred, into processed/
        assert len(list((tmp_path / "processed").rglob("*.jpg"))) >= 3


def test_force_download_into_a_users_folder_is_refused(tmp_path, capsys):
    photos = users_photos(tmp_path / "photos", FOREIGN["another program's"])
    mine = tmp_path / "mine"  # no manifest at all: the user's too
    mine.mkdir()
    (mine / "img_0000.jpg").write_bytes(jpeg_bytes(5))
    before = folder_state(tmp_path)
    for folder in (photos, mine):
        code = main(["fetch", "--input-dir", str(folder), "--force-download", "--num-images",
                     "2", "--source-url", offline_url(), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "not a dataset ParaBlur created" in err[0] and "--force-download" in err[0]
    assert folder_state(tmp_path) == before


def test_a_foreign_manifest_without_images_is_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / MANIFEST_NAME).write_text(FOREIGN["another program's"])
    before = folder_state(folder)
    with pytest.raises(DatasetError, match="ParaBlur does not write into it"):
        fetch_dataset(small_config(folder, source_url=offline_url()), progress=False)
    assert folder_state(folder) == before


def test_a_new_folder_becomes_parablurs_and_stays_writable(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()  # empty: ParaBlur's to fill
    config = small_config(folder, num_images=2, source_url=offline_url())
    first = fetch_dataset(config, progress=False)
    assert not first.local and first.generated == 2
    assert json.loads((folder / MANIFEST_NAME).read_text())["format"] == MANIFEST_FORMAT
    (folder / "README.txt").write_text("dataset for the study\n")  # the user's note, later
    again = fetch_dataset(config, progress=False)
    assert not again.local and again.reused == 2
    assert (folder / "README.txt").read_text() == "dataset for the study\n"


def test_a_folder_of_other_files_is_not_made_a_dataset(tmp_path, capsys):
    """A folder with no images but files of the user's (a thesis, GIFs) is left alone."""
    from parablur.cli import main

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "thesis.pdf").write_bytes(b"%PDF-1.4 mine")
    (docs / ".notes.part").write_bytes(b"mine too")
    assert main(["fetch", "--input-dir", str(docs), "--num-images", "2", "--width", "32",
                 "--height", "32", "--quiet", "--source-url", "http://127.0.0.1:9/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ParaBlur did not make" in err[0]
    assert sorted(p.name for p in docs.iterdir()) == [".notes.part", "thesis.pdf"]


@pytest.mark.parametrize("kind", ["scene", "faces-video"])
def test_a_users_file_under_a_name_parablur_would_use_is_never_overwritten(tmp_path, kind):
    """A file the user put in ParaBlur's dataset folder, named as the next image or clip would
    be, is left as it is: that image fails with the reason, the rest are made."""
    folder = tmp_path / "data"
    extra = dict(fallback=kind, clip_seconds=1.0, width=160, height=120) if kind == "faces-video" \
        else {}
    fetch_dataset(small_config(folder, num_images=1, source_url=offline_url(), **extra),
                  progress=False)
    name = "clip_0001.mp4" if kind == "faces-video" else "img_0001.jpg"
    (folder / name).write_bytes(b"the user's own file")
    grown = fetch_dataset(small_config(folder, num_images=3, source_url=offline_url(), **extra),
                          progress=False)
    assert (folder / name).read_bytes() == b"the user's own file"
    assert [f["index"] for f in grown.failures if f["outcome"] == "failed"] == [1]
    assert any("is in the way" in f["reason"] for f in grown.failures)
    assert (folder / name.replace("0001", "0002")).is_file()


def test_a_users_object_in_a_store_dataset_is_never_uploaded_over(tmp_path):
    import uuid

    from parablur.storage import open_store

    url = f"memory://parablur-own-{uuid.uuid4().hex[:8]}/data"
    fetch_dataset(small_config(url, num_images=1, source_url=offline_url()), progress=False)
    store = open_store(url)
    store.write("img_0001.jpg", b"the user's own object")
    grown = fetch_dataset(small_config(url, num_images=3, source_url=offline_url()), progress=False)
    assert store.read("img_0001.jpg") == b"the user's own object"
    assert [f["index"] for f in grown.failures if f["outcome"] == "failed"] == [1]
    assert store.info("img_0002.jpg") is not None


@pytest.mark.parametrize("changed", [False, True])
def test_an_image_in_another_format_goes_only_while_it_is_still_parablurs(tmp_path, changed):
    """When an image is made again under another name (a PNG download replaced by a generated
    JPEG), the old file is removed only if it still holds the bytes ParaBlur wrote: one the
    user changed since is left as it is."""
    photos = tmp_path / "photos"
    fetch_dataset(small_config(photos, source_url=offline_url(), fallback="scene"), progress=False)
    manifest = json.loads((photos / MANIFEST_NAME).read_text())
    entry = manifest["images"][0]
    png = photos / "img_0000.png"
    png.write_bytes(jpeg_bytes(5))  # stands for the PNG an earlier download brought
    (photos / entry["file"]).unlink()
    entry.update(file=png.name, sha256=hashlib.sha256(png.read_bytes()).hexdigest(),
                 bytes=png.stat().st_size)
    (photos / MANIFEST_NAME).write_text(json.dumps(manifest))
    if changed:
        png.write_bytes(b"the user's own edit")
    fetch_dataset(small_config(photos, source_url=offline_url(), fallback="scene",
                               force_download=True), progress=False)
    assert (photos / "img_0000.jpg").is_file()
    assert png.exists() == changed
    if changed:
        assert png.read_bytes() == b"the user's own edit"
