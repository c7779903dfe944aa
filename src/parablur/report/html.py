"""The self-contained HTML report: inline CSS, figures as base64 PNG data URIs, nothing external.

Every string that came from a CSV is passed through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from ._data import ReportData, Table
from .plots import Plot

FILENAME = "report.html"

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.8em;max-width:100%}
th,td{border:1px solid #ccc;padding:.2em .4em;text-align:left;vertical-align:top;overflow-wrap:break-word}
th{background:#f2f2f2}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.5em 1em;margin:.5em 0}
.note{color:#555;font-size:.85em}
figure{display:inline-block;margin:.5em}
figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555;max-width:680px}
"""

e = html.escape


def _table(t: Table) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    note = f'<p class="note">{e(t.note)}</p>' if t.note else ""
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<h2>{e(t.title)}</h2>{note}{table}"


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{e(plot.title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(plot.caption)}</figcaption></figure>"
    )


def _headline(data: ReportData) -> str:
    best = data.primary_sweep
    if best is None or best.fit is None:
        return "<p>No sweep over two or more worker counts: no Amdahl fit.</p>"
    f = best.fit
    ceiling = f"{f.ceiling:.2f}x" if f.ceiling else "unbounded"
    return (
        f"<p><strong>Amdahl serial fraction f = {f.f:.3f}</strong> "
        f"(95% CI {f.ci_low:.3f} to {f.ci_high:.3f}, {f.n_points} points), "
        f"predicted ceiling 1/f = {ceiling}, for {e(best.config.label(skip=['workers']))}.</p>"
    )


def render(data: ReportData, plots: Sequence[Plot]) -> str:
    """The whole report as one HTML document."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>ParaBlur report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>ParaBlur report</h1>",
        f"<p>{len(data.runs)} rows from {len(data.sources)} file(s): "
        f"{e(', '.join(data.sources))}. {e(data.left_out_note)}</p>",
        _headline(data),
    ]
    warnings = [*data.overhead_warnings, *data.noise_warnings]
    if warnings:
        parts.append("<h2>Warnings</h2>")
        parts += [f'<div class="warn">{e(w)}</div>' for w in warnings]
    for t in data.tables():
        parts.append(_table(t))
    parts.append("<h2>Figures</h2>")
    parts += [_figure(p) for p in plots if p.path is not None]
    skipped = [p for p in plots if p.path is None]
    if skipped:
        parts.append("<h3>Skipped figures</h3><ul>")
        parts += [f"<li>{e(p.title)}: {e(p.skipped)}</li>" for p in skipped]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
