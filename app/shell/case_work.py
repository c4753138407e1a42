"""Working a case in the browser: the disposition form on a case, and each case's status and
analyst outcome for the queue and the similar-cases table. Every save is one audited
`disposition` record written in the same journal transaction as the disposition."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import streamlit as st

from app.services import case_work
from app.shell.auth import audit_event, current_principal
from app.shell.resources import journal, workspace
from data_access import dispositions
from explainers.errors import AuditError, FraudLensError

__all__ = ["CASE_STATUSES", "disposition_panel", "filter_status", "finding_outcomes",
           "with_analyst_outcome", "with_status"]

CASE_STATUSES = case_work.CASE_STATUSES
filter_status = case_work.filter_status

_NO_OUTCOME = ""


def with_status(rows: pd.DataFrame) -> pd.DataFrame:
    """Case rows with their `status` (unworked / assigned / decided) from the journal."""
    ids = rows["transaction_id"].astype(str).tolist() if "transaction_id" in rows else []
    return case_work.with_status(rows, dispositions.case_statuses(journal(), ids))


def with_analyst_outcome(rows: pd.DataFrame) -> pd.DataFrame:
    """Case rows with the analysts' decided outcome in its own column."""
    ids = rows["transaction_id"].astype(str).tolist() if "transaction_id" in rows else []
    latest = dispositions.latest_dispositions(journal(), ids)
    return case_work.with_analyst_outcome(rows, case_work.analyst_outcomes(latest))


def finding_outcomes(members: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per finding: (analyst-decided fraud, analyst-decided legit) among its members."""
    ids = members["transaction_id"].astype(str).tolist() if len(members) else []
    latest = dispositions.latest_dispositions(journal(), ids)
    return case_work.finding_outcomes(members, case_work.analyst_outcomes(latest))


def _assignees(history: pd.DataFrame, me: str) -> list[str]:
    known: Iterable[str] = history["assignee"].dropna().astype(str) if len(history) else []
    return list(dict.fromkeys([me, *(a for a in known if a)]))


def disposition_panel(transaction_id: str, model_id: str) -> None:
    """The case's status and history, and a form to record an outcome or an assignment."""
    principal = current_principal()
    me = principal.actor if principal else "anonymous"
    history = dispositions.disposition_history(journal(), transaction_id)
    latest = history.iloc[0] if len(history) else None
    status = "unworked" if latest is None else (
        "decided" if latest["outcome"] in dispositions.FINAL_OUTCOMES else "assigned")
    st.subheader("Outcome")
    if latest is None:
        st.caption("Status: unworked — nobody has taken or decided this case yet.")
    else:
        outcome = dispositions.OUTCOMES.get(latest["outcome"], "no outcome yet")
        st.caption(f"Status: {status}")
        st.text(f"Outcome: {outcome}"
                + (f" ({latest['typology']})" if latest["typology"] else "")
                + f" · assigned to {latest['assignee'] or 'nobody'}"
                + f" · by {latest['author']}, revision {int(latest['revision'])}")
    try:
        kinds = dispositions.typologies(workspace().path)
    except FraudLensError as exc:
        st.error(str(exc))
        return
    _form(transaction_id, model_id, me, kinds, _assignees(history, me), latest)
    if len(history):
        with st.expander(f"Outcome history ({len(history)} revisions, newest first)"):
            st.dataframe(history.drop(columns=["transaction_id"]), hide_index=True,
                         key="disposition_history")


def _form(transaction_id: str, model_id: str, me: str, kinds: tuple[str, ...],
          people: list[str], latest: pd.Series | None) -> None:
    options = [_NO_OUTCOME, *dispositions.OUTCOMES]
    with st.form(f"disposition_{transaction_id}", border=True):
        outcome = st.radio("Outcome", options, horizontal=True,
                           key=f"disp_outcome_{transaction_id}",
                           format_func=lambda o: dispositions.OUTCOMES.get(o, "Only assign"))
        typology = st.selectbox("Typology", kinds, index=None,
                                key=f"disp_typology_{transaction_id}",
                                placeholder="Choose a typology (required for fraud)",
                                help="The list comes from [dispositions] typologies in the "
                                     "workspace's fraudlens.toml")
        current = str(latest["assignee"]) if latest is not None and latest["assignee"] else me
        assignee = st.selectbox("Assigned to", people, index=people.index(current)
                                if current in people else 0, accept_new_options=True,
                                key=f"disp_assignee_{transaction_id}",
                                help="Yourself, or type a teammate's email")
        notes = st.text_area("Note", key=f"disp_notes_{transaction_id}", max_chars=2000)
        if not st.form_submit_button("Save outcome", type="primary"):
            return
    try:
        saved = dispositions.record_disposition(
            journal(), transaction_id, model_id=model_id, outcome=outcome,
            typology=typology or "", assignee=assignee or "", notes=notes, author=me,
            allowed_typologies=kinds,
            before_commit=lambda d: audit_event(
                "disposition", d.transaction_id, "ok",
                {"model": model_id, "revision": d.revision, "outcome": d.outcome or "assigned",
                 "typology": d.typology, "assignee": d.assignee}))
    except (AuditError, FraudLensError) as exc:
        st.error(f"Outcome not saved: {exc}")
        return
    st.toast(f"Saved: {saved.status}", icon=":material/check_circle:")
    st.rerun()
