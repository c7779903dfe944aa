"""Resuming a user's MODULE:FUNCTION: its outputs are up to date only for the module's same source."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import make_images

from parablur.workloads import CustomWorkload
from parablur.workloads.custom import module_digest

SRC = Path(__file__).resolve().parents[1] / "src"
INVERT = "def fn(image):\n    return 255 - image\n"
HALVE = "def fn(image):\n    return image // 2\n"


def test_a_custom_workload_describes_its_modules_source_as_built_on_the_client(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    module = tmp_path / "resume_mod_a.py"
    module.write_text(INVERT)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = CustomWorkload("resume_mod_a:fn")
    assert before.describe()["source"].startswith("sha256:")
    module.write_text(INVERT.replace("255 - image", "255 - image  # edited"))
    after = CustomWorkload("resume_mod_a:fn")
    assert after.describe() != before.describe()
    # a worker gets the workload as the client built it: the same description, not its own read
    assert pickle.loads(pickle.dumps(before)).describe() == before.describe()


def test_a_module_in_a_zip_is_described_by_its_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    archive = tmp_path / "mods.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("resume_mod_zip.py", INVERT)
    monkeypatch.syspath_prepend(str(archive))
    assert module_digest("resume_mod_zip") == "sha256:" + hashlib.sha256(INVERT.encode()).hexdigest()
    # a module this process cannot find is never up to date: a tag of this process only
    assert module_digest("no_such_pkg_here.mod").startswith("unreadable:")


def _run(tmp_path: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(tmp_path / "mods")]))
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "parablur", "run", "--input-dir", str(tmp_path / "in"),
         "--output-dir", str(tmp_path / "out"), "--workload", "resume_mod:fn", "--quiet",
         "--summary-json", str(summary)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(summary.read_text())


@pytest.mark.slow
def test_editing_the_users_module_redoes_every_output(tmp_path: Path):
    images = make_images(tmp_path / "in", 3, size=(24, 32), suffix=".png")
    (tmp_path / "mods").mkdir()
    module = tmp_path / "mods" / "resume_mod.py"
    module.write_text(INVERT)
    out = tmp_path / "out" / "sequential"

    first = _run(tmp_path)
    assert (first["ok"], first["skipped"]) == (3, 0)
    assert _run(tmp_path)["skipped"] == 3  # nothing changed: every output is up to date

    module.write_text(HALVE)  # the user edits the function
    third = _run(tmp_path)
    assert (third["ok"], third["skipped"]) == (3, 0)
    for src in images:
        image = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(cv2.imread(str(out / src.name), cv2.IMREAD_UNCHANGED), image // 2)
    assert _run(tmp_path)["skipped"] == 3
