"""One finding of the pattern review, opened from the overview: its numbers, rule, drivers
and backtest charts, representative cases, and the annotation form with its history."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.services.case import case_link
from app.shell import components
from app.shell.auth import Principal, audit_event
from app.shell.resources import journal
from app.views import review_pack
from data_access import review_journal
from explainers.errors import AuditError, FraudLensError

__all__ = ["show"]


def show(row: Any, model_id: str, *, label: str,
         decided: dict[str, tuple[int, int]], notes: pd.DataFrame,
         principal: Principal) -> None:
    """Draw the finding `row` (a named tuple of the stored findings table) of `model_id`;
    `decided`: finding id -> (fraud, legitimate) analyst outcomes; `notes`: latest
    annotations. Saving an annotation is audited and reruns the page."""
    st.subheader(f"Finding #{row.rank}", anchor=False)
    st.text(label)
    m = st.columns(4)
    m[0].metric("Confirmed fraud (labelled)", f"{row.confirmed_fraud} of {row.labelled}",
                help="Chargeback labels known today")
    m[1].metric("Rule precision", review_pack.pct(row.backtest_precision),
                help=f"Backtest since {row.backtest_since}, labels known today")
    m[2].metric("Rule recall", review_pack.pct(row.backtest_recall))
    m[3].metric("Alerts a day", f"{row.backtest_alerts_per_day:.1f}")
    fraud, legit = decided.get(row.finding_id, (0, 0))
    st.text(f"Analyst outcomes (earlier than chargebacks, noisier; counted apart): "
            f"{fraud} fraud, {legit} legitimate of {row.cases} cases")
    st.code(row.rule, language=None)
    left, right = st.columns(2)
    with left:  # each chart built once per finding's content, then reused
        components.altair(review_pack.drivers_chart, row.drivers_json,
                          memo=(row.drivers_json,), height=320, key=f"drv_{row.finding_id}")
    with right:
        components.altair(review_pack.backtest_chart, row.backtest_daily_json,
                          memo=(row.backtest_daily_json,), height=320, key=f"bt_{row.finding_id}")
    if isinstance(row.previous_finding_id, str) and row.previous_finding_id:
        st.text(f"Last week: {row.previous_finding_id} with {row.cases_previous_week} "
                f"cases (similarity {row.similarity:.2f})"
                + (f"; drift: {row.top_drift}" if row.top_drift else ""))
    else:
        st.text("New this week: no similar finding the week before.")
    reps = (row.representative_cases or "").split()
    if reps:
        st.dataframe(
            {"representative case": [f"cases{case_link(t, model_id)}" for t in reps]},
            hide_index=True, key=f"reps_{row.finding_id}",
            column_config={"representative case": st.column_config.LinkColumn(
                display_text=r"txn=([^&]+)", help="Opens the case in Case Explorer")})
    latest = notes[notes["finding_id"] == row.finding_id]
    last = latest.iloc[0] if len(latest) else None
    with st.form(f"note_{row.finding_id}"):  # keyed by finding: no value carries over
        title = st.text_input("Title", "" if last is None else last["title"])
        new_status = st.selectbox("Status", review_journal.ANNOTATION_STATUSES,
                                  index=review_journal.ANNOTATION_STATUSES.index(
                                      "new" if last is None else last["status"]))
        owner = st.text_input("Owner", "" if last is None else last["owner"])
        text = st.text_area("Notes", "" if last is None else last["notes"])
        if st.form_submit_button("Save annotation"):
            try:
                review_journal.annotate(
                    journal(), row.finding_id, title=title, status=new_status, owner=owner,
                    notes=text, author=principal.actor,
                    before_commit=lambda a: audit_event(
                        "annotation", a.finding_id, "ok",
                        {"revision": a.revision, "status": a.status, "model": model_id}))
                st.rerun()
            except (AuditError, FraudLensError) as exc:
                st.error(f"Annotation not saved: {exc}")
    history = review_journal.annotation_history(journal(), row.finding_id)
    if len(history):
        st.caption("Annotation history (newest first)")
        st.dataframe(history, hide_index=True, key=f"hist_{row.finding_id}")
