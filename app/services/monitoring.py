"""Monitoring, the job of watching a deployed model while fraud evolves: weekly performance
with late labels (bootstrap intervals, label maturity, expected final values), score and
feature drift grouped by feature source, attribution drift, alerts under `monitoring.toml`
rules, and the same table per segment. The page and `fraudlens monitor` both call
`build_report`, so they give the same numbers. No Streamlit, no SQL, no drawing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from app.services.monitoring_drift import (
    Alert,
    alert_id,
    attribution_alerts,
    attribution_drift,
    feature_alerts,
    feature_drift,
    source_table,
    week_text,
)
from app.services.monitoring_rules import MonitoringRules
from app.views.monitoring_report import report_html
from data_access import monitoring_queries as q
from data_access import report_cache
from data_access.exports import BeforeCommit, ExportResult, atomic_write_bytes
from data_access.holdout import newest_label_time
from data_access.warehouse import fetch_df
from explainers import monitoring_stats as ms
from explainers.errors import ValidationError
from explainers.schema import FeatureSchema
from explainers.timeutil import to_utc

__all__ = [
    "METRIC_LABELS",
    "NOT_MEASURABLE",
    "Alert",
    "MonitoringReport",
    "Reference",
    "acknowledgements",
    "build_report",
    "kept",
    "kept_parts",
    "kept_report",
    "kept_window",
    "page_window",
    "segment_weekly",
    "segment_weekly_at",
    "write_html_report",
]

NOT_MEASURABLE = "not yet measurable"
FINAL_COMPLETENESS = 0.95  # a week whose expected fraud labels are this complete is final
METRIC_LABELS = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC", "recall_at_k": "recall at capacity",
                 "precision_at_k": "precision at capacity"}
ACK_ACTION = "alert_ack"
ALERT_ORDER = ("data quality", "performance", "feature drift", "score drift", "attribution")
LEGIT_LABEL_METRICS = ("roc_auc", "pr_auc", "precision_at_k")  # need the legit labels too
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Reference:
    """What a week is compared with: drift against the training window, performance against
    the holdout window (from the manifest), else both against the first N weeks."""

    drift: q.Span
    performance: q.Span
    basis: str
    from_manifest: bool = True

    @property
    def alerts_from(self) -> date:
        """Weeks starting on or after this Monday are judged: none of their rows is in the
        reference."""
        last = (max(self.drift[1], self.performance[1]) - pd.Timedelta(microseconds=1)).date()
        return last + timedelta(days=7 - last.weekday())


@dataclass(frozen=True)
class MonitoringReport:
    model_id: str
    threshold: float
    as_of: pd.Timestamp
    span: q.Span
    reference: Reference
    rules: MonitoringRules
    weekly: pd.DataFrame = field(repr=False)
    reference_metrics: tuple[ms.MetricInterval, ...]
    reference_flag_rate: float
    features: pd.DataFrame = field(repr=False)
    sources: pd.DataFrame = field(repr=False)
    attribution: pd.DataFrame | None = field(repr=False)
    alerts: tuple[Alert, ...]
    warnings: tuple[str, ...]

    def reference_value(self, metric: str) -> float:
        return next(m.estimate for m in self.reference_metrics if m.metric == metric)

    def alert(self, alert_id_: str) -> Alert:
        return next(a for a in self.alerts if a.alert_id == alert_id_)


# --------------------------------------------------------------------------- the reference


def _window(manifest: Mapping[str, Any], start: str, end: str) -> q.Span | None:
    window = manifest.get("training_window") or {}
    try:
        lo, hi = to_utc(window[start]), to_utc(window[end])
    except (KeyError, TypeError, ValueError):
        return None
    if pd.isna(lo) or pd.isna(hi) or hi <= lo:
        return None
    return lo, hi + pd.Timedelta(microseconds=1)


def _reference(manifest: Mapping[str, Any], span: q.Span, rules: MonitoringRules) -> Reference:
    train = _window(manifest, "start", "end")
    holdout = _window(manifest, "holdout_start", "holdout_end")
    if train is not None:
        basis = (f"drift against the training window {train[0]:%Y-%m-%d} to {train[1]:%Y-%m-%d}"
                 + (f", performance against the holdout window {holdout[0]:%Y-%m-%d} to "
                    f"{holdout[1]:%Y-%m-%d}" if holdout else ", performance against it too"))
        return Reference(train, holdout or train, basis)
    start = span[0].normalize() - pd.Timedelta(days=span[0].weekday())
    end = start + pd.Timedelta(weeks=rules.reference_weeks)
    return Reference((start, end), (start, end),
                     f"the model's training window is not recorded: the first "
                     f"{rules.reference_weeks} weeks ({start:%Y-%m-%d} to {end:%Y-%m-%d}) are "
                     "the reference", from_manifest=False)


def _span(con: duckdb.DuckDBPyConnection, since: date | None, until: date | None) -> q.Span:
    row = fetch_df(con, "SELECT min(event_time) AS lo, max(event_time) AS hi "
                        "FROM transactions").iloc[0]
    if pd.isna(row["lo"]):
        raise ValidationError("The lake holds no transactions; build the demo workspace with "
                              "`fraudlens demo` or import transactions.")
    lo = to_utc(since) if since else to_utc(row["lo"]).normalize()
    hi = to_utc(until) + pd.Timedelta(days=1) if until else (
        to_utc(row["hi"]) + pd.Timedelta(microseconds=1))
    if hi <= lo:
        raise ValidationError(f"--until {until} is before --since {since}")
    return lo, hi


# --------------------------------------------------------------------------- performance


def _binned(frame: pd.DataFrame) -> ms.BinnedWeek:
    f = frame.sort_values("bin", ascending=False)
    return ms.BinnedWeek(f["rows"].to_numpy(float), f["fraud"].to_numpy(float),
                         f["legit"].to_numpy(float))


def _seed(rules: MonitoringRules, key: str) -> list[int]:
    return [rules.seed, int.from_bytes(key.encode()[:16].ljust(16, b"\0"), "little") % 2**32]


def _metric_columns(intervals: tuple[ms.MetricInterval, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in intervals:
        out[m.metric], out[f"{m.metric}_low"], out[f"{m.metric}_high"] = m.estimate, m.low, m.high
    return out


def _maturity(con: duckdb.DuckDBPyConnection, days: pd.DataFrame, as_of: pd.Timestamp,
              rules: MonitoringRules) -> dict[date, float]:
    """Per week: the expected share of its eventual fraud labels known as of `as_of`."""
    horizon = pd.Timedelta(days=rules.mature_after_days)
    maturity = ms.label_maturity(q.fraud_label_delays(con, as_of - horizon, as_of).to_numpy(),
                                 rules.mature_after_days)
    if days.empty:
        return {}
    per_day = days.groupby(["week", "day"], as_index=False)["rows"].sum()
    mid = pd.to_datetime(per_day["day"]).dt.tz_localize("UTC") + pd.Timedelta(hours=12)
    per_day["age"] = (as_of - mid).dt.total_seconds() / 86400.0
    return {w: maturity.completeness(g["age"].to_numpy(), g["rows"])
            for w, g in per_day.groupby("week")}


def _bins(days: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    scored = days[days["bin"].notna()]
    return scored.groupby([*by, "bin"], as_index=False)[["rows", "fraud", "legit"]].sum()


def _weekly(days: pd.DataFrame, complete: dict[date, float], rules: MonitoringRules,
            ref_recall: float) -> pd.DataFrame:
    counts = days.assign(scored=days["rows"].where(days["bin"].notna(), 0)).groupby(
        "week", as_index=False)[["rows", "scored", "fraud", "legit", "flagged"]].sum()
    bins = _bins(days, ["week"])
    rows = []
    for c in counts.itertuples(index=False):
        week, labelled = c.week, int(c.fraud + c.legit)
        wb = bins[bins["week"] == week]
        intervals = ms.bootstrap_week(_binned(wb), rules.k_per_week,
                                      n_resamples=rules.n_resamples,
                                      seed=_seed(rules, week.isoformat())) if len(wb) else ()
        metrics = _metric_columns(intervals)
        if c.rows and labelled / c.rows < rules.min_label_share:
            for m in LEGIT_LABEL_METRICS:  # legit labels still missing: these would be biased
                metrics.update({m: math.nan, f"{m}_low": math.nan, f"{m}_high": math.nan})
        completeness = complete.get(week, math.nan)
        recall = metrics.get("recall_at_k", math.nan)
        caught = recall * c.fraud if c.fraud and not math.isnan(recall) else 0.0
        expected, expected_recall = ms.expected_final_recall(float(c.fraud), caught,
                                                             completeness, ref_recall)
        status = (NOT_MEASURABLE if labelled == 0 or c.fraud == 0 else
                  "final" if completeness >= FINAL_COMPLETENESS else "provisional")
        rows.append({"week": week, "rows": int(c.rows), "scored": int(c.scored),
                     "labelled": labelled,
                     "label_share": labelled / c.rows if c.rows else math.nan,
                     "fraud_known": int(c.fraud), "status": status,
                     "expected_label_completeness": completeness,
                     "expected_final_fraud": expected, **metrics,
                     "expected_final_recall_at_k": expected_recall if status == "provisional"
                     else math.nan,
                     "flagged": int(c.flagged), "flag_rate": c.flagged / c.scored if c.scored
                     else math.nan})
    return pd.DataFrame(rows)


def _score_psi(ref_bins: pd.DataFrame, bins: pd.DataFrame, groups: int = 10) -> dict[date, float]:
    """PSI of each week's scores over the reference's deciles (cut at score-bin edges)."""
    if ref_bins.empty:
        return {}
    r = ref_bins.groupby("bin")["rows"].sum().sort_index()
    cum = r.cumsum() / r.sum()
    edges = np.unique([r.index[np.searchsorted(cum.to_numpy(), g / groups)]
                       for g in range(1, groups)])
    ref_counts = np.bincount(np.searchsorted(edges, r.index.to_numpy()), weights=r.to_numpy(),
                             minlength=len(edges) + 1)
    out = {}
    for week, g in bins.groupby("week"):
        cur = np.bincount(np.searchsorted(edges, g["bin"].to_numpy()),
                          weights=g["rows"].to_numpy(float), minlength=len(edges) + 1)
        out[pd.Timestamp(week).date()] = ms.psi(ref_counts, cur)
    return out


def _performance_alerts(model_id: str, weekly: pd.DataFrame, ref: dict[str, float],
                        rules: MonitoringRules, after: date) -> list[Alert]:
    drops = {"roc_auc": rules.roc_auc_drop, "pr_auc": rules.pr_auc_drop,
             "recall_at_k": rules.recall_at_k_drop, "precision_at_k": rules.precision_at_k_drop}
    alerts = []
    for w in weekly.itertuples(index=False):
        if w.week < after or w.status == NOT_MEASURABLE:
            continue
        for metric, drop in drops.items():
            high, value = getattr(w, f"{metric}_high"), getattr(w, metric)
            if math.isnan(ref[metric]) or math.isnan(high) or not high < ref[metric] - drop:
                continue
            note = "" if w.status == "final" else (
                f"; labels still arriving, {w.expected_label_completeness:.0%} of fraud known")
            message = (f"performance: {METRIC_LABELS[metric]} {value:.3f} [95% CI "
                       f"{getattr(w, f'{metric}_low'):.3f}–{high:.3f}] vs reference "
                       f"{ref[metric]:.3f} in {week_text(w.week)}{note}")
            alerts.append(Alert(alert_id(model_id, w.week, "performance", metric),
                                "performance", w.week, metric, message, f"performance:{metric}",
                                float(value), float(ref[metric])))
    return alerts


def _score_alerts(model_id: str, weekly: pd.DataFrame, ref_flag_rate: float,
                  rules: MonitoringRules, after: date) -> list[Alert]:
    alerts = []
    for w in weekly.itertuples(index=False):
        if w.week < after:
            continue
        if w.score_psi >= rules.score_psi:
            alerts.append(Alert(alert_id(model_id, w.week, "score", "psi"), "score drift",
                                w.week, "score", f"score distribution: PSI {w.score_psi:.2f} "
                                f"against the reference in {week_text(w.week)}", "score",
                                float(w.score_psi), 0.0))
        if ref_flag_rate > 0 and w.flag_rate >= rules.flag_rate_ratio * ref_flag_rate:
            alerts.append(Alert(alert_id(model_id, w.week, "score", "flag_rate"), "score drift",
                                w.week, "flag rate", f"flag rate {ref_flag_rate:.2%} → "
                                f"{w.flag_rate:.2%} in {week_text(w.week)}", "flag_rate",
                                float(w.flag_rate), ref_flag_rate))
    return alerts


# --------------------------------------------------------------------------- the report


KEPT_KIND = "monitoring"


def page_window(summary: Any) -> tuple[date, date]:
    """The window the Monitoring page opens with: the lake's first to last event day (UTC)
    of a `WarehouseSummary`."""
    return summary.first_event.date(), summary.last_event.date()


def kept_window(since: date, until: date, summary: Any) -> tuple[date | None, date | None]:
    """The window a report is computed and kept for: (None, None), the whole lake (what
    `fraudlens monitor` and `fraudlens precompute` compute by default), when the dates are the
    lake's first to last day; else the dates. So the page's default finds the report
    precomputed, and after a new day arrives, the one kept for the earlier data."""
    return (None, None) if (since, until) == page_window(summary) else (since, until)


def kept_parts(manifest: Mapping[str, Any], rules: MonitoringRules, since: date | None = None,
               until: date | None = None) -> tuple[object, ...]:
    """What a kept report is keyed by besides the lake's data version: the model and its
    checksum, the window and the rules (the page and `fraudlens precompute` share it)."""
    return (manifest.get("model_id"), manifest.get("sha256"), since, until, repr(rules))


def kept(workspace: Path, data_version: str, manifest: Mapping[str, Any],
         rules: MonitoringRules, since: date | None = None, until: date | None = None
         ) -> report_cache.Kept | None:
    """The report kept for this data version, else the newest one kept for earlier data
    (`current` False), else None. Never computes."""
    return report_cache.read_newest(workspace, KEPT_KIND, kept_parts(manifest, rules, since,
                                                                     until),
                                    MonitoringReport, data_version)


def kept_report(con: duckdb.DuckDBPyConnection, workspace: Path, data_version: str,
                manifest: Mapping[str, Any], rules: MonitoringRules, since: date | None = None,
                until: date | None = None, *, progress: Progress | None = None,
                refresh: bool = False) -> MonitoringReport:
    """`build_report`, kept on disk under the workspace keyed by the model's checksum, the
    lake's data version, the window and the rules: the page's first visit after a restart
    reads it instead of running every scan again (`refresh`: compute and keep it anew)."""
    stable = kept_parts(manifest, rules, since, until)
    found = None if refresh else report_cache.read_kept(workspace, KEPT_KIND, stable,
                                                        data_version, MonitoringReport)
    if found is not None:
        return found.result
    report = build_report(con, manifest, rules, since, until, progress=progress)
    report_cache.keep(workspace, KEPT_KIND, stable, data_version, report)
    return report


def build_report(con: duckdb.DuckDBPyConnection, manifest: Mapping[str, Any],
                 rules: MonitoringRules, since: date | None = None, until: date | None = None,
                 progress: Progress | None = None) -> MonitoringReport:
    """Everything the page and `fraudlens monitor` show for one model (`manifest`: the
    registry's dict plus `model_id`) over [since, until] (dates, UTC, inclusive)."""
    say = progress or (lambda _m: None)
    model_id = str(manifest["model_id"])
    schema = FeatureSchema.from_dict(manifest["feature_schema"])
    threshold = _threshold(manifest)
    as_of = newest_label_time(con)
    span = _span(con, since, until)
    ref = _reference(manifest, span, rules)
    warnings = [] if ref.from_manifest else [ref.basis]
    if as_of is None:
        as_of = span[1]
        warnings.append("No labels yet: performance is not yet measurable for any week.")
    say("performance by week (score bins, labels as of "
        f"{as_of:%Y-%m-%d %H:%M} UTC, {rules.n_resamples} resamples)")
    days = q.scored_days(con, model_id, {"in_span": span, "in_perf": ref.performance,
                                         "in_drift": ref.drift}, as_of, threshold)
    ref_week = _binned(_bins(days[days["in_perf"]], []))
    ref_metrics = ms.bootstrap_week(ref_week, _ref_k(ref, rules), n_resamples=rules.n_resamples,
                                    seed=_seed(rules, "reference"))
    ref_values = {m.metric: m.estimate for m in ref_metrics}
    current = days[days["in_span"]]
    weekly = _weekly(current, _maturity(con, current, as_of, rules), rules,
                     ref_values["recall_at_k"])
    drift = days[days["in_drift"]]
    ref_flag = float(drift["flagged"].sum()
                     / max(drift.loc[drift["bin"].notna(), "rows"].sum(), 1))
    psi_by_week = _score_psi(_bins(drift, []), _bins(current, ["week"]))
    weekly["score_psi"] = weekly["week"].map(psi_by_week) if len(weekly) else []
    weekly["reference_week"] = weekly["week"] < ref.alerts_from if len(weekly) else []
    say("feature drift and data quality by source")
    features = feature_drift(con, schema, ref.drift, span)
    say("attribution drift from the SHAP store")
    attribution = attribution_drift(con, model_id, ref.drift, span)
    if attribution is None:
        warnings.append(f"No SHAP values are stored for {model_id}: attribution drift is "
                        f"skipped (run `fraudlens explain --model {model_id}`).")
    after = ref.alerts_from
    alerts = (_performance_alerts(model_id, weekly, ref_values, rules, after)
              + _score_alerts(model_id, weekly, ref_flag, rules, after)
              + feature_alerts(model_id, features, rules, after)
              + attribution_alerts(model_id, attribution, rules, after))
    alerts.sort(key=lambda a: (ALERT_ORDER.index(a.kind), a.week, a.subject))
    return MonitoringReport(model_id, threshold, as_of, span, ref, rules, weekly, ref_metrics,
                            ref_flag, features, source_table(features), attribution,
                            tuple(alerts), tuple(warnings))


def _ref_k(ref: Reference, rules: MonitoringRules) -> int:
    """The reference window's review capacity: k a week times its length in weeks."""
    days = (ref.performance[1] - ref.performance[0]).total_seconds() / 86400.0
    return max(1, round(rules.capacity_per_day * days))


def _threshold(manifest: Mapping[str, Any]) -> float:
    value = manifest.get("threshold")
    try:
        value = float(value) if value is not None else 0.5
    except (TypeError, ValueError):
        return 0.5
    return value if 0.0 < value < 1.0 else 0.5


def segment_weekly(con: duckdb.DuckDBPyConnection, model_id: str, segment: str,
                   report: MonitoringReport) -> pd.DataFrame:
    """The weekly performance table per value of `segment` (a column of `segment_columns`):
    recall and precision count the segment's rows in the whole week's top k."""
    return segment_weekly_at(con, model_id, segment, report.span, report.as_of, report.rules)


def segment_weekly_at(con: duckdb.DuckDBPyConnection, model_id: str, segment: str,
                      span: q.Span, as_of: pd.Timestamp, rules: MonitoringRules
                      ) -> pd.DataFrame:
    """`segment_weekly` for a report's window, label time and rules."""
    bins = q.score_bins(con, model_id, span, as_of, segment=segment)
    rows = []
    for week, wb in bins.groupby("week", sort=True):
        whole = wb.groupby("bin")["rows"].sum().sort_index(ascending=False)
        before = whole.cumsum() - whole
        share = ((rules.k_per_week - before) / whole).clip(0, 1)
        for value, sb in wb.groupby("segment", sort=True):
            k = float((sb.set_index("bin")["rows"] * share.reindex(sb["bin"]).to_numpy()).sum())
            seg_bins = sb.groupby("bin")[["rows", "fraud", "legit"]].sum().reset_index()
            intervals = ms.bootstrap_week(_binned(seg_bins), max(k, 0.0),
                                          n_resamples=rules.n_resamples,
                                          seed=_seed(rules, f"{week}|{value}"))
            fraud, labelled = int(sb["fraud"].sum()), int(sb["fraud"].sum() + sb["legit"].sum())
            n = int(sb["rows"].sum())
            rows.append({"segment": value, "week": pd.Timestamp(week).date(), "rows": n,
                         "labelled": labelled, "label_share": labelled / n if n else math.nan,
                         "fraud_known": fraud, "status": NOT_MEASURABLE if not labelled or
                         not fraud else "measured", **_metric_columns(intervals)})
    return pd.DataFrame(rows)


def acknowledgements(records: pd.DataFrame) -> dict[str, dict[str, str]]:
    """The newest acknowledgement per alert id from audit records (action ACK_ACTION): who,
    when (UTC) and the note."""
    out: dict[str, dict[str, str]] = {}
    if records is None or records.empty:
        return out
    import json

    for r in records.sort_values("seq").itertuples(index=False):
        try:
            details = json.loads(r.details)
        except (TypeError, ValueError):
            details = {}
        out[str(r.target)] = {"by": str(r.actor), "at": f"{pd.Timestamp(r.ts):%Y-%m-%d %H:%M} UTC",
                              "note": str(details.get("note", ""))}
    return out


def write_html_report(report: MonitoringReport, path: str | Path,
                      acks: Mapping[str, Mapping[str, str]] | None = None,
                      before_commit: BeforeCommit | None = None) -> ExportResult:
    """Write `report_html(report)` atomically; `before_commit` (the audit record) runs before
    the file appears."""
    data = report_html(report, acks).encode("utf-8")
    digest = atomic_write_bytes(path, data, before_commit)
    return ExportResult(str(Path(path).resolve()), digest, None, len(data))
