"""Experiments, the ML engineer's check after shipping: treatment against control on matured
labels, in model metrics and in money, with the sample-ratio check and how model metrics and
business metrics move together week by week. No Streamlit, no SQL (`data_access.assignments`),
no drawing (`app.views.experiment_report`).

A report is computed once per experiment, lake data version and settings, and kept (JSON and
Parquet) under `<workspace>/.cache/experiments/` (`cached_report`), which the page, the
command and `fraudlens precompute` share; the page shows an older data version's report
(`kept`) while the current one is not computed yet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from data_access import assignments as queries
from data_access import report_cache
from data_access.holdout import labels_as_of
from explainers import experiment_stats as xs
from explainers.classifier_stats import ClassifierStats, classifier_stats
from explainers.comparison_stats import week_start
from explainers.errors import ValidationError

__all__ = ["ArmInfo", "ExperimentReport", "ExperimentSettings", "build_report", "cached_report",
           "experiment_names", "keep_report", "kept", "kept_parts", "report_from_dict",
           "report_to_dict"]

NOT_MEASURABLE = "not yet measurable"


@dataclass(frozen=True)
class ExperimentSettings:
    as_of: date | None = None  # labels known by the end of this day (UTC); None: newest label
    maturity_days: int = 30  # as in Model Comparison: younger transactions are left out
    review_cost: float = 5.0  # USD per review
    n_resamples: int = 200
    seed: int = 7


@dataclass(frozen=True)
class ArmInfo:
    """One arm: its model and threshold, units assigned and seen, rows judged."""

    arm: str
    model: str
    threshold: float
    units_assigned: int
    units_seen: int
    rows: int  # transactions in the window
    matured_rows: int  # matured, labelled and scored: what the metrics use
    fraud: int
    status: str  # "measured" or NOT_MEASURABLE

    @property
    def measurable(self) -> bool:
        return self.status == "measured"


@dataclass(frozen=True)
class ExperimentReport:
    name: str
    data_version: str
    settings: ExperimentSettings
    as_of: pd.Timestamp
    mature_until: pd.Timestamp
    start: pd.Timestamp
    end: pd.Timestamp
    control: str
    arms: tuple[ArmInfo, ...]
    stats: pd.DataFrame = field(repr=False, compare=False)  # ExperimentStats.frame()
    srm: xs.SrmCheck | None
    weekly: pd.DataFrame = field(repr=False, compare=False)  # every experiment, arm and week
    correlations: tuple[xs.Correlation, ...]
    classifier: tuple[ClassifierStats, ...]
    warnings: tuple[str, ...]
    created_at: str

    def arm(self, name: str) -> ArmInfo:
        return next(a for a in self.arms if a.arm == name)

    def estimate(self, arm: str, metric: str, versus: str = "") -> xs.MetricInterval:
        hit = self.stats[(self.stats["arm"] == arm) & (self.stats["metric"] == metric)
                         & (self.stats["versus"] == versus)]
        if hit.empty:
            raise KeyError((arm, metric, versus))
        r = hit.iloc[0]
        return xs.MetricInterval(metric, arm, float(r["estimate"]), float(r["ci_low"]),
                                 float(r["ci_high"]), versus)


def experiment_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    return queries.experiment_names(con)


def _as_of(con: duckdb.DuckDBPyConnection, chosen: date | None) -> pd.Timestamp:
    return labels_as_of(con, chosen, "no experiment can be measured")


def _matured(rows: pd.DataFrame, mature_until: pd.Timestamp) -> np.ndarray:
    return ((rows["event_time"] <= mature_until) & rows["is_fraud"].notna()
            & rows["score"].notna()).to_numpy()


def _arm_rows(rows: pd.DataFrame, window: pd.Series, accounts: pd.Index) -> xs.ArmRows:
    return xs.ArmRows(arm=str(window["arm"]), model=str(window["model"]),
                      threshold=float(window["threshold"]),
                      account=accounts.get_indexer(rows["account_id"]),
                      y=rows["is_fraud"].to_numpy(dtype=int),
                      score=rows["score"].to_numpy(dtype=float),
                      amount=rows["amount_usd"].to_numpy(dtype=float))


def _units_seen(rows: pd.DataFrame, unit_type: str) -> int:
    col = "account_id" if unit_type == "account" else "transaction_id"
    return int(rows[col].nunique())


def _weekly(con: duckdb.DuckDBPyConnection, as_of: pd.Timestamp, mature_until: pd.Timestamp,
            settings: ExperimentSettings, read: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Model and business metrics per experiment, arm and week (matured rows only); `read`
    holds experiments whose rows are already in hand."""
    out = []
    for name in queries.experiment_names(con):
        rows = read[name] if name in read else queries.experiment_rows(con, name, as_of)
        rows = rows[_matured(rows, mature_until)]
        if rows.empty:
            continue
        rows = rows.assign(week=week_start(rows["event_time"]))
        for (arm, week), part in rows.groupby(["arm", "week"], sort=True):
            accounts = pd.Index(part["account_id"].unique())
            window = part.iloc[0]
            m = xs.point_metrics(_arm_rows(part, window, accounts),
                                 part["event_time"].dt.floor("D").nunique(), settings.review_cost)
            out.append({"experiment": name, "arm": arm, "week": week, "rows": len(part),
                        "fraud": int(part["is_fraud"].sum()), "roc_auc": m["roc_auc"],
                        "recall_at_threshold": m["recall_at_threshold"],
                        "fraud_loss_per_1k": m["fraud_loss_per_1k"],
                        "friction_rate": m["friction_rate"],
                        "reviews_per_1k": m["reviews_per_1k"]})
    columns = ["experiment", "arm", "week", "rows", "fraud", "roc_auc", "recall_at_threshold",
               "fraud_loss_per_1k", "friction_rate", "reviews_per_1k"]
    return pd.DataFrame(out, columns=columns)


def _correlations(weekly: pd.DataFrame, settings: ExperimentSettings
                  ) -> tuple[xs.Correlation, ...]:
    pairs = (("recall_at_threshold", "fraud_loss_per_1k"), ("roc_auc", "fraud_loss_per_1k"),
             ("recall_at_threshold", "friction_rate"))
    return tuple(xs.bootstrap_correlation(weekly[a].to_numpy(float), weekly[b].to_numpy(float),
                                          x_name=a, y_name=b, n_resamples=settings.n_resamples,
                                          seed=settings.seed) for a, b in pairs)


def _arms(rows: pd.DataFrame, windows: pd.DataFrame, matured: np.ndarray
          ) -> tuple[list[ArmInfo], list[xs.ArmRows]]:
    judged = rows[matured]
    accounts = pd.Index(judged["account_id"].unique())
    infos, arm_rows = [], []
    for _, w in windows.iterrows():
        mine = rows[rows["arm"] == w["arm"]]
        part = judged[judged["arm"] == w["arm"]]
        fraud = int(part["is_fraud"].sum())
        status = "measured" if len(part) and fraud and fraud < len(part) else NOT_MEASURABLE
        infos.append(ArmInfo(str(w["arm"]), str(w["model"]), float(w["threshold"]),
                             int(w["units"]), _units_seen(mine, str(w["unit_type"])),
                             len(mine), len(part), fraud, status))
        if status == "measured":
            arm_rows.append(_arm_rows(part, w, accounts))
    return infos, arm_rows


def build_report(con: duckdb.DuckDBPyConnection, name: str, settings: ExperimentSettings, *,
                 data_version: str = "", progress: Callable[[str], None] | None = None
                 ) -> ExperimentReport:
    """Measure experiment `name` on matured labels (see the module docstring)."""
    say = progress or (lambda _msg: None)
    windows = queries.experiment_windows(con)
    windows = windows[windows["experiment"] == name].reset_index(drop=True)
    if windows.empty:
        known = ", ".join(queries.experiment_names(con)) or "none"
        raise ValidationError(f"There is no experiment {name!r}; imported: {known}")
    as_of = _as_of(con, settings.as_of)
    mature_until = as_of - pd.Timedelta(days=settings.maturity_days)
    say(f"reading the rows of {name}")
    rows = queries.experiment_rows(con, name, as_of)
    matured = _matured(rows, mature_until)
    infos, arm_rows = _arms(rows, windows, matured)
    names = [a.arm for a in infos]
    control = "control" if "control" in names else names[0]
    warnings = [f"{a.arm}: {NOT_MEASURABLE} — no matured labels with fraud and legitimate "
                f"cases yet (labels mature {settings.maturity_days} days after the event)"
                for a in infos if not a.measurable]
    stats = pd.DataFrame(columns=["arm", "versus", "metric", "label", "estimate", "ci_low",
                                  "ci_high"])
    if arm_rows:
        say(f"bootstrap: {settings.n_resamples} resamples of accounts")
        days = int(rows.loc[matured, "event_time"].dt.floor("D").nunique())
        measured_control = control if any(a.arm == control for a in arm_rows) else arm_rows[0].arm
        stats = xs.arm_statistics(
            arm_rows, control=measured_control,
            n_accounts=int(rows.loc[matured, "account_id"].nunique()), days=days,
            review_cost=settings.review_cost, n_resamples=settings.n_resamples,
            seed=settings.seed).frame()
    srm = xs.srm_check({a.arm: a.units_seen for a in infos}) if len(infos) > 1 else None
    if srm is not None and srm.mismatch:
        warnings.append(f"Sample-ratio mismatch: units seen per arm {dict(srm.observed)} do not "
                        f"fit the intended split (chi-square p = {srm.p_value:.2g}); the "
                        "assignment or its logging is broken, so differences are not "
                        "trustworthy.")
    say("weekly metrics across all experiments")
    weekly = _weekly(con, as_of, mature_until, settings, {name: rows})
    classifier = tuple(classifier_stats(a.arm, a.y, a.score, a.amount) for a in arm_rows)
    return ExperimentReport(
        name=name, data_version=data_version, settings=settings, as_of=as_of,
        mature_until=mature_until, start=windows["start"].min(), end=windows["end"].max(),
        control=control, arms=tuple(infos), stats=stats, srm=srm, weekly=weekly,
        correlations=_correlations(weekly, settings), classifier=classifier,
        warnings=tuple(warnings), created_at=datetime.now(UTC).isoformat(timespec="seconds"))


# --------------------------------------------------------------------------- JSON


def _frame_out(frame: pd.DataFrame) -> dict[str, Any]:
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].map(lambda t: t.isoformat() if pd.notna(t) else None)
    return {"columns": list(out.columns), "data": out.astype(object).where(out.notna(), None)
            .to_numpy().tolist()}


def _frame_in(data: dict[str, Any], times: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame(data["data"], columns=data["columns"])
    for col in frame.columns:
        if col in times:
            frame[col] = pd.to_datetime(frame[col], utc=True)
        elif col not in ("arm", "versus", "metric", "label", "experiment"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def report_to_dict(report: ExperimentReport) -> dict[str, Any]:
    """The report as JSON-ready data (no pickle, frames as columns and rows)."""
    return {
        "name": report.name, "data_version": report.data_version,
        "settings": {**dataclasses.asdict(report.settings),
                     "as_of": report.settings.as_of.isoformat() if report.settings.as_of
                     else None},
        "as_of": report.as_of.isoformat(), "mature_until": report.mature_until.isoformat(),
        "start": report.start.isoformat(), "end": report.end.isoformat(),
        "control": report.control, "arms": [dataclasses.asdict(a) for a in report.arms],
        "stats": _frame_out(report.stats),
        "srm": dataclasses.asdict(report.srm) if report.srm else None,
        "weekly": _frame_out(report.weekly),
        "correlations": [dataclasses.asdict(c) for c in report.correlations],
        "classifier": [{"model_id": c.model_id, "rows": c.rows, "fraud": c.fraud,
                        "roc_auc": c.roc_auc, "pr_auc": c.pr_auc,
                        "table": _frame_out(c.table), "deciles": _frame_out(c.deciles)}
                       for c in report.classifier],
        "warnings": list(report.warnings), "created_at": report.created_at}


def report_from_dict(data: dict[str, Any]) -> ExperimentReport:
    s = dict(data["settings"])
    s["as_of"] = date.fromisoformat(s["as_of"]) if s.get("as_of") else None
    srm = data.get("srm")
    return ExperimentReport(
        name=data["name"], data_version=data["data_version"],
        settings=ExperimentSettings(**s), as_of=pd.Timestamp(data["as_of"]),
        mature_until=pd.Timestamp(data["mature_until"]), start=pd.Timestamp(data["start"]),
        end=pd.Timestamp(data["end"]), control=data["control"],
        arms=tuple(ArmInfo(**a) for a in data["arms"]),
        stats=_frame_in(data["stats"]),
        srm=xs.SrmCheck(tuple(tuple(o) for o in srm["observed"]),
                        tuple(tuple(e) for e in srm["expected_share"]), srm["chi2"],
                        srm["p_value"], srm["alpha"]) if srm else None,
        weekly=_frame_in(data["weekly"], ("week",)),
        correlations=tuple(xs.Correlation(**c) for c in data["correlations"]),
        classifier=tuple(ClassifierStats(c["model_id"], c["rows"], c["fraud"], c["roc_auc"],
                                         c["pr_auc"], _frame_in(c["table"]),
                                         _frame_in(c["deciles"]))
                         for c in data["classifier"]),
        warnings=tuple(data["warnings"]), created_at=data["created_at"])


KEPT_KIND = "experiments"


def kept_parts(name: str, settings: ExperimentSettings) -> tuple[object, ...]:
    """What a kept report is keyed by besides the lake's data version: the experiment and
    the settings (the page, `fraudlens experiment` and `fraudlens precompute` share it)."""
    return (name, dataclasses.astuple(settings))


def kept(workspace: str | Path, name: str, data_version: str, settings: ExperimentSettings
         ) -> report_cache.Kept | None:
    """The report kept for this data version, else the newest one kept for earlier data
    (`current` False), else None. Never computes."""
    return report_cache.read_newest(workspace, KEPT_KIND, kept_parts(name, settings),
                                    ExperimentReport, data_version)


def keep_report(workspace: str | Path, report: ExperimentReport) -> bool:
    """Keep `report` for its experiment, data version and settings."""
    return report_cache.keep(workspace, KEPT_KIND, kept_parts(report.name, report.settings),
                             report.data_version, report)


def cached_report(con: duckdb.DuckDBPyConnection, workspace: str | Path, name: str,
                  data_version: str, settings: ExperimentSettings, *,
                  progress: Callable[[str], None] | None = None) -> ExperimentReport:
    """The report kept for (experiment, data version, settings), computed and kept first
    when there is none."""
    found = report_cache.read_kept(workspace, KEPT_KIND, kept_parts(name, settings),
                                   data_version, ExperimentReport)
    if found is not None:
        return found.result
    report = build_report(con, name, settings, data_version=data_version, progress=progress)
    keep_report(workspace, report)
    return report
