"""PII on screen: masked by default; an admin may unmask one case with a stated, audited reason.

The unmasked state lives only in this browser session's `st.session_state`, keyed by case id;
it is never put in `st.cache_*`, so one user's unmasked data cannot reach another session.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.shell.auth import audit_event, can, current_principal
from data_access.masking import mask_frame
from explainers.errors import AuditError

__all__ = ["MIN_REASON_CHARS", "pii_view"]

MIN_REASON_CHARS = 10
_UNMASKED_KEY = "_fraudlens_unmasked_cases"


def _unmasked_cases() -> dict[str, str]:
    """case id → the actor who unmasked it, in this session only."""
    cases = st.session_state.get(_UNMASKED_KEY)
    if not isinstance(cases, dict):
        cases = {}
        st.session_state[_UNMASKED_KEY] = cases
    return cases


def pii_view(frame: pd.DataFrame, *, case_id: str) -> pd.DataFrame:
    """``frame`` as this principal may see it: masked, unless they unmasked this case."""
    principal = current_principal()
    if not can(principal, "unmask"):
        return mask_frame(frame)
    assert principal is not None
    cases = _unmasked_cases()
    if cases.get(case_id) == principal.actor:
        return frame
    with st.expander("Unmask PII"):
        reason = st.text_input(
            "Reason for unmasking (recorded in the audit trail)",
            key=f"_fraudlens_unmask_reason_{case_id}",
            max_chars=500,
        )
        if st.button("Unmask", key=f"_fraudlens_unmask_{case_id}"):
            reason = reason.strip()
            if len(reason) < MIN_REASON_CHARS:
                st.warning(f"State a reason of at least {MIN_REASON_CHARS} characters.")
            else:
                try:
                    audit_event("unmask", case_id, "ok", {"reason": reason})
                except AuditError as exc:
                    st.error(f"PII stays masked: the audit record could not be written ({exc}).")
                else:
                    cases[case_id] = principal.actor
                    return frame
    return mask_frame(frame)
