"""Reusable Altair (Vega-Lite) charts: waterfall, importance bars, beeswarm, dependence,
timeline, label coverage.

Each `*_chart(frame, ...)` returns a `ChartSpec`: the chart's rows (plain pandas, readable in
tests) and an Altair chart template without data. The template depends only on options, so
its Vega-Lite JSON is built once and reused, and a page hands Streamlit the rows as a frame
(sent as Arrow). Building an Altair chart costs ~50 ms, and Altair walks inline rows as schema
objects (seconds for a 10,000-point beeswarm). `beeswarm_data` shapes SHAP samples.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
from altair.utils import sanitize_pandas_dataframe

from explainers.schema import FeatureSchema

__all__ = [
    "ChartSpec",
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
_LOW_HIGH = alt.Legend(labelExpr="datum.value == 0 ? 'low' : datum.value == 1 ? 'high' : ''")
_DIVERGING = [LOWERS, "#b3b6b7", RAISES]


@dataclass(frozen=True, eq=False)
class ChartSpec:
    """A chart: its template (by name and options) and the rows it draws."""

    template: str
    options: tuple[tuple[str, Any], ...]
    rows: pd.DataFrame

    def template_dict(self) -> dict:
        """The Vega-Lite spec without data (cached JSON; the rows are the chart's data)."""
        return json.loads(_template_json(self.template, self.options))

    def to_dict(self, validate: bool = True) -> dict:
        """A self-contained Vega-Lite spec, rows inlined; `validate` checks the template
        against the Vega-Lite schema."""
        if validate:
            chart = _TEMPLATES[self.template](**dict(self.options))
            spec = _without_placeholder(chart.to_dict(validate=True))
        else:
            spec = self.template_dict()
        spec["data"] = {"values": sanitize_pandas_dataframe(self.rows).to_dict("records")}
        return spec


@functools.lru_cache(maxsize=128)
def _template_json(template: str, options: tuple[tuple[str, Any], ...]) -> str:
    spec = _TEMPLATES[template](**dict(options)).to_dict(validate=False)
    return json.dumps(_without_placeholder(spec))


def _without_placeholder(spec: dict) -> dict:
    """Altair gives a chart without data a one-empty-row placeholder dataset; drop it so
    the rows passed with the chart are its only data."""
    for part in [spec, *spec.get("layer", [])]:
        if part.get("data") == {"name": "empty"}:
            del part["data"]
    spec.get("datasets", {}).pop("empty", None)
    if "datasets" in spec and not spec["datasets"]:
        del spec["datasets"]
    return spec


def _base() -> alt.Chart:
    return alt.Chart()  # the data comes with each run (ChartSpec.rows)


def _pct(p: float) -> str:
    """A probability, never rounded to a certainty it is not (">99.9%", "<0.1%")."""
    if 0.999 < p < 1:
        return ">99.9%"
    if 0 < p < 0.001:
        return "<0.1%"
    return f"{p:.1%}"


def pp(change: float) -> str:
    """A change in probability in percentage points; a tiny one reads "<0.1", never "-0.0"."""
    points = change * 100
    if points == 0 or abs(points) >= 0.05:
        return f"{points:+.1f} pp"
    return f"{'+' if points > 0 else '−'}<0.1 pp"


# --------------------------------------------------------------------------- waterfall


WATERFALL_SCALES = ("log-odds", "probability")
PROBABILITY = "Change in fraud probability (percentage points)"


def waterfall_chart(steps: pd.DataFrame, scale: str = "log-odds") -> ChartSpec:
    """Horizontal waterfall, top to bottom: base value, one bar per step, the final score.

    `steps` is `app.services.case.waterfall_steps` output; base and final bars start at 0,
    every other bar starts where the previous one ended. In log-odds (the model's additive
    scale) labels give each step's SHAP value and the probability at the end; with
    `scale="probability"` each bar runs from p(before the step) to p(after it), so the
    steps' changes add up to p(case) − p(base).
    """
    if scale not in WATERFALL_SCALES:
        raise ValueError(f"scale must be one of {WATERFALL_SCALES}")
    df = steps.copy()
    df["effect"] = np.select(
        [df["kind"].isin(["base", "final"]), df["contribution"] >= 0],
        ["base and score", "towards fraud"], "towards legit")
    if scale == "probability":
        df["text"] = [(pp(d) if k in ("feature", "other") else _pct(p))
                      for k, d, p in zip(df["kind"], df["probability_change"],
                                         df["probability"], strict=True)]
        df["text_at"] = df[["p_start", "p_end"]].max(axis=1)
    else:
        df["text"] = [
            (f"{c:+.2f}" if k in ("feature", "other")
             else f"{c:.2f} → {_pct(p)}" if k == "final" else f"{c:.2f} (p = {_pct(p)})")
            for k, c, p in zip(df["kind"], df["contribution"], df["probability"], strict=True)]
        df["text_at"] = df[["start", "end"]].max(axis=1)
    df["probability_after"] = df["probability"].map(_pct)
    options = (("scale", scale),) if scale != "log-odds" else ()
    return ChartSpec("waterfall", options, df)


def _waterfall(scale: str = "log-odds") -> alt.LayerChart:
    y = alt.Y("label:N", sort=alt.EncodingSortField("order", order="ascending"), title=None,
              axis=alt.Axis(labelLimit=320, labelFontSize=12))
    colour = alt.Color(
        "effect:N", title=None, legend=None,
        scale=alt.Scale(domain=["towards fraud", "towards legit", "base and score"],
                        range=[RAISES, LOWERS, NEUTRAL]))
    tooltip = [alt.Tooltip("label:N", title="step"),
               alt.Tooltip("contribution:Q", title="log-odds", format="+.3f"),
               alt.Tooltip("end:Q", title="running total (log-odds)", format=".3f"),
               alt.Tooltip("probability_after:N", title="probability after this step")]
    if scale == "probability":
        tooltip.insert(2, alt.Tooltip("probability_change:Q", title="change in probability",
                                      format="+.2%"))
        x = alt.X("p_start:Q", title=PROBABILITY, axis=alt.Axis(format="%"))
        bars = _base().mark_bar(height={"band": 0.7}).encode(
            x=x, x2="p_end:Q", y=y, color=colour, tooltip=tooltip)
    else:
        bars = _base().mark_bar(height={"band": 0.7}).encode(
            x=alt.X("start:Q", title=LOG_ODDS), x2="end:Q", y=y, color=colour, tooltip=tooltip)
    labels = _base().mark_text(align="left", dx=4, fontSize=11).encode(
        x="text_at:Q", y=y, text="text:N")
    zero = _base().mark_rule(color="#999").encode(x=alt.datum(0))
    return (zero + bars + labels).properties(height=alt.Step(30))


# --------------------------------------------------------------------------- importance


def importance_chart(frame: pd.DataFrame, value: str, title: str, fmt: str = ".3f",
                     top_n: int | None = 20) -> ChartSpec:
    """Horizontal bars, largest first (the `top_n` largest; None: every feature). `frame`
    has `feature`, `value` and optionally `description` (shown on hover). Bars are neutral:
    a size says nothing about direction (red means "towards fraud" everywhere else)."""
    top_n = len(frame) if top_n is None else top_n
    df = frame.sort_values(value, ascending=False, kind="stable").head(top_n).copy()
    df["order"] = np.arange(len(df))
    if "description" not in df.columns:
        df["description"] = ""
    return ChartSpec("importance", (("fmt", fmt), ("title", title), ("value", value)), df)


def _importance(value: str, title: str, fmt: str) -> alt.Chart:
    return _base().mark_bar(color=NEUTRAL).encode(
        x=alt.X(f"{value}:Q", title=title),
        y=alt.Y("feature:N", sort=alt.EncodingSortField("order", order="ascending"),
                title=None, axis=alt.Axis(labelLimit=260)),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip(f"{value}:Q", title=title, format=fmt),
                 alt.Tooltip("description:N", title="meaning")],
    ).properties(height=alt.Step(22))


# --------------------------------------------------------------------------- beeswarm


def beeswarm_data(shap_values: pd.DataFrame, feature_values: pd.DataFrame,
                  schema: FeatureSchema, features: list[str], seed: int = 7) -> pd.DataFrame:
    """Long rows for a beeswarm: feature, order, shap, value (text), value_norm, jitter.

    Numeric colour is the value's rank within its feature scaled to 0..1 (robust to skew);
    categorical and missing values get no colour (NaN) and show their value on hover. Jitter
    is seeded and widest where points are densest, so the plot reads like a beeswarm.
    """
    columns = ["feature", "order", "shap", "value", "value_norm", "jitter"]
    if not features or shap_values.empty:
        return pd.DataFrame(columns=columns)
    merged = shap_values[["transaction_id", *features]].merge(
        feature_values[["transaction_id", *features]], on="transaction_id",
        suffixes=("_shap", ""))
    rng = np.random.default_rng(seed)
    parts = []
    for order, name in enumerate(features):
        shap = merged[f"{name}_shap"].to_numpy(dtype=float)
        raw = merged[name]
        if schema.feature(name).is_categorical:
            norm = np.full(len(raw), np.nan)
            text = raw.astype(object).where(raw.notna(), "missing").astype(str)
        else:
            numeric = pd.to_numeric(raw, errors="coerce").astype(float)
            ranks = numeric.rank(pct=True, method="average")
            spread = max(ranks.max() - ranks.min(), 1e-12)
            norm = ((ranks - ranks.min()) / spread).to_numpy()
            if numeric.nunique() <= 1:
                norm = np.where(numeric.notna(), 0.5, np.nan)
            text = numeric.map(lambda v: "missing" if np.isnan(v) else f"{v:,.4g}")
        parts.append(pd.DataFrame({
            "feature": name, "order": order, "shap": shap, "value": text.to_numpy(),
            "value_norm": norm, "jitter": _density_jitter(shap, rng)}))
    # What the browser receives (10,000 points at the default sample): repeated texts as
    # categories, plotting floats as float32 -- 2.7x fewer bytes (676 -> 252 KB), same picture.
    return pd.concat(parts, ignore_index=True)[columns].astype(
        {"feature": "category", "value": "category", "order": "int16", "shap": "float32",
         "value_norm": "float32", "jitter": "float32"})


def _density_jitter(x: np.ndarray, rng: np.random.Generator, bins: int = 50) -> np.ndarray:
    if len(x) == 0:
        return np.zeros(0)
    span = float(np.nanmax(x) - np.nanmin(x)) or 1.0
    idx = np.clip(((x - np.nanmin(x)) / span * bins).astype(int), 0, bins)
    counts = np.bincount(idx, minlength=bins + 1)
    width = np.sqrt(counts[idx] / counts.max())
    return rng.uniform(-0.42, 0.42, len(x)) * width


def beeswarm_chart(long: pd.DataFrame) -> ChartSpec:
    """One row per feature: each dot a transaction at its SHAP value, coloured by the
    feature's value (blue low → red high; grey: categorical or missing). `long` is
    `beeswarm_data` output."""
    return ChartSpec("beeswarm", (), long)


def _beeswarm() -> alt.LayerChart:
    base = _base().encode(
        x=alt.X("shap:Q", title=LOG_ODDS),
        y=alt.Y("feature:N", sort=alt.EncodingSortField("order", order="ascending"),
                title=None, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset("jitter:Q", scale=alt.Scale(domain=[-0.5, 0.5])),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("value:N", title="feature value"),
                 alt.Tooltip("shap:Q", title="log-odds", format="+.3f")])
    grey = base.transform_filter("!isValid(datum.value_norm)").mark_circle(
        size=12, opacity=0.6, color="#8c8c8c")
    coloured = base.transform_filter("isValid(datum.value_norm)").mark_circle(
        size=12, opacity=0.8).encode(
        color=alt.Color("value_norm:Q", title="feature value (low → high)",
                        scale=alt.Scale(domain=[0, 1], range=_DIVERGING),
                        legend=alt.Legend(orient="top", labelExpr=_LOW_HIGH.labelExpr)))
    zero = _base().mark_rule(color="#999").encode(x=alt.datum(0))
    return (zero + grey + coloured).properties(height=alt.Step(34))


# --------------------------------------------------------------------------- dependence


def dependence_chart(frame: pd.DataFrame, feature: str, color_by: str | None,
                     categorical: bool, color_categorical: bool,
                     log_x: bool = False) -> ChartSpec:
    """SHAP of `feature` against its value, coloured by `color_by`'s value. `frame` has
    `value`, `shap` and, when colouring, `color` (explainers' dependence_data). A numeric
    colour is shown by rank, so skewed values (mostly 0, a few large) still spread out;
    `log_x` spreads a skewed numeric feature (symlog: zero and negatives stay on the axis)."""
    df = frame.copy()
    if color_by is not None and "color" in df.columns and not color_categorical:
        df["color_rank"] = pd.to_numeric(df["color"], errors="coerce").rank(pct=True)
    if categorical:  # deterministic jitter, so a redraw does not move the points
        df["jitter"] = (np.arange(len(df)) * 0.6180339887) % 1.0 - 0.5
    colour = color_by if color_by is not None and "color" in df.columns else None
    options: tuple[tuple[str, Any], ...] = (
        ("categorical", categorical), ("color_by", colour),
        ("color_categorical", color_categorical), ("feature", feature))
    if log_x and not categorical:
        options += (("log_x", True),)
    return ChartSpec("dependence", options, df)


def _dependence(feature: str, color_by: str | None, categorical: bool,
                color_categorical: bool, log_x: bool = False) -> alt.Chart:
    vtype, ctype = ("N" if categorical else "Q"), ("N" if color_categorical else "Q")
    x_scale = alt.Scale(type="symlog") if log_x else alt.Scale(zero=False)
    enc: dict[str, Any] = {
        "x": (alt.X("value:N", title=feature, sort="ascending") if categorical
              else alt.X("value:Q", title=feature + (" (log scale)" if log_x else ""),
                         scale=x_scale)),
        "y": alt.Y("shap:Q", title=f"SHAP of {feature} (log-odds)"),
        "tooltip": [alt.Tooltip(f"value:{vtype}", title=feature),
                    alt.Tooltip("shap:Q", title="log-odds", format="+.3f")]}
    if color_by is not None:
        # below the plot, with room for a long feature name (a side legend cut it off)
        enc["color"] = (alt.Color("color:N", title=color_by,
                                  legend=alt.Legend(orient="bottom", titleLimit=600))
                        if color_categorical else
                        alt.Color("color_rank:Q", title=f"{color_by} (low → high)",
                                  scale=alt.Scale(domain=[0, 1], range=_DIVERGING),
                                  legend=alt.Legend(
                                      labelExpr=_LOW_HIGH.labelExpr, orient="bottom",
                                      titleLimit=600)))
        enc["tooltip"].append(alt.Tooltip(f"color:{ctype}", title=color_by))
    if categorical:
        enc["xOffset"] = alt.XOffset("jitter:Q", scale=alt.Scale(domain=[-0.6, 0.6]))
    return _base().mark_circle(size=14, opacity=0.6).encode(**enc).properties(height=360)


# --------------------------------------------------------------------------- timeline


def timeline_chart(frame: pd.DataFrame) -> ChartSpec:
    """An account's transactions over time: amount (USD, log scale), coloured by score; the
    case itself ringed. `frame` has event_time, amount_usd, score, is_case and optionally
    txn_type and outcome."""
    df = frame.copy()
    df["event_time"] = pd.to_datetime(df["event_time"], utc=True)  # the warehouse keeps UTC
    df["amount_usd"] = df["amount_usd"].clip(lower=0.01)
    df["score_pct"] = df["score"].map(lambda s: "not scored" if pd.isna(s) else f"{s:.1%}")
    for col in ("txn_type", "outcome"):
        if col not in df.columns:
            df[col] = ""
    # the axis spans the window the query covers (30 days either side of the case), so one
    # transaction is not a zero-width domain whose ticks read as milliseconds (".287")
    case = df.loc[df["is_case"].astype(bool), "event_time"] if "is_case" in df else df[:0]
    centre = case.iloc[0] if len(case) else (df["event_time"].min() if len(df) else None)
    if centre is None or pd.isna(centre):
        return ChartSpec("timeline", (), df)
    span = pd.Timedelta(days=TIMELINE_DAYS)
    low = min(df["event_time"].min(), centre - span)
    high = max(df["event_time"].max(), centre + span)
    domain = tuple((t.year, t.month, t.day) for t in (low.floor("D"), high.ceil("D")))
    return ChartSpec("timeline", (("domain", domain),), df)


TIMELINE_DAYS = 30


def _timeline(domain: tuple[tuple[int, int, int], ...] | None = None) -> alt.LayerChart:
    tooltip = [alt.Tooltip("transaction_id:N", title="transaction"),
               alt.Tooltip("utcyearmonthdatehoursminutes(event_time):T", title="time (UTC)"),
               alt.Tooltip("amount_usd:Q", title="amount", format="$,.2f"),
               alt.Tooltip("score_pct:N", title="score"),
               alt.Tooltip("txn_type:N", title="type"), alt.Tooltip("outcome:N")]
    base = _base().encode(
        x=alt.X("event_time:T", title="Date (UTC)",
                scale=alt.Scale(type="utc", domain=[
                    alt.DateTime(year=y, month=m, date=d, utc=True) for y, m, d in domain])
                if domain else alt.Scale(type="utc"),
                axis=alt.Axis(format="%d %b %Y", labelOverlap=True, labelAngle=0,
                              tickCount="week")),
        y=alt.Y("amount_usd:Q", title="Amount (USD)", scale=alt.Scale(type="log"),
                axis=alt.Axis(format="$,.0f")),
        tooltip=tooltip)
    points = base.mark_circle(size=80, opacity=0.85, stroke="#555", strokeWidth=0.5).encode(
        color=alt.Color("score:Q", title="score", scale=alt.Scale(domain=[0, 1],
                                                                  scheme="orangered"),
                        legend=alt.Legend(format=".0%")))
    ring = base.transform_filter("datum.is_case").mark_point(
        size=400, shape="circle", color="black", strokeWidth=2, filled=False)
    label = base.transform_filter("datum.is_case").mark_text(
        dy=-18, text="this case", fontWeight="bold")
    return (points + ring + label).properties(height=280)


# --------------------------------------------------------------------------- label coverage


def label_coverage_chart(weekly: pd.DataFrame) -> ChartSpec:
    """Share of each week's transactions with a known outcome. `weekly` has week,
    transactions, labelled, share."""
    df = weekly.copy()
    df["week_label"] = pd.to_datetime(df["week"]).dt.strftime("%d %b")
    df["order"] = np.arange(len(df))
    return ChartSpec("label_coverage", (), df)


def _label_coverage() -> alt.Chart:
    return _base().mark_bar(color=LOWERS).encode(
        x=alt.X("week_label:O", title="Week starting (UTC)",
                sort=alt.EncodingSortField("order", order="ascending"),
                axis=alt.Axis(labelAngle=0)),
        y=alt.Y("share:Q", title="Labelled", axis=alt.Axis(format=".0%"),
                scale=alt.Scale(domain=[0, 1])),
        tooltip=[alt.Tooltip("week_label:N", title="week starting"),
                 alt.Tooltip("transactions:Q", format=","),
                 alt.Tooltip("labelled:Q", format=","),
                 alt.Tooltip("share:Q", title="labelled", format=".1%")],
    ).properties(height=200)


_TEMPLATES: dict[str, Callable[..., alt.TopLevelMixin]] = {
    "waterfall": _waterfall, "importance": _importance, "beeswarm": _beeswarm,
    "dependence": _dependence, "timeline": _timeline, "label_coverage": _label_coverage,
}
