"""The fetch entry takes a store: a folder is built in place, any other store through staging;
and the ingestion modules import one another without a cycle."""

from __future__ import annotations

import ast
import json
import os
import uuid
from pathlib import Path

import pytest
from ingestion_support import closed_port, small_config

from parablur.ingestion import fetch_dataset
from parablur.ingestion.fetch import fetch_into
from parablur.ingestion.manifest import MANIFEST_NAME
from parablur.storage import LocalStore, open_store

pytestmark = pytest.mark.timeout(90)
INGESTION = Path(__file__).resolve().parents[1] / "src" / "parablur" / "ingestion"


def offline_url() -> str:
    return f"http://127.0.0.1:{closed_port()}/img"


def _imports(path: Path) -> set[str]:
    """The ingestion modules ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.update(alias.name for alias in node.names)
            elif node.level == 0 and (node.module or "").startswith("parablur.ingestion."):
                found.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[2] for a in node.names
                         if a.name.startswith("parablur.ingestion."))
    return found


def test_the_ingestion_modules_import_one_another_without_a_cycle():
    modules = {p.stem: p for p in INGESTION.glob("*.py") if p.stem != "__init__"}
    graph = {name: _imports(path) & set(modules) for name, path in modules.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert cycles == []


def test_fetch_into_a_local_store_builds_in_its_folder(tmp_path: Path):
    folder = tmp_path / "data"
    config = small_config(tmp_path / "not-read", num_images=2, source_url=offline_url(), retries=0)
    summary = fetch_into(LocalStore(folder), config, progress=False)
    assert summary.images == [folder / "img_0000.jpg", folder / "img_0001.jpg"]
    assert summary.generated == 2 and (folder / MANIFEST_NAME).is_file()
    assert not (tmp_path / "not-read").exists()  # the store is the location, not input_dir


def test_fetch_into_a_store_without_a_folder_stages_and_names_images_by_key(tmp_path: Path):
    url = f"memory://parablur-entry-{os.getpid()}-{uuid.uuid4().hex[:8]}/data"
    store = open_store(url)
    config = small_config(tmp_path / "not-read", num_images=2, source_url=offline_url(), retries=0)
    summary = fetch_into(store, config, progress=False)
    assert summary.images == [Path("img_0000.jpg"), Path("img_0001.jpg")]
    assert sorted(store.list_images()) == ["img_0000.jpg", "img_0001.jpg"]
    assert "object_etags" in json.loads(store.read(MANIFEST_NAME))["meta"]
    again = fetch_into(store, config, progress=False)
    assert (again.reused, again.generated) == (2, 0)
    assert not (tmp_path / "not-read").exists()


def test_a_file_url_dataset_is_named_by_key_like_any_urls(tmp_path: Path):
    """``file://`` is addressed by keys (as a run of that URL reads them), not built in place."""
    (tmp_path / "data").mkdir()
    config = small_config(f"file://{tmp_path / 'data'}", num_images=2, source_url=offline_url(),
                          retries=0)
    summary = fetch_dataset(config, progress=False)
    assert summary.images == [Path("img_0000.jpg"), Path("img_0001.jpg")]
    meta = json.loads((tmp_path / "data" / MANIFEST_NAME).read_text())["meta"]
    assert sorted(meta["object_etags"]) == ["img_0000.jpg", "img_0001.jpg"]
    assert fetch_dataset(config, progress=False).reused == 2


def test_only_a_folder_opened_by_path_offers_itself_for_work_in_place(tmp_path: Path):
    import pickle

    assert open_store(tmp_path).local_folder() == tmp_path
    assert open_store(f"file://{tmp_path}").local_folder() is None
    assert open_store(f"memory://parablur-entry-{os.getpid()}/x").local_folder() is None
    for store in (open_store(tmp_path), open_store(f"file://{tmp_path}")):  # as a worker gets it
        assert pickle.loads(pickle.dumps(store)).local_folder() == store.local_folder()
