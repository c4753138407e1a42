"""The model comparison as people read it: tables in words and units, Altair charts, and the
self-contained HTML report (`report_html`). No Streamlit, no SQL: the Model Comparison page and
`fraudlens compare` draw a `ComparisonReport` built by `app.services.model_comparison`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import altair as alt
import numpy as np
import pandas as pd

from app.views.charts import waterfall_chart
from app.views.html_report import Chart, Columns, Html, Note, Section, render_html
from explainers import comparison_stats as cmp

if TYPE_CHECKING:  # result types only: the service imports this module, not the reverse
    from app.services.model_comparison import ComparisonReport, PairComparison

__all__ = [
    "attributions_table",
    "calibration_chart",
    "cost_chart",
    "cost_table",
    "disagreement_view",
    "importance_pair_chart",
    "latency_table",
    "metrics_chart",
    "metrics_table",
    "most_different_table",
    "numbers_table",
    "report_html",
    "segment_table",
    "stability_chart",
]


# --------------------------------------------------------------------------- tables


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, fmt)


def _fmt_for(metric: str) -> str:
    return ".4f" if metric in ("roc_auc", "pr_auc", "brier") else ".1%"


def metrics_table(report: ComparisonReport) -> pd.DataFrame:
    """One row per metric: each model's estimate [95% CI], then each challenger − reference."""
    m = report.metrics
    rows = []
    for name in cmp.metric_names():
        fmt = _fmt_for(name)
        row = {"metric": cmp.metric_label(name, m.capacity)}
        for model in report.model_ids:
            e = m.get(model, name)
            row[model] = f"{_num(e.estimate, fmt)}  [{_num(e.low, fmt)} – {_num(e.high, fmt)}]"
        for pair in report.pairs:
            e = m.get(pair.challenger, name, versus=report.reference)
            dfmt = "+" + fmt
            excludes = np.isfinite(e.low) and (e.low > 0 or e.high < 0)
            row[f"{pair.challenger} − {report.reference}"] = (
                f"{_num(e.estimate, dfmt)}  [{_num(e.low, dfmt)} – {_num(e.high, dfmt)}]"
                + ("  *" if excludes else ""))
        rows.append(row)
    return pd.DataFrame(rows)


def cost_table(report: ComparisonReport) -> pd.DataFrame:
    days = report.holdout.days
    return pd.DataFrame([{
        "model": t.model,
        "flag when score ≥": "never" if not np.isfinite(t.threshold) else f"{t.threshold:.4f}",
        "reviews per day": round(t.reviewed / days, 1),
        "fraud caught": f"{t.fraud_caught} of {t.fraud_caught + t.fraud_missed}",
        "fraud missed (USD)": f"${t.missed_usd:,.0f}",
        "review cost (USD)": f"${t.review_usd:,.0f}",
        "total cost (USD)": f"${t.total_cost_usd:,.0f}",
        "cost per day (USD)": f"${t.cost_per_day_usd:,.0f}",
    } for t in report.thresholds])


def latency_table(report: ComparisonReport) -> pd.DataFrame:
    sla = report.sla
    return pd.DataFrame([{
        "model": t.model_id, "p50 one row (ms)": round(t.p50_ms, 2),
        "p99 one row (ms)": round(t.p99_ms, 2),
        "p50 incl. input prep (ms)": round(t.prep_p50_ms, 2),
        "batch (rows/s)": f"{t.rows_per_s:,.0f}",
        "size": _bytes(t.size_bytes), "trees": t.trees, "max depth": t.max_depth,
        f"meets p99 ≤ {sla.p99_ms:g} ms": "pass" if t.meets(sla) else "FAIL",
    } for t in report.latency])


def _bytes(n: int) -> str:
    if n < 0:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def numbers_table(report: ComparisonReport) -> pd.DataFrame:
    """Every number of the comparison as tidy rows for CSV: model, versus, metric, label,
    estimate, ci_low, ci_high (intervals only for bootstrapped metrics)."""
    rows = [report.metrics.frame()]
    extra = []
    for t in report.thresholds:
        for key, label, value in (
                ("threshold", "Cost-minimising threshold (flag when score >= it)", t.threshold),
                ("reviews", "Reviews on the holdout at that threshold", t.reviewed),
                ("fraud_caught", "Fraud cases caught", t.fraud_caught),
                ("missed_usd", "Fraud missed (USD)", t.missed_usd),
                ("review_usd", "Review cost (USD)", t.review_usd),
                ("total_cost_usd", "Total cost on the holdout (USD)", t.total_cost_usd),
                ("cost_per_day_usd", "Cost per day (USD)", t.cost_per_day_usd)):
            extra.append({"model": t.model, "versus": "", "metric": key, "label": label,
                          "estimate": value})
    for p in report.pairs:
        extra.append({"model": p.challenger, "versus": p.reference, "metric": "savings_usd",
                      "label": "Saved by switching (USD, holdout)", "estimate": p.savings_usd})
        extra.append({"model": p.challenger, "versus": p.reference,
                      "metric": "spearman_importance",
                      "label": "Spearman correlation of mean |SHAP|",
                      "estimate": p.importance.spearman})
    for t in report.latency:
        for key, label, value in (("p50_ms", "Single-row latency p50 (ms)", t.p50_ms),
                                  ("p99_ms", "Single-row latency p99 (ms)", t.p99_ms),
                                  ("prep_p50_ms", "Single-row p50 incl. input prep (ms)",
                                   t.prep_p50_ms),
                                  ("rows_per_s", "Batch throughput (rows/s)", t.rows_per_s),
                                  ("size_bytes", "Model size (bytes)", t.size_bytes),
                                  ("trees", "Trees", t.trees),
                                  ("max_depth", "Max depth", t.max_depth),
                                  ("sla_pass", f"Meets SLA p99 <= {report.sla.p99_ms:g} ms",
                                   float(t.meets(report.sla)))):
            extra.append({"model": t.model_id, "versus": "", "metric": key, "label": label,
                          "estimate": value})
    rows.append(pd.DataFrame(extra))
    return pd.concat(rows, ignore_index=True)


def attributions_table(report: ComparisonReport) -> pd.DataFrame:
    return report.attributions.copy()


# --------------------------------------------------------------------------- charts


def _ids_scale(ids: Sequence[str]) -> alt.Scale:
    # not the red/blue of "raises/lowers the score", which the waterfalls use
    palette = ["#7d3c98", "#17a589", "#d68910", "#566573", "#a04000", "#2e4053"]
    return alt.Scale(domain=list(ids), range=palette[:len(ids)])


def metrics_chart(report: ComparisonReport) -> alt.Chart:
    """Each model's estimate and 95% interval for the ranking metrics."""
    f = report.metrics.frame()
    f = f[(f["versus"] == "") & f["metric"].isin(["roc_auc", "pr_auc", "recall_at_fpr_0.01",
                                                   "precision_at_k"])]
    colour = alt.Color("model:N", scale=_ids_scale(report.model_ids), legend=alt.Legend(
        orient="top", title=None))
    base = alt.Chart(f).encode(y=alt.Y("model:N", title=None, axis=None), color=colour)
    bars = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("ci_low:Q", title="estimate with 95% bootstrap interval",
                scale=alt.Scale(zero=False)), x2="ci_high:Q")
    dots = base.mark_circle(size=90).encode(
        x="estimate:Q", tooltip=[alt.Tooltip("model:N"), alt.Tooltip("label:N", title="metric"),
                                 alt.Tooltip("estimate:Q", format=".4f"),
                                 alt.Tooltip("ci_low:Q", title="95% low", format=".4f"),
                                 alt.Tooltip("ci_high:Q", title="95% high", format=".4f")])
    return (bars + dots).properties(height=60, width=260).facet(
        facet=alt.Facet("label:N", title=None, header=alt.Header(labelFontWeight="bold")),
        columns=2).resolve_scale(x="independent")


def calibration_chart(report: ComparisonReport) -> alt.LayerChart:
    """Observed fraud rate per score bin against the mean score: on the diagonal is
    calibrated."""
    df = report.calibration
    diag = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(
        color="#999", strokeDash=[4, 4]).encode(x="p:Q", y="p:Q")
    base = alt.Chart(df).encode(
        x=alt.X("mean_predicted:Q", title="Mean score in bin (predicted fraud probability)",
                axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("observed_rate:Q", title="Observed fraud rate in bin",
                axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", scale=_ids_scale(report.model_ids),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("model:N"),
                 alt.Tooltip("mean_predicted:Q", title="mean score", format=".1%"),
                 alt.Tooltip("observed_rate:Q", title="observed fraud rate", format=".1%"),
                 alt.Tooltip("rows:Q", title="rows in bin", format=",")])
    points = base.mark_circle(opacity=0.9).encode(
        size=alt.Size("rows:Q", title="rows in bin", scale=alt.Scale(type="log",
                                                                     range=[20, 400])))
    return (diag + base.mark_line(opacity=0.6) + points).properties(height=300)


def stability_chart(report: ComparisonReport) -> alt.Chart:
    """ROC AUC and PR AUC per week (or day) of the holdout, one line per model."""
    df = report.stability.melt(id_vars=["period_start", "model", "rows", "fraud"],
                               value_vars=["roc_auc", "pr_auc"], var_name="metric",
                               value_name="value")
    df["metric"] = df["metric"].map({"roc_auc": "ROC AUC", "pr_auc": "PR AUC"})
    unit = "Week starting" if report.stability_freq == "W" else "Day"
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("period_start:T", title=f"{unit} (UTC)",
                axis=alt.Axis(format="%b %d")),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", scale=_ids_scale(report.model_ids),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("period_start:T", title=unit.lower(), format="%Y-%m-%d"),
                 alt.Tooltip("model:N"), alt.Tooltip("metric:N"),
                 alt.Tooltip("value:Q", format=".4f"),
                 alt.Tooltip("rows:Q", format=","), alt.Tooltip("fraud:Q", title="fraud cases")],
    ).properties(height=220, width=320).facet(
        column=alt.Column("metric:N", title=None, header=alt.Header(labelFontWeight="bold"))
    ).resolve_scale(y="independent")


def cost_chart(report: ComparisonReport, points: int = 300) -> alt.LayerChart:
    """Total holdout cost against the threshold, per model; the chosen threshold marked."""
    parts = []
    for t in report.thresholds:
        c = t.curve[np.isfinite(t.curve["threshold"])]
        if len(c) > points:
            c = c.iloc[np.unique(np.linspace(0, len(c) - 1, points).round().astype(int))]
        parts.append(c.assign(model=t.model))
    df = pd.concat(parts, ignore_index=True)[["model", "threshold", "reviewed",
                                              "total_cost_usd", "missed_usd"]]
    chosen = pd.DataFrame([{"model": t.model, "threshold": t.threshold,
                            "total_cost_usd": t.total_cost_usd} for t in report.thresholds
                           if np.isfinite(t.threshold)])
    colour = alt.Color("model:N", scale=_ids_scale(report.model_ids),
                       legend=alt.Legend(orient="top", title=None))
    x = alt.X("threshold:Q", title="Threshold (flag when score ≥ it)",
              scale=alt.Scale(type="sqrt", domain=[0, 1]))
    y = alt.Y("total_cost_usd:Q", title="Total cost on the holdout (USD)",
              axis=alt.Axis(format="$,.0f"))
    lines = alt.Chart(df).mark_line().encode(
        x=x, y=y, color=colour,
        tooltip=[alt.Tooltip("model:N"), alt.Tooltip("threshold:Q", format=".4f"),
                 alt.Tooltip("reviewed:Q", title="reviews", format=","),
                 alt.Tooltip("missed_usd:Q", title="fraud missed", format="$,.0f"),
                 alt.Tooltip("total_cost_usd:Q", title="total cost", format="$,.0f")])
    marks = alt.Chart(chosen).mark_point(size=160, filled=True, shape="diamond").encode(
        x=x, y=y, color=colour, tooltip=[alt.Tooltip("model:N"),
                                         alt.Tooltip("threshold:Q", title="chosen threshold",
                                                     format=".4f"),
                                         alt.Tooltip("total_cost_usd:Q", format="$,.0f")])
    return (lines + marks).properties(height=280)


def importance_pair_chart(comparison: cmp.ImportanceComparison, top_n: int = 15) -> alt.Chart:
    """Mean |SHAP| side by side for the features either model ranks highest."""
    t = comparison.table.sort_values("importance", ascending=False).head(top_n)
    order = list(t["feature"])
    df = pd.concat([
        t.assign(model=comparison.reference, value=t["mean_abs_reference"],
                 rank=t["rank_reference"]),
        t.assign(model=comparison.challenger, value=t["mean_abs_challenger"],
                 rank=t["rank_challenger"])])[["feature", "model", "value", "rank"]]
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("value:Q", title="Mean |SHAP| (log-odds)"),
        y=alt.Y("feature:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset("model:N"),
        color=alt.Color("model:N", scale=_ids_scale([comparison.reference,
                                                     comparison.challenger]),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("model:N"),
                 alt.Tooltip("value:Q", title="mean |SHAP|", format=".4f"),
                 alt.Tooltip("rank:Q")],
    ).properties(height=max(160, 34 * len(order)))


def most_different_table(comparison: cmp.ImportanceComparison, n: int = 8) -> pd.DataFrame:
    """The features whose direction or rank differs most, in words."""
    arrow = {1.0: "higher raises the score", -1.0: "higher lowers the score",
             0.0: "no clear direction"}
    unclear = "n/a (category)"
    t = comparison.most_different(n)
    return pd.DataFrame({
        "feature": t["feature"],
        f"rank in {comparison.reference}": t["rank_reference"],
        f"rank in {comparison.challenger}": t["rank_challenger"],
        "rank shift": t["rank_shift"],
        f"direction in {comparison.reference}": t["direction_reference"].map(arrow)
        .fillna(unclear),
        f"direction in {comparison.challenger}": t["direction_challenger"].map(arrow)
        .fillna(unclear),
    }).reset_index(drop=True)


def segment_table(pair: PairComparison) -> pd.DataFrame:
    rows = []
    for c in pair.segments:
        top = c.most_different(1)
        rows.append({
            c.segment or "segment": c.segment_value, "rows": c.rows,
            "Spearman ρ": round(c.spearman, 3) if np.isfinite(c.spearman) else None,
            "differs most": top["feature"].iloc[0] if len(top) else "—",
            "ranks": (f"{int(top['rank_reference'].iloc[0])} vs "
                      f"{int(top['rank_challenger'].iloc[0])}" if len(top) else "—")})
    return pd.DataFrame(rows)


def disagreement_view(pair: PairComparison) -> pd.DataFrame:
    """The disagreement list as an analyst reads it."""
    d = pair.disagreements
    label = d["is_fraud"].map({1.0: "fraud", 0.0: "legit"}).fillna("not known yet")
    return pd.DataFrame({
        "transaction": d["transaction_id"], "time (UTC)": d["event_time"],
        "amount (USD)": d["amount_usd"], "flagged only by": d["flagged_by"],
        f"score {pair.reference}": d["score_reference"],
        f"score {pair.challenger}": d["score_challenger"], "label": label})


# --------------------------------------------------------------------------- HTML report


def _chart(chart: alt.TopLevelMixin) -> Chart:
    return Chart(chart.to_dict(validate=False))


def report_html(report: ComparisonReport) -> str:
    """The comparison as one self-contained HTML page (`html_report.render_html`): tables, and
    Altair charts as inline SVG."""
    h = report.holdout
    s = report.settings
    lead: list[Any] = [Html.format(
        '<p class="note">Generated {} by FraudLens. Reference model: <b>{}</b>. Bootstrap: '
        "{} resamples, seed {}, 95% percentile intervals.</p>", report.created_at,
        report.reference, report.metrics.n_resamples, report.metrics.seed)]
    lead += [Html.format('<p class="warn">{}</p>', w) for w in report.warnings]
    candidates = Section("Candidates", [pd.DataFrame([
        {"model": c.model_id, "framework": c.framework, "stage": c.stage,
         "training data until": c.training_end, "sha256": c.sha256[:16] + "…"}
        for c in report.candidates])])
    holdout = Section("Holdout", [
        f"{h.rows:,} labelled transactions ({h.fraud:,} fraud, ${h.fraud_usd:,.0f} of fraud) "
        f"from {h.start:%Y-%m-%d %H:%M} to {h.end:%Y-%m-%d %H:%M} UTC over {h.days} days; "
        f"labels as known at {h.as_of:%Y-%m-%d %H:%M} UTC. Rows left out:",
        h.exclusion_frame()])
    metrics = Section("Metrics", [
        Note("Estimate [95% interval]. Differences are paired (same resamples for every "
             "model); * marks an interval that excludes zero. Precision in the top k per day: "
             "each day's k highest scores are reviewed."),
        metrics_table(report), _chart(metrics_chart(report))])
    calibration = Section("Calibration", [_chart(calibration_chart(report))])
    saving = [Html.format("<p>Switching from <b>{}</b> to <b>{}</b> {} <b>${:,.0f}</b> on the "
                          "holdout (${:,.0f} per day).</p>", p.reference, p.challenger,
                          "saves" if p.savings_usd >= 0 else "costs", abs(p.savings_usd),
                          abs(p.savings_per_day_usd)) for p in report.pairs]
    business = Section("Business view", [
        Note(f"Missed fraud costs its amount (USD); each review costs ${s.review_cost:,.2f}; at "
             f"most {s.capacity} reviews a day, highest scores first. Each model's threshold "
             "minimises its total cost on the holdout."),
        cost_table(report), *saving, _chart(cost_chart(report))])
    unit = "week" if report.stability_freq == "W" else "day (the holdout spans under 3 weeks)"
    stability = Section("Stability", [Note(f"Per {unit}."), _chart(stability_chart(report))])
    sla = [Section("Serving SLA", [
        Note(f"Measured on {report.latency[0].machine}: {report.latency[0].single_row_calls} "
             f"single-row predictions, batches of {report.latency[0].batch_rows:,} rows."),
        latency_table(report)])] if report.latency else []
    explanations: list[Any] = [Note(f"{m}: {src}") for m, src in report.attribution_sources]
    for p in report.pairs:
        c = p.importance
        parts: list[Any] = [
            Html.format("<p>Spearman rank correlation of mean |SHAP|: <b>{}</b> over {} "
                        "features.</p>", _num(c.spearman, ".3f"), len(c.table)),
            _chart(importance_pair_chart(c)), "Features that differ most:",
            most_different_table(c)]
        if p.segments:
            parts += [f"Per {p.segments[0].segment or 'segment'}:", segment_table(p)]
        explanations.append(Section(f"{p.reference} vs {p.challenger}", parts))
    disagreements: list[Any] = []
    for p in report.pairs:
        view = disagreement_view(p).head(25).copy()
        view["amount (USD)"] = view["amount (USD)"].map(lambda v: f"${v:,.2f}")
        for col in view.columns:
            if col.startswith("score "):
                view[col] = view[col].map(lambda v: f"{v:.1%}")
        disagreements += [f"{p.disagreement_total:,} transactions after the training window are "
                          f"flagged by exactly one of {p.reference} and {p.challenger} at their "
                          "chosen thresholds; the largest amounts first.", view]
    for case in report.cases:
        label = {1.0: "fraud", 0.0: "legit"}.get(case.is_fraud, "not known yet")
        disagreements.append(Section(
            f"Case {case.transaction_id}: ${case.amount_usd:,.2f}, label {label}",
            [Columns([Section(model, [_chart(waterfall_chart(steps))])
                      for model, steps in case.steps])]))
    return render_html(f"Model comparison: {', '.join(report.model_ids)}", [
        *lead, candidates, holdout, metrics, calibration, business, stability, *sla,
        Section("Explanations", explanations), Section("Disagreements", disagreements)])
