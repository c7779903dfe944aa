"""Workloads: what is computed on one decoded image.

A workload is a small, picklable, frozen object; executors, the pipeline and
the benchmark pass it through without looking inside. ``blur`` is the study's
full-frame Gaussian (the default, what the benchmark measures), ``faces``
detects faces and anonymizes only them, and ``MODULE:FUNCTION`` runs a user's
own step under the same harness.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import numpy as np

from ..config import RunConfig
from .blur import BlurWorkload
from .custom import CustomWorkload, is_custom_spec

BUILTIN = ("blur", "faces")


@runtime_checkable
class Workload(Protocol):
    """One image in, one image (and an optional small JSON-ready record) out."""

    @property
    def name(self) -> str: ...

    @property
    def record_file(self) -> str | None:
        """Where the per-image records go in the output folder (None: the workload keeps none)."""

    def describe(self) -> dict:
        """The parameters an output depends on, for the CSV, the summary and resume records."""

    def preflight(self) -> str | None:
        """Run where the work runs, before any image: why it cannot run there, or None."""

    def decode_factor(self, size: tuple[int, int] | None) -> int:
        """How much smaller than its (width, height) an image may be decoded (1: full size)."""

    def __call__(self, image: np.ndarray, full_shape: tuple[int, ...] | None = None
                 ) -> tuple[np.ndarray, dict | None]:
        """The output image (of ``full_shape`` when the input was decoded smaller) and a record."""

    def annotate(self, image: np.ndarray, record: dict) -> np.ndarray | None:
        """A debug copy of the input with the record drawn on it (``--draw-boxes``), or None."""

    def score(self, records: Mapping[str, dict], truths: Mapping[str, list]) -> dict | None:
        """The records against a dataset's ground truth (faces: recall, by face height too, and
        false positives), or None. ``bench`` prints the dict as it comes (``format_figures``:
        names and numbers in its order, a nested dict in brackets), the summary JSON holds it
        and the CSV keeps the entries ``results.QUALITY_COLUMNS`` names."""

    def score_outputs(self, source: object, output: object, truths: Mapping[str, dict]) -> dict | None:
        """The outputs of the ``source`` store in the ``output`` store against the true boxes of
        a dataset's clips, by their pixels (faces: the face-frames still exposed), or None."""


def workload_for(config: RunConfig) -> Workload:
    """The workload ``config.workload`` names, with the run's parameters."""
    if config.workload == "blur":
        return BlurWorkload(config.blur.sigma, config.blur.passes, config.engine)
    if config.workload == "faces":
        from .faces import FaceWorkload

        return FaceWorkload(config.faces, config.engine)
    return CustomWorkload(config.workload)


__all__ = ["BUILTIN", "BlurWorkload", "CustomWorkload", "Workload", "is_custom_spec",
           "workload_for"]
