"""The report stage: saved results CSVs in, PNG figures, ``report.html`` and ``summary.md`` out.

It reads only the CSVs (``results.read_rows``) and never re-runs anything.
Renderers share one interface: a module with ``FILENAME`` and
``render(data, plots) -> str``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..analysis import AmdahlFit
from ..files import claim_output_dir, write_atomic
from ..results import read_rows, tasks_path
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

    def to_dict(self) -> dict:
        """What ``report --summary-json`` writes: the files, the fits, the groups, the warnings."""
        best = self.data.primary_sweep
        return {
            "out_dir": str(self.out_dir),
            "files": [str(p) for p in self.files],
            "html": str(self.html),
            "markdown": str(self.markdown),
            "skipped_figures": {p.name: p.skipped for p in self.skipped},
            "rows": len(self.data.runs),
            "unclean_left_out": self.data.left_out,
            "amdahl": ({**asdict(self.amdahl), "sweep": best.config.label(skip=["workers"])}
                       if self.amdahl and best else None),
            "fits": {label: asdict(fit) for label, fit in self.fits},
            "groups": [
                {
                    "configuration": g.config.label(),
                    "clean_trials": len(g.runs) + g.noisy_left_out,
                    "unclean_left_out": g.left_out,
                    "noisy_left_out": g.noisy_left_out,
                    "over_noisy_rounds": g.noisy,
                    "seq_s": g.seq_s.median if g.seq_s else None,
                    "par_s": g.par_s.median if g.par_s else None,
                    "par_throughput": g.median("par_throughput"),
                    "speedup": g.speedup.median if g.speedup else None,
                    "speedup_range": [g.speedup.minimum, g.speedup.maximum] if g.speedup else None,
                    "efficiency": g.efficiency,
                    "serial_fraction": g.karp_flatt,
                }
                for g in self.data.groups
            ],
            "warnings": list(self.warnings),
        }


def build_report(csv_paths: Sequence[Path], out_dir: Path) -> ReportResult:
    """Read the results CSVs, analyse them and write the figures, the HTML and the Markdown."""
    paths = [Path(p) for p in csv_paths]
    if not paths:
        raise ValueError("build_report needs at least one results CSV")
    rows = [read_rows(p) for p in paths]
    names = [p.name for p in paths]
    if len(set(names)) < len(names):  # same file name from different folders
        names = [str(p) for p in paths]
    timeline = [tasks_path(p) for p in paths if tasks_path(p).is_file()]
    data = analyse(names, rows, read_rows(timeline[-1]) if timeline else ())
    # Only a folder of ParaBlur's (new, empty or marked) is written into: never a user's files.
    out_dir = Path(out_dir)
    claim_output_dir(out_dir, "report")
    plots = render_plots(data, out_dir)
    written = [p.path for p in plots if p.path is not None]
    docs = {}
    for renderer in RENDERERS:
        path = out_dir / renderer.FILENAME
        write_atomic(path, renderer.render(data, plots).encode("utf-8"), durable=False)
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
