"""Audit Trail (admin): filter the hash-chained audit log, newest first, and verify the chain."""

from datetime import UTC, datetime, time, timedelta

import streamlit as st

from app.shell.auth import require
from app.shell.resources import audit
from data_access.audit import ACTIONS, OUTCOMES
from explainers.errors import AuditError

PAGE_SIZE = 50
MAX_ROWS = 5000

require("audit", "Audit Trail")
st.title("Audit Trail")
log = audit()

with st.form("audit_filters"):
    c1, c2, c3, c4 = st.columns(4)
    action = c1.selectbox("Action", ("any", *ACTIONS))
    actor = c2.text_input("Actor (exact)", max_chars=200).strip()
    outcome = c3.selectbox("Outcome", ("any", *OUTCOMES))
    today = datetime.now(UTC).date()
    dates = c4.date_input("Date range (UTC)", (today - timedelta(days=30), today))
    st.form_submit_button("Apply")

since = until = None
if isinstance(dates, tuple) and len(dates) == 2:
    since = datetime.combine(dates[0], time.min, UTC)
    until = datetime.combine(dates[1] + timedelta(days=1), time.min, UTC)

try:
    records = log.records(action=None if action == "any" else action, actor=actor or None,
                          outcome=None if outcome == "any" else outcome, since=since,
                          until=until, limit=MAX_ROWS)
except AuditError as exc:
    st.error(str(exc))
    st.stop()

pages = max(1, -(-len(records) // PAGE_SIZE))
left, right = st.columns([1, 3])
page = left.number_input("Page", min_value=1, max_value=pages, value=1, step=1)
right.caption(f"{len(records):,} record(s), newest first"
              + (f" (first {MAX_ROWS:,} only)" if len(records) == MAX_ROWS else ""))
start = (int(page) - 1) * PAGE_SIZE
st.dataframe(records.iloc[start:start + PAGE_SIZE].drop(columns=["prev_hash"]),
             hide_index=True, width="stretch")

if st.button("Verify chain", icon=":material/verified:"):
    try:
        result = log.verify()
    except AuditError as exc:
        st.error(str(exc))
    else:
        if result.ok:
            st.success(f"Chain intact: {result.problem}, {result.anchored:,} anchored by the "
                       f"signed checkpoints; head {result.head_hash or '—'}")
        else:
            where = "" if result.first_bad_seq is None else f" at seq {result.first_bad_seq}"
            st.error(f"Chain broken{where}: {result.problem}")
