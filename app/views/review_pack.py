"""The weekly review pack and the pattern review's charts: drivers and backtest charts, money
and share formats, and `review_pack_html`, one self-contained HTML page for the meeting. No
Streamlit, no SQL: it draws the findings table `app.services.pattern_review` builds."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from app.views.html_report import Chart, Note, Section, render_html
from data_access.review_queries import Window
from explainers.errors import ValidationError

__all__ = ["POPULATION_TEXT", "backtest_chart", "drivers_chart", "finding_label",
           "findings_overview", "pct", "review_pack_html", "usd"]

POPULATION_TEXT = {
    "flagged": "scored at or above the threshold",
    "missed": "confirmed fraud scored below the threshold",
}



def drivers_chart(drivers_json: str, top_n: int = 8) -> alt.Chart:
    """Signed mean SHAP of a finding's strongest drivers, as horizontal bars."""
    d = pd.DataFrame(json.loads(drivers_json)).head(top_n)
    d["direction"] = np.where(d["mean_shap"] >= 0, "raises the score", "lowers the score")
    return alt.Chart(alt.Data(values=d.to_dict(orient="records"))).mark_bar().encode(
        x=alt.X("mean_shap:Q", title="Mean contribution (log-odds)"),
        y=alt.Y("feature:N", sort=list(d["feature"]), title=None,
                axis=alt.Axis(labelLimit=260)),
        color=alt.Color("direction:N", title=None, legend=alt.Legend(orient="top"),
                        scale=alt.Scale(domain=["raises the score", "lowers the score"],
                                        range=["#c0392b", "#2471a3"])),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("mean_shap:Q", format="+.3f"),
                 alt.Tooltip("mean_abs_shap:Q", title="mean |SHAP|", format=".3f")],
    ).properties(height=24 * len(d) + 10, width=420)


def backtest_chart(daily_json: str) -> alt.Chart:
    """Alerts per day the rule would have raised, and how many were labelled fraud."""
    d = pd.DataFrame(json.loads(daily_json))
    if d.empty:
        d = pd.DataFrame({"day": [], "alerts": [], "fraud_alerts": []})
    long = d.melt(id_vars=["day"], value_vars=["alerts", "fraud_alerts"], var_name="series",
                  value_name="count")
    long["series"] = long["series"].map({"alerts": "alerts",
                                         "fraud_alerts": "alerts labelled fraud"})
    return alt.Chart(alt.Data(values=long.to_dict(orient="records"))).mark_line(
        point=True).encode(
        x=alt.X("day:T", title="Day (UTC)"), y=alt.Y("count:Q", title="Transactions"),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="top"),
                        scale=alt.Scale(domain=["alerts", "alerts labelled fraud"],
                                        range=["#7b7d7d", "#c0392b"])),
        tooltip=["day:T", "series:N", "count:Q"],
    ).properties(height=160, width=420)


def finding_label(row: Any, status: str) -> str:
    """One line naming a finding: rank, population, change, size, amount at risk, review
    status and id. Every part is the product's vocabulary, a number or a generated id."""
    return (f"#{row.rank} · {row.population} · {row.change} · {row.cases} cases · "
            f"{usd(row.amount_at_risk_usd)} at risk · {status} · {row.finding_id}")


def findings_overview(findings: pd.DataFrame, status: dict[str, str]) -> pd.DataFrame:
    """The review's overview, one row per finding in rank order: the numbers the meeting
    compares before opening one finding (`status`: finding id -> latest annotation status)."""
    f = findings.sort_values("rank", kind="mergesort")
    return pd.DataFrame({
        "#": f["rank"].to_numpy(),
        "finding": f["finding_id"].to_numpy(),
        "population": f["population"].to_numpy(),
        "change": f["change"].to_numpy(),
        "cases": f["cases"].to_numpy(),
        "at risk (USD)": f["amount_at_risk_usd"].to_numpy(),
        "confirmed fraud": [f"{c} of {n}" for c, n in zip(f["confirmed_fraud"], f["labelled"],
                                                          strict=True)],
        "rule precision": f["backtest_precision"].to_numpy() * 100,
        "rule recall": f["backtest_recall"].to_numpy() * 100,
        "alerts a day": f["backtest_alerts_per_day"].to_numpy(),
        "status": [status.get(i, "not annotated") for i in f["finding_id"]],
    })


def usd(value: float) -> str:
    """$1,234.50, or — when unknown."""
    return "—" if value is None or not math.isfinite(value) else f"${value:,.2f}"


def pct(value: float) -> str:
    """12.3%, or — when unknown."""
    return "—" if value is None or not math.isfinite(value) else f"{value:.1%}"


def review_pack_html(findings: pd.DataFrame, annotations: pd.DataFrame | None = None, *,
                     about: tuple[str, Window, float, int] | None = None) -> str:
    """The review pack: one self-contained HTML page with every finding, its rule, backtest,
    drivers chart and latest annotation. Same findings and annotations, same bytes.
    `about` (model, window, threshold, seed) titles a pack without findings."""
    if not findings.empty:
        first = findings.iloc[0]
        about = (str(first["model"]), Window(date.fromisoformat(first["window_start"]),
                                             date.fromisoformat(first["window_end"])),
                 float(first["threshold"]), int(first["seed"]))
    if about is None:
        raise ValidationError("There are no findings to put in a review pack")
    model_id, window, threshold, seed = about
    notes = {}
    if annotations is not None and not annotations.empty:
        notes = {r.finding_id: r for r in annotations.itertuples(index=False)}
    current = findings[findings["change"] != "gone"]
    gone = findings[findings["change"] == "gone"]
    overview = pd.DataFrame({
        "rank": current["rank"], "finding": current["finding_id"],
        "population": current["population"], "change": current["change"],
        "cases": current["cases"], "amount at risk": current["amount_at_risk_usd"].map(usd),
        "confirmed fraud (labelled)": [f"{f} of {n}" for f, n in
                                       zip(current["confirmed_fraud"], current["labelled"],
                                           strict=True)],
        "rule": current["rule"], "precision": current["backtest_precision"].map(pct),
        "status": [getattr(notes.get(f), "status", "—") for f in current["finding_id"]]})
    if current.empty:
        overview = "No flagged cases and no confirmed fraud in this window."
    sections = [Section("Findings", [
        Note("Sorted by amount at risk. Populations: flagged = "
             f"{POPULATION_TEXT['flagged']}; missed = {POPULATION_TEXT['missed']}. "
             "Precision and recall: the rule replayed over the window and the 4 weeks before "
             "it, against the labels known now."), overview])]
    for row in current.itertuples(index=False):
        note = notes.get(row.finding_id)
        parts: list[Any] = [
            f"{row.cases:,} cases ({row.population}: {POPULATION_TEXT[row.population]}), "
            f"{usd(row.amount_at_risk_usd)} at risk, mean score {row.mean_score:.3f}, "
            f"{row.confirmed_fraud} confirmed fraud of {row.labelled} labelled "
            f"({pct(row.confirmed_fraud_rate)}).",
            f"Change since the previous week: {row.change}"
            + (f" (was {row.previous_finding_id} with {row.cases_previous_week} cases, "
               f"similarity {row.similarity:.2f}; attribution drift: {row.top_drift})"
               if row.previous_finding_id else "") + ".",
            Section("Rule", [
                row.rule,
                f"Backtest from {row.backtest_since} to {window.until - timedelta(days=1)}: "
                f"{row.backtest_alerts:,} alerts ({row.backtest_alerts_per_day:.1f} a day), "
                f"precision {pct(row.backtest_precision)}, recall "
                f"{pct(row.backtest_recall)}; {row.rule_alerts_in_window:,} alerts in the "
                "window.",
                Chart(backtest_chart(row.backtest_daily_json).to_dict(validate=False))]),
            Section("Top drivers (mean SHAP)", [
                Chart(drivers_chart(row.drivers_json).to_dict(validate=False))]),
            Note(f"Representative cases (closest to the centroid): "
                 f"{row.representative_cases}")]
        if note is not None:
            parts.append(Section("Annotation", [pd.DataFrame([{
                "title": note.title, "status": note.status, "owner": note.owner,
                "notes": note.notes, "by": note.author, "revision": note.revision}])]))
        sections.append(Section(f"#{row.rank} {row.finding_id}", parts))
    if not gone.empty:
        sections.append(Section("Gone since the previous week", [pd.DataFrame({
            "finding (previous week)": gone["finding_id"], "population": gone["population"],
            "cases then": gone["cases_previous_week"], "drivers then": gone["top_drivers"]})]))
    subtitle = (f"Model {model_id}, events {window.text()} (UTC), threshold {threshold:g}, "
                f"seed {seed}. Generated by FraudLens.")
    return render_html(f"Pattern review: {model_id}, {window.text()}", sections, subtitle)
