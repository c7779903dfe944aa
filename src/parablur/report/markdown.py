"""The Markdown summary: the same tables and warnings as the HTML, figures linked by file name."""

from __future__ import annotations

from collections.abc import Sequence

from ._data import ReportData, Table
from .plots import Plot

FILENAME = "summary.md"


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> str:
    lines = [f"## {t.title}", ""]
    if t.note:
        lines += [f"_{_cell(t.note)}_", ""]
    lines.append("| " + " | ".join(_cell(h) for h in t.headers) + " |")
    lines.append("|" + "---|" * len(t.headers))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def render(data: ReportData, plots: Sequence[Plot]) -> str:
    """The summary as one Markdown document."""
    out = [
        "# ParaBlur report",
        "",
        f"{len(data.runs)} rows from {len(data.sources)} file(s): "
        f"{_cell(', '.join(data.sources))}. {data.left_out_note}",
        "",
    ]
    best = data.primary_sweep
    if best is not None and best.fit is not None:
        f = best.fit
        ceiling = f"{f.ceiling:.2f}x" if f.ceiling else "unbounded"
        out += [
            f"**Amdahl serial fraction f = {f.f:.3f}** (95% CI {f.ci_low:.3f} to {f.ci_high:.3f}, "
            f"{f.n_points} points), predicted ceiling 1/f = {ceiling}, "
            f"for {_cell(best.config.label(skip=['workers']))}.",
            "",
        ]
    else:
        out += ["No sweep over two or more worker counts: no Amdahl fit.", ""]
    warnings = [*data.overhead_warnings, *data.noise_warnings]
    if warnings:
        out += ["## Warnings", ""] + [f"- {_cell(w)}" for w in warnings] + [""]
    out += [_table(t) for t in data.tables()]
    out += ["## Figures", ""]
    out += [f"- [{p.title}]({p.path.name}): {_cell(p.caption)}" for p in plots if p.path is not None]
    out += [f"- {p.title}: skipped ({_cell(p.skipped)})" for p in plots if p.path is None]
    return "\n".join(out) + "\n"
