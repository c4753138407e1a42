"""Self-contained HTML reports: escaped text and tables, and Vega-Lite charts drawn by the
vega-embed that the installed Streamlit ships, inlined. Nothing is fetched from a network.

`render_html(title, sections)` is deterministic: the same sections give the same bytes, so a
report can be hashed for the audit trail and compared between runs. No Streamlit import.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from data_access.errors import ExportError

__all__ = ["Chart", "Note", "Section", "render_html"]


@dataclass(frozen=True, eq=False)
class Chart:
    """A Vega-Lite spec (e.g. `altair_chart.to_dict()`)."""

    spec: Mapping[str, Any]


@dataclass(frozen=True)
class Note:
    """A muted paragraph (context, caveats)."""

    text: str


@dataclass(frozen=True, eq=False)
class Section:
    """A heading and its parts, in order: text (a paragraph), Note, DataFrame (a table), Chart,
    or a nested Section (one heading level down)."""

    heading: str
    parts: Sequence[Any] = field(default_factory=tuple)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1200px;color:#1c2833;padding:0 1rem}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d5d8dc;padding-bottom:.3rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}
th,td{border:1px solid #d5d8dc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f4f6f7}.note{color:#566573;font-size:.9rem}.chart{margin:.6rem 0}
"""

_IMPORT = re.compile(r"""(?:from|import)\s*["']\./([^"']+\.js)["']""")
# Each chunk becomes a blob: module whose relative imports point at its dependencies' blob:
# URLs; then every chart is rendered. No request leaves the page.
_LOADER = """
const mods = JSON.parse(document.getElementById('vega-modules').textContent);
const urls = {};
function url(name) {
  if (!urls[name]) {
    const src = mods[name].replace(/((?:from|import)\\s*)["']\\.\\/([^"']+\\.js)["']/g,
      (m, kw, dep) => kw + JSON.stringify(url(dep)));
    urls[name] = URL.createObjectURL(new Blob([src], {type: 'text/javascript'}));
  }
  return urls[name];
}
const specs = JSON.parse(document.getElementById('chart-specs').textContent);
import(url(ENTRY)).then(async (m) => {
  const embed = m.n.default;
  for (const [id, spec] of Object.entries(specs)) {
    await embed('#' + id, spec, {actions: false, renderer: 'svg'});
  }
}).catch((e) => {
  for (const id of Object.keys(specs)) {
    document.getElementById(id).textContent = 'Chart could not be drawn: ' + e;
  }
});
"""


@lru_cache(maxsize=1)
def _vega_modules() -> tuple[str, tuple[tuple[str, str], ...]]:
    """vega-embed (with vega and vega-lite): the ES-module chunks the installed Streamlit
    ships, found without importing Streamlit; the entry chunk's name and every chunk."""
    spec = importlib.util.find_spec("streamlit")
    origin = spec.origin if spec is not None else None
    root = Path(origin or ".").parent / "static" / "static" / "js"
    loaders = sorted(root.glob("loadVegaEmbed.*.js"))
    found = (re.search(r"import\(`\./(embed\.[^`]+\.js)`\)", loaders[0].read_text("utf-8"))
             if loaders else None)
    if found is None:
        raise ExportError("Cannot find vega-embed in the installed Streamlit, so the report "
                          "cannot draw its charts; reinstall with `pip install -e .`")
    modules: dict[str, str] = {}
    todo = [found.group(1)]
    while todo:
        name = todo.pop()
        if name in modules:
            continue
        modules[name] = (root / name).read_text(encoding="utf-8")
        todo.extend(_IMPORT.findall(modules[name]))
    return found.group(1), tuple(sorted(modules.items()))


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_script(element_id: str, value: Any) -> str:
    text = json.dumps(value, allow_nan=False, sort_keys=True, default=str)
    text = text.replace("<", "\\u003c")  # no "</script>" or "<!--" can end the block
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, escape=True, border=0, na_rep="—")


def render_html(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    """One self-contained page: a title, an optional subtitle (a note) and the sections."""
    e = html.escape
    specs: dict[str, Any] = {}

    def render(section: Section, level: int) -> str:
        out = [f"<h{level}>{e(section.heading)}</h{level}>"]
        for part in section.parts:
            if isinstance(part, Section):
                out.append(render(part, min(level + 1, 6)))
            elif isinstance(part, Note):
                out.append(f'<p class="note">{e(part.text)}</p>')
            elif isinstance(part, pd.DataFrame):
                out.append(_table(part))
            elif isinstance(part, Chart):
                key = f"chart-{len(specs) + 1}"
                specs[key] = _finite(dict(part.spec))
                out.append(f'<div class="chart" id="{key}"></div>')
            else:
                out.append(f"<p>{e(str(part))}</p>")
        return "".join(out)

    body = "".join(render(s, 2) for s in sections)
    head = f"<h1>{e(title)}</h1>" + (f'<p class="note">{e(subtitle)}</p>' if subtitle else "")
    scripts = ""
    if specs:
        entry, modules = _vega_modules()
        loader = _LOADER.replace("ENTRY", json.dumps(entry))
        scripts = (_json_script("chart-specs", specs)
                   + _json_script("vega-modules", dict(modules))
                   + f'<script type="module">{loader}</script>')
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{e(title)}</title><style>{_CSS}</style></head>"
            f"<body>{head}{body}{scripts}</body></html>")
