"""Reusable page pieces: empty states that name the fixing command, paged tables, number
formats an analyst reads (USD with $, scores as %), model pickers."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from app import charts
from app.auth import audit_event
from app.cases import case_link
from app.queries import ModelInfo
from data_access.errors import AuditError
from data_access.exports import csv_bytes

__all__ = [
    "PreparedExport",
    "audit_case_view",
    "audited_csv_download",
    "case_url",
    "chart",
    "missing",
    "model_label",
    "model_picker",
    "open_case",
    "paged_table",
    "pct",
    "score_text",
    "usd",
]


_CHARTS = {
    "waterfall": charts.waterfall_chart,
    "timeline": charts.timeline_chart,
    "importance": charts.importance_chart,
    "beeswarm": charts.beeswarm_chart,
    "dependence": charts.dependence_chart,
    "label_coverage": charts.label_coverage_chart,
}


@st.cache_data(max_entries=256, show_spinner=False)
def _spec(kind: str, frame: pd.DataFrame, options: tuple[tuple[str, Any], ...]) -> dict:
    return _CHARTS[kind](frame, **dict(options)).to_dict(validate=False)


def chart(kind: str, frame: pd.DataFrame, *, key: str | None = None, **options: Any) -> None:
    """Draw one of `app.charts`' Altair charts for `frame`. Specs are cached by their data
    (building one costs ~50 ms) and not re-validated on every run (tests validate them)."""
    st.vega_lite_chart(_spec(kind, frame, tuple(sorted(options.items()))), key=key)


def usd(amount: float | None) -> str:
    if amount is None or (isinstance(amount, float) and math.isnan(amount)):
        return "—"
    return f"${amount:,.2f}"


def pct(share: float | None, digits: int = 1) -> str:
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "—"
    if 0 < share < 0.001:
        return f"{share:.3%}"
    return f"{share:.{digits}%}"


def score_text(score: float) -> str:
    """A score as a probability both ways: `0.873 (87.3%)`."""
    return f"{score:.3f} ({score:.1%})"


def missing(message: str, command: str | None = None, *, kind: str = "info") -> None:
    """An empty state: what is missing, and the command that fixes it."""
    box = {"info": st.info, "warning": st.warning, "error": st.error}[kind]
    box(message, icon=":material/info:" if kind == "info" else None)
    if command:
        st.code(command, language="bash")


def model_label(info: ModelInfo) -> str:
    return f"{info.model_id} · {info.framework} · {info.stage}"


def model_picker(models: Sequence[ModelInfo], *, key: str, label: str = "Model",
                 default: str | None = None, help: str | None = None) -> str:
    """A selectbox of registered models; returns the chosen model id."""
    ids = [m.model_id for m in models]
    labels = {m.model_id: model_label(m) for m in models}
    index = ids.index(default) if default in ids else 0
    return st.selectbox(label, ids, index=index, key=key, help=help,
                        format_func=lambda m: labels.get(m, m))


def paged_table(frame: pd.DataFrame, *, key: str, page_size: int = 25,
                column_config: dict | None = None, selectable: bool = False,
                ) -> pd.DataFrame | None:
    """Show `frame` one page at a time; with `selectable`, return the selected rows."""
    pages = max(1, math.ceil(len(frame) / page_size))
    page = 1
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1,
                                   step=1, key=f"{key}_page"))
    start = (page - 1) * page_size
    shown = frame.iloc[start:start + page_size]
    st.caption(f"Rows {start + 1 if len(frame) else 0}–{start + len(shown)} of {len(frame)}")
    if not selectable:
        st.dataframe(shown, hide_index=True, column_config=column_config)
        return None
    event = st.dataframe(shown, hide_index=True, column_config=column_config,
                         on_select="rerun",
                         selection_mode="single-row", key=f"{key}_table_{page}")
    rows = list(event.selection.rows) if event is not None else []
    return shown.iloc[rows] if rows else None


_VIEWED_KEY = "_fraudlens_case_viewed"


def audit_case_view(transaction_id: str, model_id: str) -> bool:
    """Write one `case_view` audit record each time a case is opened in this session (not
    on every rerun while it stays open). False, with an error shown, when it was not stored:
    the caller must then not show the case."""
    opened = (transaction_id, model_id)
    if st.session_state.get(_VIEWED_KEY) == opened:
        return True
    try:
        audit_event("case_view", transaction_id, "ok", {"model": model_id})
    except AuditError as exc:
        st.error(f"This case cannot be shown because its view could not be recorded in the "
                 f"audit trail: {exc}")
        return False
    st.session_state[_VIEWED_KEY] = opened
    return True


def open_case(transaction_id: str, model_id: str) -> None:
    """Open a case: the URL's query string is the open case, so the link can be copied."""
    st.query_params.from_dict({"txn": transaction_id, "model": model_id})
    st.rerun(scope="app")


def case_url(transaction_id: str, model_id: str) -> str:
    """The full link to a case when the browser's URL is known, else the page-relative one."""
    query = case_link(transaction_id, model_id)
    base = st.context.url
    return f"{base}{query}" if base else f"cases{query}"


@dataclass(frozen=True)
class PreparedExport:
    """CSV bytes whose export is already recorded in the audit trail."""

    data: bytes
    sha256: str
    rows: int


def export_key(key: str) -> str:
    return f"_fraudlens_export_{key}"


def audited_csv_download(label: str, frame: pd.DataFrame, *, target: str, file_name: str,
                         key: str, details: Mapping[str, Any]) -> PreparedExport | None:
    """A CSV download that is audited before any byte leaves the server.

    The bytes are `data_access.exports.csv_bytes(frame)`, exactly what the CLI writes. The
    first click writes the `export` audit record (target, sha256, rows, details); only once
    it is stored is the download button offered, with those very bytes. If the audit write
    fails, no download is offered. Changing the data (another cohort) asks again.
    """
    data = csv_bytes(frame)
    digest = hashlib.sha256(data).hexdigest()
    prepared = st.session_state.get(export_key(key))
    if not (isinstance(prepared, PreparedExport) and prepared.sha256 == digest):
        prepared = None
        if st.button(f"Prepare {label}", key=f"{key}_prepare", icon=":material/download:",
                     help="Records the export (who, what, SHA-256) in the audit trail, then "
                          "offers the file"):
            try:
                audit_event("export", target, "ok",
                            {**details, "sha256": digest, "rows": len(frame),
                             "bytes": len(data), "format": "csv"})
            except AuditError as exc:
                st.error(f"Export refused: the audit record could not be written ({exc}).")
                return None
            prepared = PreparedExport(data, digest, len(frame))
            st.session_state[export_key(key)] = prepared
    if prepared is None:
        return None
    st.download_button(f"Download {label}", data=prepared.data, file_name=file_name,
                       mime="text/csv", key=f"{key}_download", on_click="ignore",
                       type="primary", icon=":material/download:")
    st.caption(f"{prepared.rows} rows · SHA-256 {prepared.sha256[:16]}… · recorded in the "
               "audit trail")
    return prepared
