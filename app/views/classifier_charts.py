"""Charts and tables of `explainers.classifier_stats`: ROC and PR curves, the confusion
matrix at a threshold (counts and USD), lift and cumulative precision by score decile.
Altair only; no Streamlit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainers.classifier_stats import ClassifierStats, Confusion

__all__ = ["confusion_table", "curve_chart", "decile_chart", "decile_table", "summary_table"]

_POINTS = 400  # points drawn per curve


def _thin(frame: pd.DataFrame) -> pd.DataFrame:
    if len(frame) <= _POINTS:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, _POINTS).round().astype(int))
    return frame.iloc[keep]


def curve_chart(stats: Sequence[ClassifierStats], kind: str = "roc",
                marks: Mapping[str, float] | None = None) -> alt.LayerChart:
    """ROC (`kind="roc"`) or precision-recall curves, one line per model; `marks` puts a
    point at each model's threshold."""
    x, y = ("fpr", "tpr") if kind == "roc" else ("recall", "precision")
    titles = ({"fpr": "False-positive rate", "tpr": "True-positive rate (recall)"} if kind == "roc"
              else {"recall": "Recall", "precision": "Precision"})
    frames, points = [], []
    for s in stats:
        curve = (s.roc() if kind == "roc" else s.pr()).replace([np.inf, -np.inf], np.nan)
        frames.append(_thin(curve.dropna(subset=[x, y])).assign(model=s.model_id))
        if marks and s.model_id in marks:
            c = s.confusion(marks[s.model_id])
            at = ({"fpr": c.false_positive_rate, "tpr": c.recall} if kind == "roc"
                  else {"recall": c.recall, "precision": c.precision})
            points.append({**at, "model": s.model_id, "threshold": marks[s.model_id]})
    data = pd.concat(frames, ignore_index=True)[[x, y, "threshold", "model"]]
    data["threshold"] = data["threshold"].replace([np.inf], np.nan)
    line = alt.Chart(data).mark_line().encode(
        x=alt.X(f"{x}:Q", title=titles[x], scale=alt.Scale(domain=[0, 1])),
        y=alt.Y(f"{y}:Q", title=titles[y], scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", title="model"),
        tooltip=["model:N", alt.Tooltip(f"{x}:Q", format=".3f"),
                 alt.Tooltip(f"{y}:Q", format=".3f"), alt.Tooltip("threshold:Q", format=".4f")])
    layers: list[alt.Chart] = [line]
    if kind == "roc":
        diag = pd.DataFrame({x: [0.0, 1.0], y: [0.0, 1.0]})
        layers.insert(0, alt.Chart(diag).mark_line(strokeDash=[4, 4], color="#999").encode(
            x=f"{x}:Q", y=f"{y}:Q"))
    if points:
        layers.append(alt.Chart(pd.DataFrame(points)).mark_point(
            shape="diamond", size=120, filled=True).encode(
            x=f"{x}:Q", y=f"{y}:Q", color="model:N",
            tooltip=["model:N", alt.Tooltip("threshold:Q", format=".4f")]))
    title = "ROC curve" if kind == "roc" else "Precision-recall curve"
    return alt.layer(*layers).properties(title=title, height=280)


def confusion_table(confusion: Confusion) -> pd.DataFrame:
    """The confusion matrix as plain numbers: counts and USD, flagged vs passed."""
    return confusion.frame()


def summary_table(stats: Sequence[ClassifierStats], thresholds: Mapping[str, float]
                  ) -> pd.DataFrame:
    """Per model at its threshold: precision, recall, false-positive rate and the AUCs."""
    rows = []
    for s in stats:
        c = s.confusion(thresholds[s.model_id])
        rows.append({"model": s.model_id, "threshold": round(c.threshold, 6),
                     "flagged": c.tp + c.fp, "precision": round(c.precision, 4),
                     "recall": round(c.recall, 4),
                     "false-positive rate": round(c.false_positive_rate, 5),
                     "fraud caught (USD)": round(c.tp_usd, 2),
                     "fraud missed (USD)": round(c.fn_usd, 2),
                     "ROC AUC": round(s.roc_auc, 4), "PR AUC": round(s.pr_auc, 4)})
    return pd.DataFrame(rows)


def decile_table(stats: ClassifierStats) -> pd.DataFrame:
    d = stats.deciles
    return pd.DataFrame({
        "decile": d["decile"].astype(int), "rows": d["rows"].astype(int),
        "lowest score": d["min_score"].round(4), "fraud": d["fraud"].astype(int),
        "fraud (USD)": d["fraud_usd"].round(2), "precision": d["precision"].round(4),
        "lift": d["lift"].round(2), "cumulative precision": d["cumulative_precision"].round(4),
        "cumulative recall": d["cumulative_recall"].round(4)})


def decile_chart(stats: Sequence[ClassifierStats]) -> alt.LayerChart:
    """Lift (bars) and cumulative precision (line) by score decile, highest scores first."""
    data = pd.concat([s.deciles.assign(model=s.model_id) for s in stats], ignore_index=True)
    base = alt.Chart(data).encode(x=alt.X("decile:O", title="score decile (1 = highest)"),
                                  xOffset="model:N")
    bars = base.mark_bar(opacity=0.7).encode(
        y=alt.Y("lift:Q", title="lift over the base rate"), color=alt.Color("model:N"),
        tooltip=["model:N", "decile:O", alt.Tooltip("lift:Q", format=".2f"),
                 alt.Tooltip("precision:Q", format=".3f"), "fraud:Q", "rows:Q"])
    line = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("decile:O"), y=alt.Y("cumulative_precision:Q", title="cumulative precision"),
        color=alt.Color("model:N"),
        tooltip=["model:N", "decile:O", alt.Tooltip("cumulative_precision:Q", format=".3f")])
    return alt.layer(bars, line).resolve_scale(y="independent").properties(
        title="Lift and cumulative precision by score decile", height=260)
