"""The what-if panel on a case: edit one feature, re-score and re-explain with every
registered model, before and after side by side. Audited (`what_if`); never written anywhere."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from app.services import case as case_service
from app.services import what_if
from app.shell import caches, components
from app.shell.auth import audit_event
from app.shell.resources import load_model
from app.views import charts
from explainers.errors import AuditError, FraudLensError
from explainers.schema import Feature, FeatureSchema

__all__ = ["what_if_panel"]


def _value_input(feature: Feature, current: Any, key: str) -> Any:
    if feature.is_categorical:
        options = list(feature.categories or ())
        index = options.index(str(current)) if str(current) in options else None
        return st.selectbox("New value", options, index=index, key=key)
    if feature.dtype == "bool":
        return st.toggle("New value: yes", value=bool(current) if pd.notna(current) else False,
                         key=key)
    start = float(current) if current is not None and pd.notna(current) else 0.0
    step = 1.0 if feature.dtype == "int" else None
    return st.number_input(f"New value{f' ({feature.unit})' if feature.unit else ''}",
                           value=start, step=step, key=key)


@st.fragment
def what_if_panel(txn: str, row: pd.DataFrame, model_id: str, schema: FeatureSchema) -> None:
    """Pick a feature and a value; every model's before/after waterfall."""
    with st.expander("What if… (edit a feature, re-score with every model)",
                     icon=":material/science:"):
        names = schema.names
        descriptions = {f.name: f.description for f in schema.features}
        name = st.selectbox("Feature", names, key=f"wi_feature_{txn}",
                            format_func=lambda f: f"{f} — {descriptions.get(f, '')}")
        feature = schema.feature(name)
        current = row[name].iloc[0] if name in row.columns else None
        st.text(f"Now: {case_service.shown_value(current, feature)}")
        value = _value_input(feature, current, f"wi_value_{txn}_{name}")
        if not st.button("Re-score with every model", key=f"wi_go_{txn}",
                         icon=":material/refresh:"):
            return
        try:
            checked = what_if.checked_value(feature, value)
            audit_event("what_if", txn, "ok", {"model": model_id, "feature": name,
                                               "from": case_service.shown_value(current, feature),
                                               "to": case_service.shown_value(checked, feature)})
            models = [load_model(m.model_id) for m in caches.models()]
            results = what_if.what_if(models, row, feature, checked)
        except (AuditError, FraudLensError) as exc:
            st.error(f"What-if not run: {exc}")
            return
        st.caption("Computed now on the edited row, for this view only: nothing is stored.")
        for result in results:
            _before_after(result)


def _before_after(result: what_if.WhatIfResult) -> None:
    before, after = result.before, result.after
    st.markdown(f"**{case_service.md_escape(result.model_id)}**: "
                f"{components.score_pct(before.probability)} → "
                f"{components.score_pct(after.probability)}"
                + ("" if result.uses_feature else " (this model does not use the feature)"))
    left, right = st.columns(2)
    schema = load_model(result.model_id).schema
    for col, case, label in ((left, before, "before"), (right, after, "after")):
        with col:
            st.caption(f"{label}: {components.score_pct(case.probability)}")
            components.chart(charts.waterfall_chart(
                case_service.waterfall_steps(case, schema, 8)),
                key=f"wi_{label}_{result.model_id}")
