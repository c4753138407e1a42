"""The pruning frontier drawn: holdout ROC AUC against calibrated p99 latency for the first k
trees of each model, the SLA as a line, the smallest ensemble within tolerance marked.
Altair only; no Streamlit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import altair as alt
import pandas as pd

if TYPE_CHECKING:
    from app.services.pruning import PruningFrontier

__all__ = ["frontier_chart", "frontier_table"]


def frontier_table(frontier: PruningFrontier) -> pd.DataFrame:
    rows = []
    for m in frontier.models:
        for p in m.points:
            rows.append({"model": m.model_id, "trees": p.trees, "ROC AUC": round(p.roc_auc, 4),
                         "p99 measured (ms)": round(p.p99_ms, 3),
                         "p99 calibrated (ms)": round(p.p99_calibrated_ms, 3),
                         "SLA": "pass" if p.meets_sla else "FAIL",
                         "smallest within tolerance": "◆" if p.trees == m.smallest_within
                         else ""})
    return pd.DataFrame(rows)


def frontier_chart(frontier: PruningFrontier) -> alt.LayerChart:
    data = frontier.frame()
    data["smallest"] = [any(m.model_id == model and m.smallest_within == trees
                            for m in frontier.models)
                        for model, trees in zip(data["model"], data["trees"], strict=True)]
    base = alt.Chart(data).encode(
        x=alt.X("p99_calibrated_ms:Q", title="p99 single-row latency, calibrated (ms)"),
        y=alt.Y("roc_auc:Q", title="holdout ROC AUC", scale=alt.Scale(zero=False)),
        color=alt.Color("model:N"),
        tooltip=["model:N", "trees:Q", alt.Tooltip("roc_auc:Q", format=".4f"),
                 alt.Tooltip("p99_ms:Q", format=".3f", title="p99 measured (ms)"),
                 alt.Tooltip("p99_calibrated_ms:Q", format=".3f")])
    line = base.mark_line(point=True)
    chosen = alt.Chart(data[data["smallest"]]).mark_point(
        shape="diamond", size=220, filled=True).encode(
        x="p99_calibrated_ms:Q", y="roc_auc:Q", color="model:N",
        tooltip=["model:N", "trees:Q", alt.Tooltip("roc_auc:Q", format=".4f")])
    sla = alt.Chart(pd.DataFrame({"sla": [frontier.settings.sla_p99_ms]})).mark_rule(
        color="#c0392b", strokeDash=[6, 3]).encode(x="sla:Q")
    return alt.layer(line, chosen, sla).properties(
        title="Pruning frontier (◆ smallest ensemble within tolerance; red: the SLA)",
        height=300)
