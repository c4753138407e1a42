"""Monitoring's drift half: every feature's missing rate, PSI, out-of-range and unseen-level
shares per week against the reference, grouped by feature source; attribution drift from the
SHAP store; and the alerts they raise (one per week, source and measure, never one per
feature). No Streamlit, no SQL (`data_access.monitoring_queries`)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from app.services.monitoring_rules import MonitoringRules
from data_access import monitoring_queries as q
from data_access import shap_store
from explainers.monitoring_stats import psi
from explainers.schema import FeatureSchema

__all__ = [
    "Alert",
    "alert_id",
    "attribution_alerts",
    "attribution_drift",
    "feature_alerts",
    "feature_drift",
    "source_table",
    "week_text",
]

PSI_MIN_ROWS = 100  # PSI over ten bins of fewer values is noise
FEATURE_COLUMNS = ["week", "feature", "source", "dtype", "rows", "status", "missing_rate",
                   "reference_missing_rate", "psi", "out_of_range_rate", "out_of_range_rows",
                   "unseen_share"]


@dataclass(frozen=True)
class Alert:
    """One active alert: what fired, in which week, the numbers, and the chart explaining it
    (`chart`: "performance:<metric>", "score", "flag_rate", "source:<source>:<measure>" or
    "attribution")."""

    alert_id: str
    kind: str
    week: date
    subject: str
    message: str
    chart: str
    value: float
    reference: float
    features: tuple[str, ...] = ()


def alert_id(model_id: str, week: date, kind: str, subject: str) -> str:
    """Stable across runs and data refreshes, so an acknowledgement stays attached."""
    text = f"{model_id}|{week.isoformat()}|{kind}|{subject}"
    return "A-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def week_text(week: date) -> str:
    return f"week of {week.isoformat()} (W{week.isocalendar().week:02d})"


def _pct(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


# --------------------------------------------------------------------------- features


def _feature_rows(ref: pd.DataFrame, weekly: pd.DataFrame, categorical: set[str]) -> list[dict]:
    """Per week and feature: missing rate against the reference's, PSI over the reference's
    bins (numeric) or levels (categorical), out-of-range and unseen-level shares."""
    refs = {r.feature: r for r in ref.itertuples(index=False)}
    out = []
    for r in weekly.itertuples(index=False):
        base = refs.get(r.feature)
        ref_counts = base.counts if base is not None else {}
        ref_rows = base.rows if base is not None else 0
        ref_present, present = sum(ref_counts.values()), sum(r.counts.values())
        keys = sorted(set(ref_counts) | set(r.counts), key=str)
        status, value = "ok", math.nan
        if ref_present == 0 and present > 0:
            status = "new (absent from the reference)"
        elif present == 0:
            status = "no values this week"
        elif min(present, ref_present) < PSI_MIN_ROWS:
            status = f"fewer than {PSI_MIN_ROWS} values: no PSI"
        else:
            value = psi(np.array([ref_counts.get(k, 0) for k in keys], dtype=float),
                        np.array([r.counts.get(k, 0) for k in keys], dtype=float))
        is_cat = r.feature in categorical
        unseen = sum(v for k, v in r.counts.items() if k not in ref_counts)
        out.append({"week": r.week, "feature": r.feature, "rows": r.rows, "status": status,
                    "missing_rate": r.missing / r.rows if r.rows else math.nan,
                    "reference_missing_rate": base.missing / ref_rows if ref_rows else math.nan,
                    "psi": value,
                    "out_of_range_rate": math.nan if is_cat else r.out_of_range / r.rows,
                    "out_of_range_rows": r.out_of_range,
                    "unseen_share": unseen / r.rows if is_cat and ref_present else math.nan})
    return out


def feature_drift(con: duckdb.DuckDBPyConnection, schema: FeatureSchema, reference: q.Span,
                  span: q.Span) -> pd.DataFrame:
    """One row per week and feature (FEATURE_COLUMNS); a feature missing from the lake
    altogether is listed with status "absent from the lake"."""
    kinds = q.transaction_columns(con)
    present = [f for f in schema.features if f.name in kinds]
    numeric = [f.name for f in present if not f.is_categorical]
    categorical = [f.name for f in present if f.is_categorical]
    profile = q.numeric_profile(con, numeric, kinds, reference)
    ref, weekly = q.feature_histograms(con, profile, categorical, kinds, span, reference)
    frame = pd.DataFrame(_feature_rows(ref, weekly, set(categorical)),
                         columns=[c for c in FEATURE_COLUMNS if c not in ("source", "dtype")])
    meta = {f.name: (f.source, f.dtype) for f in schema.features}
    frame["source"] = frame["feature"].map(lambda f: meta[f][0])
    frame["dtype"] = frame["feature"].map(lambda f: meta[f][1])
    absent = [f for f in schema.features if f.name not in kinds]
    if absent:
        frame = pd.concat([frame, pd.DataFrame(
            [{"week": pd.NaT, "feature": f.name, "source": f.source, "dtype": f.dtype,
              "rows": 0, "status": "absent from the lake"} for f in absent])],
            ignore_index=True)
    return frame[FEATURE_COLUMNS].sort_values(["week", "source", "feature"],
                                              kind="mergesort").reset_index(drop=True)


def source_table(features: pd.DataFrame) -> pd.DataFrame:
    """Per week and feature source: the mean and worst missing rate against the reference,
    the largest PSI and out-of-range share, and how many features drift."""
    f = features[features["week"].notna()].copy()
    f["missing_increase"] = f["missing_rate"] - f["reference_missing_rate"]
    out = []
    for (week, source), g in f.groupby(["week", "source"], sort=True):
        worst = g.loc[g["missing_increase"].fillna(-1).idxmax()]
        out.append({"week": week, "source": source, "features": len(g),
                    "mean_missing_rate": g["missing_rate"].mean(),
                    "reference_mean_missing_rate": g["reference_missing_rate"].mean(),
                    "worst_missing_feature": worst["feature"],
                    "worst_missing_rate": worst["missing_rate"],
                    "worst_reference_missing_rate": worst["reference_missing_rate"],
                    "max_psi": g["psi"].max(), "max_out_of_range_rate":
                    g["out_of_range_rate"].max(), "max_unseen_share": g["unseen_share"].max(),
                    "new_features": int(g["status"].str.startswith("new").sum())})
    return pd.DataFrame(out)


def _group_alert(model_id: str, week: date, source: str, measure: str, hits: pd.DataFrame,
                 value_col: str, ref_col: str | None, label: str) -> Alert:
    hits = hits.sort_values(value_col, ascending=False)
    top = hits.iloc[0]
    ref = float(top[ref_col]) if ref_col else 0.0
    names = tuple(hits["feature"])

    def change(row: pd.Series) -> str:
        if measure == "psi":
            return f"{row['feature']} {row[value_col]:.2f}"
        before = float(row[ref_col]) if ref_col else 0.0
        return f"{row['feature']} {_pct(before)} → {_pct(float(row[value_col]))}"

    listed = "; ".join(change(r) for _, r in hits.head(4).iterrows()) + (
        f"; +{len(names) - 4} more" if len(names) > 4 else "")
    head = (f"PSI {top[value_col]:.2f}" if measure == "psi"
            else f"{label} {_pct(ref)} → {_pct(float(top[value_col]))}")
    message = f"{source} features: {head} in {week_text(week)} ({listed})"
    return Alert(alert_id(model_id, week, f"data:{measure}", source), "data quality"
                 if measure == "missing" else "feature drift", week, f"{source}:{measure}",
                 message, f"source:{source}:{measure}", float(top[value_col]), ref, names)


def feature_alerts(model_id: str, features: pd.DataFrame, rules: MonitoringRules,
                   after: date) -> list[Alert]:
    """One alert per week, source and measure (missing rate, PSI, out of range, unseen
    levels), for weeks starting on or after `after`."""
    f = features[features["week"].notna()].copy()
    f = f[pd.to_datetime(f["week"]).dt.date >= after]
    f["missing_increase"] = f["missing_rate"] - f["reference_missing_rate"]
    tests = (
        ("missing", (f["missing_increase"] >= rules.missing_rate_increase)
         & (f["missing_rate"] >= rules.missing_rate_ratio * f["reference_missing_rate"]),
         "missing_rate",
         "reference_missing_rate", "missing rate"),
        ("psi", f["psi"] >= rules.feature_psi, "psi", None, "PSI"),
        ("out_of_range", (f["out_of_range_rate"] >= rules.out_of_range_rate)
         & (f["out_of_range_rows"] >= rules.out_of_range_min_rows), "out_of_range_rate", None,
         "out-of-range rate"),
        ("unseen", f["unseen_share"] >= rules.unseen_share, "unseen_share", None,
         "share at unseen levels"),
    )
    alerts = []
    for measure, mask, col, ref_col, label in tests:
        for (week, source), hits in f[mask.fillna(False)].groupby(["week", "source"]):
            alerts.append(_group_alert(model_id, pd.Timestamp(week).date(), source, measure,
                                       hits, col, ref_col, label))
    return alerts


# --------------------------------------------------------------------------- attribution


def attribution_drift(con: duckdb.DuckDBPyConnection, model_id: str, reference: q.Span,
                      span: q.Span) -> pd.DataFrame | None:
    """Per week and feature: mean |SHAP|, mean SHAP and rank, beside the reference's; None
    when the lake stores no SHAP values for the model."""
    stored = shap_store.stored_table(con, model_id)
    if stored is None:
        return None
    table, names = stored
    ref, weekly = q.shap_means(con, table, names, span, reference)
    if weekly.empty:
        return weekly
    ref = ref.set_index("feature")
    ref_rank = ref["mean_abs_shap"].rank(ascending=False, method="first")
    weekly["rank"] = weekly.groupby("week")["mean_abs_shap"].rank(ascending=False,
                                                                  method="first")
    weekly["reference_mean_abs_shap"] = weekly["feature"].map(ref["mean_abs_shap"])
    weekly["reference_mean_shap"] = weekly["feature"].map(ref["mean_shap"])
    weekly["reference_rank"] = weekly["feature"].map(ref_rank)
    weekly["status"] = np.where(weekly["reference_mean_abs_shap"].isna(),
                                "new (absent from the reference)", "ok")
    return weekly


def attribution_alerts(model_id: str, attribution: pd.DataFrame | None, rules: MonitoringRules,
                       after: date) -> list[Alert]:
    """One alert per week naming the features whose mean |SHAP| moved by the ratio, or that
    moved `rank_change` places in or out of the reference's top 10."""
    if attribution is None or attribution.empty:
        return []
    a = attribution[pd.to_datetime(attribution["week"]).dt.date >= after].copy()
    big = np.maximum(a["mean_abs_shap"], a["reference_mean_abs_shap"]) >= rules.min_mean_abs_shap
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = a["mean_abs_shap"] / a["reference_mean_abs_shap"]
    moved = (ratio >= rules.mean_abs_shap_ratio) | (ratio <= 1 / rules.mean_abs_shap_ratio)
    top = (a["reference_rank"] <= 10) | (a["rank"] <= 10)
    ranked = top & ((a["rank"] - a["reference_rank"]).abs() >= rules.rank_change)
    a["ratio"] = ratio
    alerts = []
    for week, hits in a[big & (moved | ranked)].groupby("week"):
        hits = hits.assign(size=(np.log(hits["ratio"].clip(lower=1e-9))).abs()).sort_values(
            "size", ascending=False)
        t = hits.iloc[0]
        wk = pd.Timestamp(week).date()
        listed = ", ".join(hits["feature"].head(4)) + (
            f" +{len(hits) - 4} more" if len(hits) > 4 else "")
        message = (f"attribution: {t['feature']} mean |SHAP| {t['reference_mean_abs_shap']:.3f}"
                   f" → {t['mean_abs_shap']:.3f} (rank {t['reference_rank']:.0f} → "
                   f"{t['rank']:.0f}) in {week_text(wk)} ({listed})")
        alerts.append(Alert(alert_id(model_id, wk, "attribution", "shap"), "attribution", wk,
                            "attribution", message, "attribution", float(t["mean_abs_shap"]),
                            float(t["reference_mean_abs_shap"]), tuple(hits["feature"])))
    return alerts


def features_of(frame: pd.DataFrame, names: Sequence[str]) -> pd.DataFrame:
    return frame[frame["feature"].isin(list(names))]
