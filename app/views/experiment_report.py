"""Tables, charts and the HTML report of an experiment (`app.services.experiments`).
Altair and `html_report` only; no Streamlit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import altair as alt
import numpy as np
import pandas as pd

from app.views import classifier_charts
from app.views.html_report import Chart, Html, Note, Section, render_html
from explainers.experiment_stats import DIFFERENCE_METRICS, metric_label

if TYPE_CHECKING:
    from app.services.experiments import ExperimentReport

__all__ = ["arms_overview", "arms_table", "correlation_table", "differences_chart",
           "differences_table", "report_html", "srm_table", "weekly_chart", "weekly_table"]

NOT_MEASURABLE = "not yet measurable"


def arms_overview(report: ExperimentReport) -> pd.DataFrame:
    """One row per arm: model, threshold, units assigned and seen, rows judged, status."""
    return pd.DataFrame([{
        "arm": a.arm, "model": a.model, "threshold": round(a.threshold, 6),
        "units assigned": a.units_assigned, "units seen": a.units_seen,
        "transactions in window": a.rows, "matured, labelled": a.matured_rows,
        "fraud": a.fraud, "status": a.status} for a in report.arms])


def arms_table(report: ExperimentReport) -> pd.DataFrame:
    """experiment_arms.csv: one row per arm and metric (estimate and 95% interval), and the
    differences to the control arm; an arm without matured labels says so."""
    rows: list[dict[str, Any]] = []
    stats = report.stats
    for a in report.arms:
        mine = stats[(stats["arm"] == a.arm) & (stats["versus"] == "")]
        if not a.measurable or mine.empty:
            rows.append({"experiment": report.name, "arm": a.arm, "versus": "",
                         "model": a.model, "threshold": a.threshold, "metric": "all",
                         "label": NOT_MEASURABLE, "estimate": np.nan, "ci_low": np.nan,
                         "ci_high": np.nan})
            continue
        for _, r in pd.concat([mine, stats[(stats["arm"] == a.arm) & (stats["versus"] != "")]]
                              ).iterrows():
            rows.append({"experiment": report.name, "arm": a.arm, "versus": r["versus"],
                         "model": a.model, "threshold": a.threshold, "metric": r["metric"],
                         "label": r["label"], "estimate": r["estimate"],
                         "ci_low": r["ci_low"], "ci_high": r["ci_high"]})
    return pd.DataFrame(rows, columns=["experiment", "arm", "versus", "model", "threshold",
                                       "metric", "label", "estimate", "ci_low", "ci_high"])


def weekly_table(report: ExperimentReport) -> pd.DataFrame:
    """experiment_weekly.csv: every experiment, arm and week on matured labels."""
    out = report.weekly.copy()
    out["week"] = pd.to_datetime(out["week"], utc=True).dt.strftime("%Y-%m-%d")
    return out


def _fmt(value: float, metric: str) -> str:
    if value != value:
        return "—"
    if metric in ("roc_auc", "pr_auc", "recall_at_threshold", "friction_rate"):
        return f"{value:.4f}"
    return f"{value:,.2f}"


def differences_table(report: ExperimentReport) -> pd.DataFrame:
    """Each arm's metrics beside the control's, and the difference [95% interval]."""
    s = report.stats
    rows = []
    for _, d in s[s["versus"] != ""].iterrows():
        ctl = s[(s["arm"] == d["versus"]) & (s["versus"] == "") & (s["metric"] == d["metric"])]
        arm = s[(s["arm"] == d["arm"]) & (s["versus"] == "") & (s["metric"] == d["metric"])]
        excludes = d["ci_low"] > 0 or d["ci_high"] < 0
        m = d["metric"]
        rows.append({"metric": d["label"], "arm": d["arm"],
                     "control": _fmt(float(ctl["estimate"].iloc[0]), m) if len(ctl) else "—",
                     "arm value": _fmt(float(arm["estimate"].iloc[0]), m) if len(arm) else "—",
                     "difference [95% interval]":
                         f"{_fmt(d['estimate'], m)} [{_fmt(d['ci_low'], m)}, "
                         f"{_fmt(d['ci_high'], m)}]" + (" *" if excludes else "")})
    return pd.DataFrame(rows, columns=["metric", "arm", "control", "arm value",
                                       "difference [95% interval]"])


def per_arm_table(report: ExperimentReport) -> pd.DataFrame:
    """Every metric of every measured arm: estimate [95% interval], arms as columns."""
    s = report.stats[report.stats["versus"] == ""]
    if s.empty:
        return pd.DataFrame()
    cells = s.assign(cell=[f"{_fmt(e, m)} [{_fmt(lo, m)}, {_fmt(hi, m)}]" for e, lo, hi, m in
                           zip(s["estimate"], s["ci_low"], s["ci_high"], s["metric"],
                               strict=True)])
    order = list(dict.fromkeys(s["label"]))
    table = cells.pivot(index="label", columns="arm", values="cell").reindex(order)
    return table.reset_index().rename(columns={"label": "metric"})


def srm_table(report: ExperimentReport) -> pd.DataFrame:
    if report.srm is None:
        return pd.DataFrame()
    share = dict(report.srm.expected_share)
    total = sum(n for _, n in report.srm.observed)
    return pd.DataFrame([{"arm": arm, "units seen": n, "intended share": round(share[arm], 4),
                          "observed share": round(n / total, 4) if total else np.nan}
                         for arm, n in report.srm.observed])


def correlation_table(report: ExperimentReport) -> pd.DataFrame:
    return pd.DataFrame([{
        "model metric": metric_label(c.x), "business metric": metric_label(c.y),
        "weeks × arms": c.points, "Pearson r": round(c.estimate, 3),
        "95% interval": "—" if c.low != c.low else f"[{c.low:.3f}, {c.high:.3f}]"}
        for c in report.correlations])


def differences_chart(report: ExperimentReport) -> alt.Chart:
    """Each difference to control with its interval, one panel per metric."""
    d = report.stats[report.stats["versus"] != ""].copy()
    d = d[d["metric"].isin(DIFFERENCE_METRICS)]
    base = alt.Chart().encode(y=alt.Y("arm:N", title=None))
    rule = base.mark_rule().encode(x=alt.X("ci_low:Q", title="difference to control"),
                                   x2="ci_high:Q")
    point = base.mark_point(filled=True, size=60).encode(
        x="estimate:Q", tooltip=["label:N", "arm:N", alt.Tooltip("estimate:Q", format=",.4f"),
                                 alt.Tooltip("ci_low:Q", format=",.4f"),
                                 alt.Tooltip("ci_high:Q", format=",.4f")])
    zero = alt.Chart().mark_rule(strokeDash=[4, 4]).encode(x=alt.datum(0))
    return alt.layer(zero, rule, point, data=d).properties(width=220, height=50).facet(
        facet=alt.Facet("label:N", title=None), columns=3).resolve_scale(x="independent")


def weekly_chart(report: ExperimentReport, x: str = "recall_at_threshold",
                 y: str = "fraud_loss_per_1k") -> alt.Chart:
    """One point per experiment, arm and week: a model metric against a business metric."""
    data = report.weekly.copy()
    data["week"] = pd.to_datetime(data["week"], utc=True).dt.strftime("%Y-%m-%d")
    return alt.Chart(data).mark_circle(size=90).encode(
        x=alt.X(f"{x}:Q", title=metric_label(x), scale=alt.Scale(zero=False)),
        y=alt.Y(f"{y}:Q", title=metric_label(y)),
        color=alt.Color("arm:N"), shape=alt.Shape("experiment:N"),
        tooltip=["experiment:N", "arm:N", "week:N", "rows:Q", "fraud:Q",
                 alt.Tooltip(f"{x}:Q", format=".3f"), alt.Tooltip(f"{y}:Q", format=",.2f")]
    ).properties(title="Week by week: model metric against business metric", height=280)


def _chart(chart: alt.TopLevelMixin) -> Chart:
    return Chart(chart.to_dict())


def report_html(report: ExperimentReport) -> str:
    """The experiment as one self-contained HTML page."""
    s = report.settings
    lead: list[Any] = [Html.format(
        '<p class="note">Generated {} by FraudLens. Experiment <b>{}</b>, {:%Y-%m-%d} to '
        "{:%Y-%m-%d} (UTC); labels as known at {:%Y-%m-%d %H:%M} UTC, transactions up to "
        "{:%Y-%m-%d %H:%M} (matured, {} days). Bootstrap: {} resamples of accounts, seed {}, "
        "95% percentile intervals.</p>", report.created_at, report.name, report.start,
        report.end, report.as_of, report.mature_until, s.maturity_days, s.n_resamples, s.seed)]
    lead += [Html.format('<p class="warn">{}</p>', w) for w in report.warnings]
    sections: list[Any] = [*lead, Section("Arms", [arms_overview(report)])]
    if report.srm is not None:
        verdict = ("MISMATCH" if report.srm.mismatch else "no mismatch")
        sections.append(Section("Sample ratio", [
            Html.format("<p>Chi-square against the intended split: {:.3f}, p = {:.3g} "
                        "(<b>{}</b> at α = {}).</p>", report.srm.chi2, report.srm.p_value,
                        verdict, report.srm.alpha), srm_table(report)]))
    if not report.stats.empty:
        sections.append(Section("Metrics per arm", [per_arm_table(report)]))
        sections.append(Section("Differences to control", [
            Note("Paired over the same resamples of accounts; * marks an interval that "
                 "excludes zero. Per-1,000 figures do not grow with an arm's size."),
            differences_table(report), _chart(differences_chart(report))]))
    if report.classifier:
        marks = {a.arm: a.threshold for a in report.arms}
        sections.append(Section("Classifier statistics at each arm's threshold", [
            classifier_charts.summary_table(report.classifier, marks),
            _chart(classifier_charts.curve_chart(report.classifier, "roc", marks)),
            _chart(classifier_charts.curve_chart(report.classifier, "pr", marks)),
            _chart(classifier_charts.decile_chart(report.classifier))]))
    sections.append(Section("Model metrics and business metrics, week by week", [
        Note("Every experiment, arm and week with matured labels; Pearson r with a bootstrap "
             "interval over those points."), correlation_table(report),
        _chart(weekly_chart(report)), weekly_table(report)]))
    return render_html(f"Experiment {report.name}", sections)
