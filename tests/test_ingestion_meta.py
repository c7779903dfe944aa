"""A dataset a fetch reuses keeps its manifest's metadata: its source and image size stay as made."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from ingestion_support import closed_port, folder_state

from parablur.benchmark import prepare_dataset
from parablur.cli import main
from parablur.config import FetchConfig
from parablur.ingestion import fetch_dataset
from parablur.ingestion.manifest import MANIFEST_NAME
from parablur.storage import open_store

pytestmark = pytest.mark.timeout(90)


def offline_url() -> str:
    return f"http://127.0.0.1:{closed_port()}/img"


def _fetch(where: str, source: str, *extra: str) -> None:
    # Nothing listens at the source: every new image is generated (the fallback), offline.
    assert main(["fetch", "--input-dir", where, "--source-url", source, "--retries", "0",
                 "--quiet", *extra]) == 0


def _fetch_api(where: str, source: str, **settings) -> None:
    # memory:// is refused by the CLI (its data ends with the process); the library takes it.
    fetch_dataset(FetchConfig(input_dir=where, source_url=source, retries=0, **settings),
                  progress=False)


def _meta(doc: dict) -> tuple:
    meta = doc["meta"]
    return meta["source"], meta["width"], meta["height"], meta["seed"], meta["fallback"]


def test_reusing_a_dataset_never_rewrites_its_source_or_size(tmp_path: Path):
    data = tmp_path / "data"
    made_from = offline_url()
    _fetch(str(data), made_from, "--num-images", "3", "--width", "64", "--height", "48")
    made = json.loads((data / MANIFEST_NAME).read_text())
    assert _meta(made) == (made_from, 64, 48, 0, "scene") and made["meta"]["num_images"] == 3
    images = {k: v for k, v in folder_state(data).items() if k != MANIFEST_NAME}

    # fetch with another source and size reuses every image: the metadata stays the dataset's
    _fetch(str(data), offline_url(), "--width", "80", "--height", "60", "--seed", "7")
    assert json.loads((data / MANIFEST_NAME).read_text())["meta"] == made["meta"]

    # bench's ingestion, asking for fewer images of another source and size, likewise
    images_used, _ = prepare_dataset(
        FetchConfig(input_dir=data, num_images=2, source_url=offline_url(), width=32, height=32,
                    retries=0), echo=lambda line: None, progress=False)
    assert images_used == ["img_0000.jpg", "img_0001.jpg"]
    assert json.loads((data / MANIFEST_NAME).read_text())["meta"] == made["meta"]
    assert {k: v for k, v in folder_state(data).items() if k != MANIFEST_NAME} == images

    # a fetch that adds an image records its own source and size in its entry; the dataset's
    # source and size stay, and its count grows
    _fetch(str(data), offline_url(), "--num-images", "4", "--width", "80", "--height", "60")
    grown = json.loads((data / MANIFEST_NAME).read_text())
    assert _meta(grown) == _meta(made) and grown["meta"]["num_images"] == 4
    assert (grown["images"][3]["width"], grown["images"][3]["height"]) == (80, 60)
    assert grown["images"][:3] == made["images"]


def test_a_dataset_made_anew_records_its_own_request(tmp_path: Path):
    data = tmp_path / "data"
    _fetch(str(data), offline_url(), "--num-images", "2", "--width", "64", "--height", "48")
    for image in data.glob("img_*.jpg"):
        image.unlink()  # nothing left to reuse: the dataset is made again, as asked now
    second = offline_url()
    _fetch(str(data), second, "--num-images", "2", "--width", "40", "--height", "30")
    doc = json.loads((data / MANIFEST_NAME).read_text())
    assert _meta(doc)[:3] == (second, 40, 30)


def test_reusing_a_dataset_in_a_store_never_rewrites_its_source_or_size():
    url = f"memory://parablur-meta-{os.getpid()}-{uuid.uuid4().hex[:8]}/data"
    made_from = offline_url()
    _fetch_api(url, made_from, num_images=3, width=64, height=48)
    store = open_store(url)
    made = json.loads(store.read(MANIFEST_NAME))
    assert _meta(made)[:3] == (made_from, 64, 48)

    # one more image, of another source and size: built through the staging folder
    _fetch_api(url, offline_url(), num_images=4, width=80, height=60)
    grown = json.loads(store.read(MANIFEST_NAME))
    assert _meta(grown) == _meta(made) and grown["meta"]["num_images"] == 4
    assert (grown["images"][3]["width"], grown["images"][3]["height"]) == (80, 60)

    _fetch_api(url, offline_url(), num_images=4, width=40, height=30, force_download=True)
    _fetch_api(url, offline_url(), width=40, height=30, force_download=True)
    assert _meta(json.loads(store.read(MANIFEST_NAME)))[1:3] == (40, 30)
