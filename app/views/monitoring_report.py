"""Monitoring drawn: the weekly table as an analyst reads it (intervals, "not yet measurable",
estimates marked as such), the alert list, the chart that explains each alert (Altair), the
CSV tables and the self-contained HTML report. No Streamlit, no SQL."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import altair as alt
import pandas as pd

from app.views.html_report import Chart, Note, Section, render_html

if TYPE_CHECKING:
    from app.services.monitoring import MonitoringReport
    from app.services.monitoring_drift import Alert

__all__ = [
    "alerts_csv",
    "alerts_table",
    "attribution_table",
    "chart_for",
    "feature_table",
    "label_chart",
    "report_html",
    "segment_table",
    "source_table",
    "weekly_csv",
    "weekly_table",
]

NOT_MEASURABLE = "not yet measurable"
METRICS = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "recall_at_k": "Recall at capacity",
           "precision_at_k": "Precision at capacity"}
MEASURES = {"missing": ("missing_rate", "Missing rate", ".0%"),
            "psi": ("psi", "PSI", ".2f"),
            "out_of_range": ("out_of_range_rate", "Out-of-range rate", ".1%"),
            "unseen": ("unseen_share", "Share at unseen levels", ".1%")}
Acks = Mapping[str, Mapping[str, str]]


def _nan(x: object) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _interval(est: float, low: float, high: float) -> str:
    if _nan(est):
        return NOT_MEASURABLE
    if _nan(low):
        return f"{est:.3f}"
    return f"{est:.3f} [{low:.3f}–{high:.3f}]"


def _pct(x: float, digits: int = 1) -> str:
    return "—" if _nan(x) else f"{x:.{digits}%}"


def weekly_table(report: MonitoringReport) -> pd.DataFrame:
    """One text row per week: metrics with 95% intervals, or "not yet measurable"; the
    expected final values of immature weeks are marked as estimates."""
    rows = []
    for w in report.weekly.itertuples(index=False):
        measurable = w.status != NOT_MEASURABLE
        row = {"Week": str(w.week), "Transactions": f"{w.rows:,}",
               "Labels known": _pct(w.label_share), "Fraud known": f"{w.fraud_known:,}",
               "Labels": f"reference · {w.status}" if w.reference_week else w.status}
        for key, label in METRICS.items():
            row[label] = (_interval(getattr(w, key), getattr(w, f"{key}_low"),
                                    getattr(w, f"{key}_high")) if measurable else NOT_MEASURABLE)
        row["Expected final fraud (estimate)"] = (
            "" if w.status == "final" or _nan(w.expected_final_fraud)
            else f"≈ {w.expected_final_fraud:,.0f} ({_pct(w.expected_label_completeness, 0)} "
                 "of fraud labels in)")
        row["Expected final recall (estimate)"] = (
            "" if _nan(w.expected_final_recall_at_k) else f"≈ {w.expected_final_recall_at_k:.3f}")
        row["Flag rate"] = _pct(w.flag_rate, 2)
        row["Score PSI"] = "" if _nan(w.score_psi) else f"{w.score_psi:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def weekly_csv(report: MonitoringReport) -> pd.DataFrame:
    """The weekly numbers for `monitor_weekly.csv` (empty cells where not measurable)."""
    out = report.weekly.copy()
    out.insert(0, "model", report.model_id)
    out["week"] = out["week"].astype(str)
    out["labels_as_of"] = report.as_of.isoformat()
    return out


def alerts_table(report: MonitoringReport, acks: Acks | None = None) -> pd.DataFrame:
    acks = acks or {}
    return pd.DataFrame([{
        "Alert": a.alert_id, "Week": str(a.week), "Kind": a.kind, "What": a.message,
        "Acknowledged": (f"{acks[a.alert_id]['by']}, {acks[a.alert_id]['at']}: "
                         f"{acks[a.alert_id]['note']}" if a.alert_id in acks else "no")}
        for a in report.alerts], columns=["Alert", "Week", "Kind", "What", "Acknowledged"])


def alerts_csv(report: MonitoringReport) -> pd.DataFrame:
    return pd.DataFrame([{"model": report.model_id, "alert_id": a.alert_id,
                          "week": str(a.week), "kind": a.kind, "subject": a.subject,
                          "value": a.value, "reference": a.reference,
                          "features": ";".join(a.features), "message": a.message}
                         for a in report.alerts],
                        columns=["model", "alert_id", "week", "kind", "subject", "value",
                                 "reference", "features", "message"])


def source_table(report: MonitoringReport) -> pd.DataFrame:
    """Data quality by feature source and week, as text."""
    s = report.sources
    if s.empty:
        return pd.DataFrame()
    return pd.DataFrame({
        "Week": s["week"].astype(str), "Source": s["source"], "Features": s["features"],
        "Worst missing rate": [f"{f}: {_pct(r)} → {_pct(c)}" for f, r, c in zip(
            s["worst_missing_feature"], s["worst_reference_missing_rate"],
            s["worst_missing_rate"], strict=True)],
        "Largest PSI": s["max_psi"].map(lambda x: "" if _nan(x) else f"{x:.2f}"),
        "Largest out-of-range rate": s["max_out_of_range_rate"].map(_pct),
        "Largest unseen-level share": s["max_unseen_share"].map(_pct),
        "New features": s["new_features"]})


def feature_table(report: MonitoringReport, week: object) -> pd.DataFrame:
    f = report.features
    f = f[f["week"].astype(str) == str(week)]
    return pd.DataFrame({
        "Feature": f["feature"], "Source": f["source"], "Type": f["dtype"],
        "Status": f["status"], "Missing (reference → week)": [
            f"{_pct(r)} → {_pct(c)}" for r, c in zip(f["reference_missing_rate"],
                                                    f["missing_rate"], strict=True)],
        "PSI": f["psi"].map(lambda x: "" if _nan(x) else f"{x:.3f}"),
        "Out of range": f["out_of_range_rate"].map(lambda x: "" if _nan(x) else _pct(x, 2)),
        "Unseen levels": f["unseen_share"].map(lambda x: "" if _nan(x) else _pct(x, 2))})


def attribution_table(report: MonitoringReport, week: object) -> pd.DataFrame:
    """Mean |SHAP|, mean SHAP and rank per feature in one week beside the reference's."""
    a = report.attribution
    if a is None or a.empty:
        return pd.DataFrame()
    a = a[a["week"].astype(str) == str(week)].sort_values("rank")
    return pd.DataFrame({
        "Feature": a["feature"], "Rank (reference → week)": [
            f"{'new' if _nan(r) else f'{r:.0f}'} → {c:.0f}" for r, c in zip(
                a["reference_rank"], a["rank"], strict=True)],
        "Mean |SHAP| (reference → week)": [
            f"{'—' if _nan(r) else f'{r:.4f}'} → {c:.4f}" for r, c in zip(
                a["reference_mean_abs_shap"], a["mean_abs_shap"], strict=True)],
        "Mean SHAP (reference → week)": [
            f"{'—' if _nan(r) else f'{r:+.4f}'} → {c:+.4f}" for r, c in zip(
                a["reference_mean_shap"], a["mean_shap"], strict=True)],
        "Status": a["status"]})


def segment_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in frame.itertuples(index=False):
        row = {"Segment": str(r.segment), "Week": str(r.week), "Transactions": f"{r.rows:,}",
               "Labels known": _pct(r.label_share), "Fraud known": f"{r.fraud_known:,}"}
        for key, label in METRICS.items():
            row[label] = (NOT_MEASURABLE if r.status == NOT_MEASURABLE else
                          _interval(getattr(r, key), getattr(r, f"{key}_low"),
                                    getattr(r, f"{key}_high")))
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- charts


def _week_axis() -> alt.X:
    return alt.X("week:T", title="Week (Monday, UTC)", axis=alt.Axis(format="%b %d"))


def performance_chart(report: MonitoringReport, metric: str) -> alt.LayerChart:
    """The metric per measurable week with its 95% interval, the reference value and the
    alert line (reference minus the rule's drop)."""
    w = report.weekly[report.weekly["status"] != NOT_MEASURABLE]
    data = pd.DataFrame({"week": pd.to_datetime(w["week"].astype(str)), "value": w[metric],
                         "low": w[f"{metric}_low"], "high": w[f"{metric}_high"],
                         "labels": w["status"]}).dropna(subset=["value"])
    ref = report.reference_value(metric)
    drop = getattr(report.rules, f"{metric}_drop")
    lines = pd.DataFrame({"y": [ref, ref - drop], "what": ["reference", "alert below"]})
    base = alt.Chart(data).encode(x=_week_axis())
    band = base.mark_errorbar(ticks=True).encode(
        y=alt.Y("low:Q", title=METRICS[metric], scale=alt.Scale(zero=False)), y2="high:Q")
    points = base.mark_line(point=True).encode(
        y="value:Q", color=alt.Color("labels:N", title="Labels",
                                     legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("week:T"), alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f")])
    rules = alt.Chart(lines).mark_rule(strokeDash=[4, 3]).encode(
        y="y:Q", color=alt.Color("what:N", title="", legend=alt.Legend(orient="bottom"),
                                 scale=alt.Scale(domain=["reference", "alert below"],
                                                 range=["#7f8c8d", "#c0392b"])))
    return (band + points + rules).resolve_scale(color="independent").properties(
        title=f"{METRICS[metric]} by week (95% bootstrap interval)", width=560, height=260)


def label_chart(report: MonitoringReport) -> alt.Chart:
    """Share of each week's transactions with a known label, and the expected share of its
    fraud labels already in (from past weeks' label delays)."""
    w = report.weekly
    data = pd.concat([
        pd.DataFrame({"week": pd.to_datetime(w["week"].astype(str)), "share": w["label_share"],
                      "what": "transactions labelled"}),
        pd.DataFrame({"week": pd.to_datetime(w["week"].astype(str)),
                      "share": w["expected_label_completeness"],
                      "what": "fraud labels in (estimate)"})])
    return alt.Chart(data).mark_line(point=True).encode(
        x=_week_axis(), y=alt.Y("share:Q", title="Share", axis=alt.Axis(format="%"),
                                scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("what:N", title="", legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("week:T"), alt.Tooltip("share:Q", format=".1%"), "what:N"]
    ).properties(title=f"Label maturity (labels as of {report.as_of:%Y-%m-%d})", width=560,
                 height=220)


def _weekly_bar(report: MonitoringReport, column: str, title: str, fmt: str,
                line: float) -> alt.LayerChart:
    data = pd.DataFrame({"week": pd.to_datetime(report.weekly["week"].astype(str)),
                         "value": report.weekly[column]})
    bars = alt.Chart(data).mark_bar(color="#5d6d7e").encode(
        x=_week_axis(), y=alt.Y("value:Q", title=title, axis=alt.Axis(format=fmt)),
        tooltip=[alt.Tooltip("week:T"), alt.Tooltip("value:Q", format=fmt)])
    rule = alt.Chart(pd.DataFrame({"y": [line]})).mark_rule(color="#c0392b",
                                                            strokeDash=[4, 3]).encode(y="y:Q")
    return (bars + rule).properties(title=title, width=560, height=220)


def source_chart(report: MonitoringReport, source: str, measure: str,
                 features: tuple[str, ...] = ()) -> alt.LayerChart:
    """A measure per week for the source's features (the alert's features highlighted),
    with the reference's value of the worst one dashed."""
    col, title, fmt = MEASURES[measure]
    f = report.features[(report.features["source"] == source) & report.features["week"].notna()]
    data = pd.DataFrame({"week": pd.to_datetime(f["week"].astype(str)), "feature": f["feature"],
                         "value": f[col], "flagged": f["feature"].isin(features)})
    data = data.dropna(subset=["value"])
    lines = alt.Chart(data).mark_line(point=True).encode(
        x=_week_axis(), y=alt.Y("value:Q", title=title, axis=alt.Axis(format=fmt)),
        color=alt.Color("feature:N", title=f"{source} features",
                        legend=alt.Legend(orient="bottom", columns=3, labelLimit=220)),
        strokeWidth=alt.condition("datum.flagged", alt.value(3), alt.value(1)),
        opacity=alt.condition("datum.flagged", alt.value(1.0), alt.value(0.35)),
        tooltip=[alt.Tooltip("week:T"), "feature:N", alt.Tooltip("value:Q", format=fmt)])
    return lines.properties(title=f"{source} features: {title.lower()} by week", width=560,
                            height=260)


def attribution_chart(report: MonitoringReport, features: tuple[str, ...]) -> alt.Chart:
    a = report.attribution
    if a is None or a.empty:
        return alt.Chart(pd.DataFrame({"x": []})).mark_point()
    a = a[a["feature"].isin(features[:6])]
    data = pd.DataFrame({"week": pd.to_datetime(a["week"].astype(str)), "feature": a["feature"],
                         "value": a["mean_abs_shap"], "rank": a["rank"]})
    return alt.Chart(data).mark_line(point=True).encode(
        x=_week_axis(), y=alt.Y("value:Q", title="Mean |SHAP| (log-odds)"),
        color=alt.Color("feature:N", title="Feature"),
        tooltip=[alt.Tooltip("week:T"), "feature:N", alt.Tooltip("value:Q", format=".4f"),
                 "rank:Q"]).properties(title="Attribution by week", width=560, height=260)


def chart_for(report: MonitoringReport, alert: Alert) -> alt.TopLevelMixin:
    """The chart that explains `alert` (dispatch on its `chart` key)."""
    kind, _, rest = alert.chart.partition(":")
    builders: dict[str, Callable[[], alt.TopLevelMixin]] = {
        "performance": lambda: performance_chart(report, rest),
        "score": lambda: _weekly_bar(report, "score_psi", "Score PSI against the reference",
                                     ".2f", report.rules.score_psi),
        "flag_rate": lambda: _weekly_bar(report, "flag_rate", "Flag rate (score ≥ threshold)",
                                         ".1%", report.rules.flag_rate_ratio
                                         * report.reference_flag_rate),
        "source": lambda: source_chart(report, *rest.split(":", 1), alert.features),
        "attribution": lambda: attribution_chart(report, alert.features),
    }
    return builders[kind]()


# --------------------------------------------------------------------------- HTML


def _chart(chart: alt.TopLevelMixin) -> Chart:
    return Chart(chart.to_dict())


def report_html(report: MonitoringReport, acks: Acks | None = None) -> str:
    """The self-contained monitoring report (`fraudlens monitor --out`)."""
    alert_parts: list[object] = [alerts_table(report, acks)] if report.alerts else [
        "No alert fires under these rules."]
    for a in report.alerts:
        alert_parts.append(Section(f"{a.alert_id} · {a.week}", [a.message,
                                                                _chart(chart_for(report, a))]))
    perf = [weekly_table(report), Note(
        "Intervals: 95% Poisson bootstrap over score bins ("
        f"{report.rules.n_resamples} resamples, seed {report.rules.seed}). Capacity: top "
        f"{report.rules.k_per_week} transactions a week by score. Expected final values are "
        "estimates from how fraud labels of mature weeks arrived.")]
    perf += [_chart(label_chart(report))]
    perf += [_chart(performance_chart(report, m)) for m in ("recall_at_k", "roc_auc")]
    sections = [
        *(Note(w) for w in report.warnings),
        Section("Alerts", alert_parts),
        Section("Performance by week", perf),
        Section("Data quality by feature source", [source_table(report)]),
    ]
    subtitle = (f"{report.model_id} · {report.span[0]:%Y-%m-%d} to {report.span[1]:%Y-%m-%d} · "
                f"labels as of {report.as_of:%Y-%m-%d %H:%M} UTC · reference: "
                f"{report.reference.basis}")
    return render_html(f"Monitoring — {report.model_id}", sections, subtitle)
