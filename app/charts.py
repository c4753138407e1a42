"""Reusable Altair (Vega-Lite) charts. Each takes a tidy frame and returns a chart; the few
`*_data` helpers shape rows for a chart and are plain pandas, so tests can read them."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
from altair.utils import sanitize_pandas_dataframe

from data_access.schema import FeatureSchema

__all__ = [
    "beeswarm_chart",
    "beeswarm_data",
    "dependence_chart",
    "importance_chart",
    "label_coverage_chart",
    "timeline_chart",
    "waterfall_chart",
]

RAISES = "#c0392b"  # pushes towards fraud
LOWERS = "#2471a3"  # pushes towards legit
NEUTRAL = "#7b7d7d"
LOG_ODDS = "Contribution to the score (log-odds)"
_QUINTILES = [LOWERS, "#7fb3d5", "#d5d8dc", "#f1948a", RAISES]
_SCORE_SCALE = alt.Scale(domain=[0, 1], scheme="orangered")


def _inline(df: pd.DataFrame) -> alt.Data:
    """Rows inlined in the spec: Altair's 5,000-row guard is for accidental full tables, and
    these charts take seeded samples the caller has already bounded."""
    return alt.Data(values=sanitize_pandas_dataframe(df).to_dict(orient="records"))


def _pct(p: float) -> str:
    return f"{p:.1%}" if p >= 0.001 else f"{p:.2%}"


def waterfall_chart(steps: pd.DataFrame, height_per_row: int = 30) -> alt.LayerChart:
    """Horizontal waterfall: base value at the top, one bar per step, the final score last.

    `steps` is `app.cases.waterfall_steps` output (log-odds); bars for the base value and the
    final score start at 0, every other bar starts where the previous one ended.
    """
    df = steps.copy()
    df["effect"] = np.select(
        [df["kind"].isin(["base", "final"]), df["contribution"] >= 0],
        ["base / score", "raises the score"], "lowers the score")
    df["text"] = [
        (f"{c:+.2f}" if k in ("feature", "other")
         else f"{c:.2f} → {_pct(p)}" if k == "final" else f"{c:.2f} (p = {_pct(p)})")
        for k, c, p in zip(df["kind"], df["contribution"], df["probability"], strict=True)]
    df["text_at"] = df[["start", "end"]].max(axis=1)
    df["probability_after"] = df["probability"].map(_pct)
    y = alt.Y("label:N", sort=list(df["label"]), title=None,
              axis=alt.Axis(labelLimit=320, labelFontSize=12))
    colour = alt.Color(
        "effect:N", title=None, legend=alt.Legend(orient="top"),
        scale=alt.Scale(domain=["raises the score", "lowers the score", "base / score"],
                        range=[RAISES, LOWERS, NEUTRAL]))
    tooltip = [alt.Tooltip("label:N", title="step"),
               alt.Tooltip("contribution:Q", title="log-odds", format="+.3f"),
               alt.Tooltip("end:Q", title="running total (log-odds)", format=".3f"),
               alt.Tooltip("probability_after:N", title="probability after this step")]
    base = alt.Chart(df)
    bars = base.mark_bar(height={"band": 0.7}).encode(
        x=alt.X("start:Q", title=LOG_ODDS), x2="end:Q", y=y, color=colour, tooltip=tooltip)
    labels = base.mark_text(align="left", dx=4, fontSize=11).encode(
        x="text_at:Q", y=alt.Y("label:N", sort=list(df["label"])), text="text:N")
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#999").encode(x="x:Q")
    return (zero + bars + labels).properties(height=height_per_row * len(df))


def importance_chart(frame: pd.DataFrame, value: str, title: str, fmt: str = ".3f",
                     top_n: int = 20) -> alt.Chart:
    """Horizontal bars, largest first. `frame` has `feature`, `value` and optionally
    `description`."""
    df = frame.sort_values(value, ascending=False, kind="stable").head(top_n)
    tooltip = [alt.Tooltip("feature:N"), alt.Tooltip(f"{value}:Q", title=title, format=fmt)]
    if "description" in df.columns:
        tooltip.append(alt.Tooltip("description:N", title="meaning"))
    return alt.Chart(df).mark_bar(color=RAISES).encode(
        x=alt.X(f"{value}:Q", title=title),
        y=alt.Y("feature:N", sort=list(df["feature"]), title=None,
                axis=alt.Axis(labelLimit=260)),
        tooltip=tooltip,
    ).properties(height=max(120, 24 * len(df)))


def beeswarm_data(shap_values: pd.DataFrame, feature_values: pd.DataFrame,
                  schema: FeatureSchema, features: list[str], seed: int = 7) -> pd.DataFrame:
    """Long rows for a beeswarm: feature, shap, value (text), value_norm, jitter.

    Numeric colour is the value's rank within its feature scaled to 0..1 (robust to skew);
    categorical and missing values get no colour (NaN) and show their value on hover. Jitter
    is seeded and widest where points are densest, so the plot reads like a beeswarm.
    """
    merged = shap_values[["transaction_id", *features]].merge(
        feature_values[["transaction_id", *features]], on="transaction_id",
        suffixes=("_shap", ""))
    rng = np.random.default_rng(seed)
    parts = []
    for order, name in enumerate(features):
        shap = merged[f"{name}_shap"].to_numpy(dtype=float)
        raw = merged[name]
        feat = schema.feature(name)
        if feat.is_categorical:
            norm = np.full(len(raw), np.nan)
            text = raw.astype(object).where(raw.notna(), "missing").astype(str)
        else:
            numeric = pd.to_numeric(raw, errors="coerce").astype(float)
            ranks = numeric.rank(pct=True, method="average")
            norm = ((ranks - ranks.min()) / max(ranks.max() - ranks.min(), 1e-12)).to_numpy()
            if numeric.nunique() <= 1:
                norm = np.where(numeric.notna(), 0.5, np.nan)
            text = numeric.map(lambda v: "missing" if np.isnan(v) else f"{v:,.4g}")
        parts.append(pd.DataFrame({
            "feature": name, "order": order, "shap": shap, "value": text.to_numpy(),
            "value_norm": norm, "jitter": _density_jitter(shap, rng)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["feature", "order", "shap", "value", "value_norm", "jitter"])


def _density_jitter(x: np.ndarray, rng: np.random.Generator, bins: int = 50) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0)
    span = float(np.nanmax(x) - np.nanmin(x)) or 1.0
    idx = np.clip(((x - np.nanmin(x)) / span * bins).astype(int), 0, bins)
    counts = np.bincount(idx, minlength=bins + 1)
    width = np.sqrt(counts[idx] / counts.max())
    return rng.uniform(-0.42, 0.42, len(x)) * width


def beeswarm_chart(long: pd.DataFrame, row_height: int = 34) -> alt.LayerChart:
    """One row per feature: each dot a transaction at its SHAP value, coloured by the
    feature's value (blue low → red high; grey: categorical or missing)."""
    features = list(dict.fromkeys(long["feature"]))
    y = alt.Y("feature:N", sort=features, title=None, axis=alt.Axis(labelLimit=260))
    tooltip = [alt.Tooltip("feature:N"), alt.Tooltip("value:N", title="feature value"),
               alt.Tooltip("shap:Q", title="log-odds", format="+.3f")]
    base = alt.Chart(_inline(long)).encode(
        x=alt.X("shap:Q", title=LOG_ODDS), y=y,
        yOffset=alt.YOffset("jitter:Q", scale=alt.Scale(domain=[-0.5, 0.5])),
        tooltip=tooltip)
    grey = base.transform_filter("!isValid(datum.value_norm)").mark_circle(
        size=10, opacity=0.45, color="#9e9e9e")
    coloured = base.transform_filter("isValid(datum.value_norm)").mark_circle(
        size=10, opacity=0.6).encode(
        color=alt.Color("value_norm:Q", title="feature value (low → high)",
                        scale=alt.Scale(domain=[0, 1], range=[LOWERS, "#d5d8dc", RAISES]),
                        legend=alt.Legend(orient="top", labelExpr=(
                            "datum.value == 0 ? 'low' : datum.value == 1 ? 'high' : ''"))))
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#999").encode(x="x:Q")
    return (zero + grey + coloured).properties(height=row_height * max(len(features), 1))


def dependence_chart(frame: pd.DataFrame, feature: str, color_by: str | None,
                     categorical: bool, color_categorical: bool) -> alt.Chart:
    """SHAP of `feature` against its value, coloured by `color_by`'s value. `frame` has
    `value`, `shap` and, when colouring, `color`."""
    vtype = "N" if categorical else "Q"
    ctype = "N" if color_categorical else "Q"
    x = (alt.X("value:N", title=feature, sort="ascending") if categorical
         else alt.X("value:Q", title=feature, scale=alt.Scale(zero=False)))
    enc: dict = {
        "x": x, "y": alt.Y("shap:Q", title=f"SHAP of {feature} (log-odds)"),
        "tooltip": [alt.Tooltip(f"value:{vtype}", title=feature),
                    alt.Tooltip("shap:Q", title="log-odds", format="+.3f")]}
    if color_by is not None and "color" in frame.columns:
        enc["color"] = (alt.Color("color:N", title=color_by) if color_categorical else
                        alt.Color("color:Q", title=f"{color_by} (quintiles)",
                                  scale=alt.Scale(type="quantile", range=_QUINTILES)))
        enc["tooltip"].append(alt.Tooltip(f"color:{ctype}", title=color_by))
    df = frame
    if categorical:
        # deterministic jitter from the row position, so a redraw does not move the points
        df = frame.assign(jitter=(np.arange(len(frame)) * 0.6180339887) % 1.0 - 0.5)
        enc["xOffset"] = alt.XOffset("jitter:Q", scale=alt.Scale(domain=[-0.6, 0.6]))
    return alt.Chart(_inline(df)).mark_circle(size=14, opacity=0.6).encode(**enc).properties(
        height=360)


def timeline_chart(frame: pd.DataFrame) -> alt.LayerChart:
    """An account's transactions over time: amount (USD, log scale), coloured by score; the
    case itself ringed. `frame` has event_time, amount_usd, score, outcome, is_case."""
    df = frame.copy()
    df["amount_usd"] = df["amount_usd"].clip(lower=0.01)
    df["score_pct"] = df["score"].map(lambda s: "not scored" if pd.isna(s) else f"{s:.1%}")
    tooltip = [alt.Tooltip("transaction_id:N", title="transaction"),
               alt.Tooltip("event_time:T", title="time (UTC)", format="%Y-%m-%d %H:%M"),
               alt.Tooltip("amount_usd:Q", title="amount", format="$,.2f"),
               alt.Tooltip("score_pct:N", title="score")]
    tooltip += [alt.Tooltip(f"{c}:N") for c in ("txn_type", "outcome") if c in df.columns]
    x = alt.X("event_time:T", title="Time (UTC)")
    y = alt.Y("amount_usd:Q", title="Amount (USD)", scale=alt.Scale(type="log"),
              axis=alt.Axis(format="$,.0f"))
    base = alt.Chart(df).encode(x=x, y=y, tooltip=tooltip)
    points = base.mark_circle(size=80, opacity=0.85, stroke="#555", strokeWidth=0.5).encode(
        color=alt.Color("score:Q", title="score", scale=_SCORE_SCALE,
                        legend=alt.Legend(format=".0%")))
    ring = base.transform_filter("datum.is_case").mark_point(
        size=400, shape="circle", color="black", strokeWidth=2, filled=False)
    label = base.transform_filter("datum.is_case").mark_text(
        dy=-18, text="this case", fontWeight="bold")
    return (points + ring + label).properties(height=280)


def label_coverage_chart(weekly: pd.DataFrame) -> alt.Chart:
    """Share of each week's transactions with a known outcome. `weekly` has week,
    transactions, labelled, share."""
    return alt.Chart(weekly).mark_bar(color=LOWERS).encode(
        x=alt.X("week:T", title="Week starting (UTC)", axis=alt.Axis(format="%b %d")),
        y=alt.Y("share:Q", title="Labelled", axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1])),
        tooltip=[alt.Tooltip("week:T", title="week starting", format="%Y-%m-%d"),
                 alt.Tooltip("transactions:Q", format=","),
                 alt.Tooltip("labelled:Q", format=","),
                 alt.Tooltip("share:Q", title="labelled", format=".1%")],
    ).properties(height=200)
