"""The report stage: saved results CSVs in, PNG figures, ``report.html`` and ``summary.md`` out.

It reads only the CSVs (``results.read_rows``) and never re-runs anything.
Renderers share one interface: a module with ``FILENAME`` and
``render(data, plots) -> str``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..analysis import AmdahlFit
from ..results import read_rows
from . import html, markdown
from ._data import ReportData, analyse
from .plots import Plot, render_plots

__all__ = ["ReportResult", "build_report"]

RENDERERS = (html, markdown)


@dataclass(frozen=True)
class ReportResult:
    """What ``build_report`` wrote, and the headline fit.

    ``amdahl`` is the headline fit (``ReportData.primary_sweep``: most points, then
    most worker counts, then the narrowest CI; None without a sweep over two
    worker counts); ``fits`` pairs every sweep's label with its fit.
    """

    out_dir: Path
    files: tuple[Path, ...]
    html: Path
    markdown: Path
    plots: tuple[Plot, ...]
    amdahl: AmdahlFit | None
    fits: tuple[tuple[str, AmdahlFit], ...]
    warnings: tuple[str, ...]
    data: ReportData

    @property
    def skipped(self) -> tuple[Plot, ...]:
        return tuple(p for p in self.plots if p.path is None)


def build_report(csv_paths: Sequence[Path], out_dir: Path) -> ReportResult:
    """Read the results CSVs, analyse them and write the figures, the HTML and the Markdown."""
    paths = [Path(p) for p in csv_paths]
    if not paths:
        raise ValueError("build_report needs at least one results CSV")
    rows = [read_rows(p) for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) < len(names):  # same file name from different folders
        names = [str(p) for p in paths]
    data = analyse(names, rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = render_plots(data, out_dir)
    written = [p.path for p in plots if p.path is not None]
    docs = {}
    for renderer in RENDERERS:
        path = out_dir / renderer.FILENAME
        path.write_text(renderer.render(data, plots), encoding="utf-8")
        docs[renderer.FILENAME] = path
        written.append(path)
    best = data.primary_sweep
    return ReportResult(
        out_dir=out_dir,
        files=tuple(written),
        html=docs[html.FILENAME],
        markdown=docs[markdown.FILENAME],
        plots=plots,
        amdahl=best.fit if best else None,
        fits=tuple((s.config.label(skip=["workers"]), s.fit) for s in data.sweeps if s.fit),
        warnings=(*data.overhead_warnings, *data.noise_warnings),
        data=data,
    )
