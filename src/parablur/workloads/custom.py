"""A user's own computer-vision step as a workload: ``MODULE:FUNCTION``, imported where it runs.

The function takes one decoded image (a numpy array, BGR or gray, as OpenCV
decodes it) and returns the output image, or ``(image, record)`` where
``record`` is a small JSON-ready dict kept in the run's summary. It must be
importable on every worker; ParaBlur checks that before any image is processed.

Its outputs are resumed by the function's name and its module's source: the
workload records the sha256 of the module's file where it is built (on the
client), and that digest travels with it to the workers, so an edit of the
module makes every output of the old source out of date.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import marshal
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import CUSTOM_WORKLOAD
from ..errors import ConfigError


def is_custom_spec(text: str) -> bool:
    """True for ``package.module:function``."""
    return bool(CUSTOM_WORKLOAD.match(text))


@lru_cache(maxsize=16)
def load_function(spec: str) -> Callable:
    """Import ``MODULE:FUNCTION`` in this process (once); ConfigError with one line when it cannot."""
    module_name, _, func_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"workload {spec}: cannot import {module_name} ({exc}); it must be "
                          "importable where the work runs (install it, or add it to PYTHONPATH)"
                          ) from exc
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - the user's module failed importing
        raise ConfigError(f"workload {spec}: importing {module_name} raised "
                          f"{type(exc).__name__}: {exc}") from exc
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ConfigError(f"workload {spec}: {module_name} has no function {func_name}")
    return func


# Stands for a module whose source this process cannot find or read: it differs from one
# process to the next, so outputs made by another run are never taken as up to date.
_UNREADABLE = f"unreadable:{uuid.uuid4().hex}"


def module_digest(module_name: str) -> str:
    """What identifies ``module_name``'s code, read without running it when it can be.

    ``sha256:<hex>`` of the module's file (read through its loader inside a zip);
    ``code:<hex>`` of its compiled code when there is no file to read; when this process
    cannot find the module at all, a tag of this process (``unreadable:...``): never up
    to date, so every output is redone.
    """
    try:
        spec = importlib.util.find_spec(module_name)
    except Exception:  # noqa: BLE001 - a parent package that fails to import, a bad name
        spec = None
    if spec is None:
        return _UNREADABLE
    if spec.has_location and spec.origin:
        try:
            with open(spec.origin, "rb") as f:
                return f"sha256:{hashlib.sha256(f.read()).hexdigest()}"
        except OSError:
            pass
        try:  # a file inside a zip: the loader reads it
            data = spec.loader.get_data(spec.origin)  # type: ignore[union-attr]
            return f"sha256:{hashlib.sha256(data).hexdigest()}"
        except Exception:  # noqa: BLE001 - a loader without get_data, or one that fails
            pass
    try:
        code = spec.loader.get_code(module_name)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - no loader, or one that cannot give code
        code = None
    if code is None:
        return _UNREADABLE
    return f"code:{hashlib.sha256(marshal.dumps(code)).hexdigest()}"


def import_error(spec: str) -> str | None:
    """Why ``spec`` cannot be imported in this process, or None; run on every worker."""
    try:
        load_function(spec)
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class CustomWorkload:
    """A user's function applied to every decoded image.

    ``source`` is the module's ``module_digest``, taken when the workload is built (on the
    client) unless given; a worker receives it with the workload and never recomputes it.
    """

    spec: str
    source: str = ""

    def __post_init__(self) -> None:
        if not is_custom_spec(self.spec):
            raise ConfigError(f"workload must be blur, faces or MODULE:FUNCTION, got {self.spec!r}")
        if not self.source:
            object.__setattr__(self, "source", module_digest(self.spec.partition(":")[0]))

    @property
    def name(self) -> str:
        return self.spec

    @property
    def record_file(self) -> str | None:
        return "records.jsonl"

    def describe(self) -> dict:
        return {"function": self.spec, "source": self.source}

    def preflight(self) -> str | None:
        return import_error(self.spec)

    def annotate(self, image: np.ndarray, record: dict) -> np.ndarray | None:
        return None

    def score(self, records: dict, truths: dict) -> dict | None:
        return None

    def score_outputs(self, source, output, truths: dict) -> dict | None:
        return None

    def decode_factor(self, size: tuple[int, int] | None) -> int:
        return 1

    def __call__(self, image: np.ndarray, full_shape: tuple[int, int] | None = None
                 ) -> tuple[np.ndarray, dict | None]:
        # The user's function gets its own copy: one that writes into its input would otherwise
        # change the decoded input the worker compares the output with (``jpeg_edit``), and
        # its changes would be taken for untouched blocks and dropped.
        out = load_function(self.spec)(image.copy())
        record = None
        if isinstance(out, tuple) and len(out) == 2:
            out, record = out
        if not isinstance(out, np.ndarray) or out.size == 0:
            raise ValueError(f"{self.spec} returned {type(out).__name__}, not an image array")
        if record is not None and not isinstance(record, dict):
            raise ValueError(f"{self.spec} returned a {type(record).__name__} record, not a dict")
        return out, record
