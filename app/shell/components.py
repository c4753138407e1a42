"""Reusable page pieces: empty states that name the fixing command, paged tables, number
formats an analyst reads (USD with $, scores as %), model pickers."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from app.services.case import case_link, clean_id
from app.shell import caches, case_work
from app.shell.auth import audit_event
from app.views import charts
from data_access.exports import csv_bytes
from explainers.errors import AuditError, FraudLensError

alt.data_transformers.disable_max_rows()  # the views sample and bin; see `altair()`

__all__ = [
    "PreparedExport",
    "altair",
    "audit_case_view",
    "audited_csv_download",
    "case_finder",
    "case_url",
    "chart",
    "for_display",
    "kept_notice",
    "list_config",
    "missing",
    "model_label",
    "model_picker",
    "models_or_stop",
    "open_case",
    "paged_table",
    "pct",
    "pick_case",
    "score_pct",
    "warehouse_or_stop",
]


_SPECS: OrderedDict[tuple, str] = OrderedDict()  # memo key -> Vega-Lite spec (JSON)
_SPECS_LOCK = threading.Lock()
SPECS_KEPT = 256


def altair(chart: Any, *args: Any, memo: tuple | None = None, **options: Any) -> None:
    """Draw an Altair chart built by `app.views` (st.vega_lite_chart's `options`).

    `chart` is the chart, or a builder called with `args`. With `memo` (what the chart is
    drawn from, e.g. a report's data version and settings), the spec is built once per memo and
    reused by every later run and session: building an Altair chart (encodings, schema
    objects) cost 20-60 ms a chart on 2 cores, ten charts on Model Comparison. Specs are never
    validated against the Vega-Lite schema at run time (the views' shapes are fixed and their
    tests build them validated); the data travel inline, and the views bound their rows."""
    key = None if memo is None else (getattr(chart, "__qualname__", repr(chart)), memo)
    text = None
    if key is not None:
        with _SPECS_LOCK:
            text = _SPECS.get(key)
            if text is not None:
                _SPECS.move_to_end(key)
    if text is None:
        built = chart(*args) if callable(chart) else chart
        text = json.dumps(built.to_dict(validate=False))
        if key is not None:
            with _SPECS_LOCK:
                _SPECS[key] = text
                while len(_SPECS) > SPECS_KEPT:
                    _SPECS.popitem(last=False)
    st.vega_lite_chart(json.loads(text), **options)


def kept_notice(kept: Any, *, until: str, key: str, on_click: Any, args: tuple) -> None:
    """A kept report's age and its recompute button: "Computed at … on the lake's current
    data; kept until {until}." when it is for the current data, else a warning that the lake
    has changed since and a "Recompute on current data" button."""
    age, refresh = st.columns([4, 1], vertical_alignment="center")
    if kept.current:
        age.text(f"Computed at {kept.age_text()} on the lake's current data; kept until "
                 f"{until}.")
        label = "Recompute"
    else:
        age.warning(f"Showing the report computed at {kept.age_text()}. The lake has changed "
                    "since (new data), so its numbers may be out of date.",
                    icon=":material/history:")
        label = "Recompute on current data"
    refresh.button(label, icon=":material/refresh:", key=key, on_click=on_click, args=args)


def chart(spec: charts.ChartSpec, *, key: str | None = None) -> None:
    """Draw one of `app.views.charts`' charts (cached Vega-Lite template plus this run's rows)."""
    st.vega_lite_chart(spec.rows, spec.template_dict(), key=key)


def pct(share: float | None, digits: int = 1) -> str:
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "—"
    if 0 < share < 0.001:
        return f"{share:.3%}"
    return f"{share:.{digits}%}"


def score_pct(p: float | None) -> str:
    """A model score as a probability an analyst can trust: never "100.0%" or "0.0%" for a
    score that is not exactly 1 or 0, but ">99.9%" and "<0.1%"."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    if 0.999 < p < 1:
        return ">99.9%"
    if 0 < p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def missing(message: str, command: str | None = None, *, kind: str = "info") -> None:
    """An empty state: what is missing, and the command that fixes it."""
    box = {"info": st.info, "warning": st.warning, "error": st.error}[kind]
    box(message, icon=":material/info:" if kind == "info" else None)
    if command:
        st.code(command, language="bash")


def warehouse_or_stop() -> caches.WarehouseSummary:
    """The warehouse summary, or an empty state naming the fix (and the page stops) when the
    lake is missing or unreachable, or holds no transactions."""
    try:
        summary = caches.warehouse_summary()
    except FraudLensError as exc:
        missing(str(exc), "fraudlens demo", kind="error")
        st.stop()
        raise  # unreachable: st.stop() ends the run
    if summary.transactions == 0:
        missing("The warehouse holds no transactions yet.",
                "fraudlens import transactions FILE --labels LABELS_FILE")
        st.stop()
    return summary


def models_or_stop() -> list[caches.ModelInfo]:
    """Registered models, or an empty state with the commands that register one."""
    infos = caches.models()
    if not infos:
        missing("No model is registered in this workspace, so there are no scores to explain. "
                "Build the demo, or register a model trained elsewhere and score with it:",
                "fraudlens demo\nfraudlens models register FILE --name NAME --version 1 "
                "--framework xgboost --schema schema.json\nfraudlens score --model NAME@1")
        st.stop()
    return infos


def model_label(info: caches.ModelInfo) -> str:
    return f"{info.model_id} · {info.framework} · {info.stage}"


def model_picker(models: Sequence[caches.ModelInfo], *, key: str, label: str = "Model",
                 default: str | None = None, help: str | None = None) -> str:
    """A selectbox of registered models; returns the chosen model id."""
    ids = [m.model_id for m in models]
    labels = {m.model_id: model_label(m) for m in models}
    index = ids.index(default) if default in ids else 0
    return st.selectbox(label, ids, index=index, key=key, help=help,
                        format_func=lambda m: labels.get(m, m))


def list_config() -> dict:
    """Column labels and formats for case lists (queue, account, similar cases)."""
    return {"transaction_id": "transaction",
            "event_time": st.column_config.DatetimeColumn("time (UTC)",
                                                          format="YYYY-MM-DD HH:mm"),
            "amount_usd": st.column_config.NumberColumn("amount (USD)", format="dollar"),
            "score": st.column_config.NumberColumn("score", format="%.1f%%",
                                                   help="Probability of fraud"),
            "distance": st.column_config.NumberColumn(
                "distance (log-odds)", format="%.2f",
                help="Euclidean distance between the SHAP vectors"),
            "txn_type": "type"}


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """Scores as percentages for `list_config`'s score column; empty text cells read
    "missing" (a table would show "None")."""
    text = [c for c in frame.columns if frame[c].dtype == object]
    if text:
        frame = frame.assign(**{c: frame[c].where(frame[c].notna(), "missing") for c in text})
    return frame.assign(score=frame["score"] * 100) if "score" in frame.columns else frame


ACCOUNT_ROWS = 5_000  # an account's transactions listed (25 a page); more are said to exist


@st.fragment
def case_finder(model_id: str, countries: Sequence[str], first: date, last: date) -> None:
    """Find a case by transaction id, account id or from the queue; opening one sets the
    URL's query string (`open_case`)."""
    by_id, by_account, by_queue = st.tabs(["Transaction id", "Account id", "Queue"])
    with by_id, st.form("open_by_id", border=False):
        typed = st.text_input("Transaction id", placeholder="e.g. T000000668", key="find_txn")
        if st.form_submit_button("Open case", type="primary"):
            found = clean_id(typed)
            if found is None:
                st.warning("Type a transaction id (letters, digits, _ . : -).")
            else:
                open_case(found, model_id)
    with by_account:
        account = clean_id(st.text_input(
            "Account id", key="find_account",
            placeholder="the account id from a case's Transaction details"))
        if account:
            rows = caches.account_cases(account, model_id, limit=ACCOUNT_ROWS + 1)
            if rows.empty:
                st.info(f"No transactions for account {account}. Check the id.")
            else:
                if len(rows) > ACCOUNT_ROWS:
                    st.warning(f"This account has more than {ACCOUNT_ROWS:,} transactions; "
                               f"the newest {ACCOUNT_ROWS:,} are listed, page by page.")
                    rows = rows.iloc[:ACCOUNT_ROWS]
                pick_case(rows, "account_rows", model_id)
    with by_queue:
        _queue(model_id, countries, first, last)


def _queue(model_id: str, countries: Sequence[str], first: date, last: date) -> None:
    c1, c2, c3, c4 = st.columns(4)
    window = c1.date_input("Event dates (UTC)",
                           (max(first, last - timedelta(days=caches.QUEUE_DAYS)), last),
                           min_value=first, max_value=last, key="queue_dates")
    band = c2.slider("Score band", 0.0, 1.0, caches.QUEUE_BAND, 0.01, key="queue_band",
                     help="Model score as a probability of fraud")
    chosen = c3.multiselect("Country", list(countries), key="queue_countries")
    low, high = c4.columns(2)
    min_amount = low.number_input("Min amount ($)", min_value=0.0, value=None, step=100.0,
                                  key="queue_min_amount")
    max_amount = high.number_input("Max amount ($)", min_value=0.0, value=None, step=100.0,
                                   key="queue_max_amount")
    since, until = (window[0], window[-1]) if window else (None, None)
    rows = caches.queue(model_id, since, until, band[0], band[1], tuple(chosen), min_amount,
                         max_amount)
    if model_id not in set(caches.scored_counts()["model_id"]):
        missing(f"{model_id} has not scored any transaction yet.",
                f"fraudlens score --model {model_id}")
        return
    if rows.empty:
        st.info("No scored transactions match these filters. Widen the dates or score band.")
        return
    status = st.segmented_control("Status", case_work.CASE_STATUSES, selection_mode="multi",
                                  key="queue_status", help="unworked: nobody took it; assigned: "
                                  "taken or waiting for information; decided: fraud or legit")
    rows = case_work.filter_status(case_work.with_status(rows), status or ())
    if rows.empty:
        st.info("No case in these filters has that status.")
        return
    st.caption(f"Highest {model_id} scores first, at most 200 cases. Select a row to open it.")
    pick_case(rows, "queue_rows", model_id)


def pick_case(rows: pd.DataFrame, key: str, model_id: str) -> None:
    """A selectable case list; selecting a row opens that case. A table keeps its selection
    across reruns, so only a selection that changed opens a case (else the page would rerun
    forever, and a stale selection would override a case opened another way)."""
    # keyed by model too: a table keeps its selected row *index* when its rows change, so
    # switching models would otherwise open whatever case sits in that row for the new model
    key = f"{key}_{hashlib.sha256(model_id.encode()).hexdigest()[:12]}"
    picked = paged_table(for_display(rows), key=key, selectable=True,
                         column_config=list_config())
    chosen = None if picked is None else str(picked["transaction_id"].iloc[0])
    handled = f"_fraudlens_picked_{key}"
    if chosen is None:
        st.session_state.pop(handled, None)
    elif st.session_state.get(handled) != chosen:
        st.session_state[handled] = chosen
        open_case(chosen, model_id)


def paged_table(frame: pd.DataFrame, *, key: str, page_size: int = 25,
                column_config: dict | None = None, selectable: bool = False,
                ) -> pd.DataFrame | None:
    """Show `frame` one page at a time; with `selectable`, return the selected rows."""
    pages = max(1, math.ceil(len(frame) / page_size))
    page = 1
    if pages > 1:
        page = int(st.columns([1, 4])[0].number_input(
            f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
            key=f"{key}_page"))
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
