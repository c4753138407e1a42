"""Self-contained HTML reports: escaped text and tables, and Vega-Lite charts rendered to inline
SVG by vl-convert when the report is written. No script runs and nothing is fetched from a
network when the report is opened.

`render_html(title, sections)` is deterministic: the same sections give the same bytes, so a
report can be hashed for the audit trail and compared between runs. No Streamlit import.
"""

from __future__ import annotations

import html
import json
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from explainers.errors import ExportError

__all__ = ["Chart", "Columns", "Html", "Note", "Section", "render_html"]


@dataclass(frozen=True, eq=False)
class Chart:
    """A Vega-Lite spec (e.g. `altair_chart.to_dict()`)."""

    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Note:
    """A muted paragraph (context, caveats)."""

    text: str


class _Escaping(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return html.escape(super().format_field(value, format_spec))


@dataclass(frozen=True)
class Html:
    """Markup used as is. Build it with `Html.format`, never from unescaped data values."""

    markup: str

    @classmethod
    def format(cls, template: str, *args: Any, **kwargs: Any) -> Html:
        """`template` (a literal written in the code) with every field formatted, then
        escaped: `Html.format("<p><b>{}</b> {:,}</p>", name, n)`."""
        return cls(_Escaping().format(template, *args, **kwargs))


@dataclass(frozen=True, eq=False)
class Columns:
    """Parts side by side (e.g. one Section with a Chart per model)."""

    parts: Sequence[Any] = field(default_factory=tuple)


@dataclass(frozen=True, eq=False)
class Section:
    """A heading and its parts, in order: text (a paragraph), Note, Html, DataFrame (a table),
    Chart, Columns, or a nested Section (one heading level down)."""

    heading: str
    parts: Sequence[Any] = field(default_factory=tuple)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1c2833;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d5d8dc;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d5d8dc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f6f7}.note{color:#566573;font-size:.9rem}.warn{background:#fef5e7;
border-left:4px solid #d68910;padding:.5rem 1rem}.chart{margin:.6rem 0}
.pair{display:flex;gap:2rem;flex-wrap:wrap}.pair>div{flex:1;min-width:420px}
"""

_ID = re.compile(r'\bid="([^"]+)"')


def _svg(spec: Mapping[str, Any], number: int) -> str:
    """The chart drawn as inline SVG by vl-convert (Vega-Lite compiled and rendered in
    process, no browser and no network); element ids get a per-chart prefix so that two
    charts on one page never share a clip path or gradient."""
    import vl_convert

    try:
        svg = vl_convert.vegalite_to_svg(json.dumps(spec, default=str, allow_nan=False,
                                                    sort_keys=True))
    except Exception as exc:  # vl-convert raises plain ValueErrors for bad specs
        raise ExportError(f"A chart of this report could not be drawn: {exc}") from None
    for old in dict.fromkeys(_ID.findall(svg)):
        new = f"c{number}-{old}"
        svg = (svg.replace(f'id="{old}"', f'id="{new}"').replace(f"#{old})", f"#{new})")
               .replace(f'href="#{old}"', f'href="#{new}"'))
    return svg


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="—")


def render_html(title: str, sections: Sequence[Any], subtitle: str = "") -> str:
    """One self-contained page: a title, an optional subtitle (a note) and the sections (each
    a Section, or any part a Section holds, shown before the first heading)."""
    e = html.escape
    charts: list[Chart] = []

    def render(part: Any, level: int) -> str:  # level: the enclosing heading's
        if isinstance(part, Section):
            sub = min(level + 1, 6)
            return (f"<h{sub}>{e(part.heading)}</h{sub}>"
                    + "".join(render(p, sub) for p in part.parts))
        if isinstance(part, Columns):
            return ('<div class="pair">'
                    + "".join(f"<div>{render(p, level)}</div>" for p in part.parts) + "</div>")
        if isinstance(part, Html):
            return part.markup
        if isinstance(part, Note):
            return f'<p class="note">{e(part.text)}</p>'
        if isinstance(part, pd.DataFrame):
            return _table(part)
        if isinstance(part, Chart):
            charts.append(part)
            return f'<div class="chart">{_svg(_finite(dict(part.spec)), len(charts))}</div>'
        return f"<p>{e(str(part))}</p>"

    body = "".join(render(s, 1) for s in sections)
    head = f"<h1>{e(title)}</h1>" + (f'<p class="note">{e(subtitle)}</p>' if subtitle else "")
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{head}{body}</body></html>")
