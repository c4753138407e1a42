"""The weekly pattern review, without Streamlit: mine a window of a model's cases into findings
(clusters of SHAP vectors with a readable rule, a backtest, amount at risk and week-over-week
change), and turn them into the tables and exports of the review (the HTML pack is drawn by
`app.views.review_pack`). No Streamlit, no SQL (`data_access.review_queries` reads the lake).

Cases are mined as two populations, each clustered on its own:
- `flagged`: the model scored them at or above its threshold — what the model is finding;
- `missed`: confirmed fraud (labelled 1) that it scored below the threshold — what it misses.
The threshold is the manifest's `threshold` when the model was registered with one, else
0.5 (`DEFAULT_THRESHOLD`, the probability the demo models are calibrated around).

SHAP values come from the store; cases it lacks are explained on demand with the same model.
The product never reads a ground-truth table: findings come from scores, labels and SHAP only.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from app.services.pattern_exports import (
    Written,
    csv_table,
    export_stem,
    members_table,
    mined_at_text,
    shap_summary_table,
    write_exports,
)
from data_access.findings import FINDING_COLUMNS, Backtest, backtests
from data_access.review_queries import (
    AMOUNT_COLUMN,
    Window,
    case_rows_of,
    feature_columns,
    last_full_week,
    other_rows,
    stored_shap_rows,
)
from explainers import clustering
from explainers.frames import explain_frame
from explainers.model import LoadedModel
from explainers.rules import Rule, RuleFrame, surrogate_rule

__all__ = [
    "DEFAULT_THRESHOLD",
    "MIN_FINDING_CASES",
    "POPULATIONS",
    "MiningResult",
    "Window",
    "Written",
    "csv_table",
    "export_stem",
    "findings_table",
    "last_full_week",
    "members_table",
    "mine",
    "mined_at_text",
    "model_threshold",
    "shap_summary_table",
    "write_exports",
]

DEFAULT_THRESHOLD = 0.5
POPULATIONS = ("flagged", "missed")
BACKGROUND_ROWS = 20_000
TOP_DRIVERS = 5
REPRESENTATIVES = 5
# A finding is a pattern only when it groups this many cases: a cluster of one or two is a
# case, not a pattern, and its rule and backtest say nothing. Smaller clusters are left out.
MIN_FINDING_CASES = 3
ExplainRows = Callable[[pd.DataFrame], np.ndarray]  # cases -> SHAP values, schema order
# Rules are fitted on this many threads (the tree fit runs without the GIL); each rule is
# seeded and fitted on its own, so the rules do not depend on the number of threads.
RULE_THREADS = max(1, min(4, os.cpu_count() or 1))


def model_threshold(extra: Mapping[str, Any] | None) -> float:
    """The manifest's `threshold` (a probability in (0, 1)) or DEFAULT_THRESHOLD."""
    value = (extra or {}).get("threshold")
    try:
        value = float(value) if value is not None else DEFAULT_THRESHOLD
    except (TypeError, ValueError):
        return DEFAULT_THRESHOLD
    return value if 0.0 < value < 1.0 else DEFAULT_THRESHOLD



# --------------------------------------------------------------------------- mining


def _case_shap(model: LoadedModel, cases: pd.DataFrame, stored: pd.DataFrame | None,
               explain_rows: ExplainRows | None = None) -> tuple[np.ndarray, int]:
    """SHAP rows for the cases (schema order): from the store (`stored`: stored rows by
    transaction_id, of these cases and maybe others), the rest explained now (by
    `explain_rows` when given, e.g. on a Ray cluster: same values, row for row)."""
    names = list(model.schema.names)
    values = pd.DataFrame(np.nan, index=cases["transaction_id"], columns=names)
    if stored is not None:
        got = stored[stored.index.isin(values.index)]
        values.loc[got.index, names] = got[names].to_numpy()
    todo = values.index[values.isna().any(axis=1)]
    if len(todo):
        frame = cases.set_index("transaction_id").loc[todo].reset_index()
        if explain_rows is not None:
            values.loc[todo, names] = np.asarray(explain_rows(frame), dtype=np.float64)
        else:
            expl = explain_frame(model, frame)
            values.loc[todo, names] = np.asarray(expl.values)[:, [
                list(expl.feature_names).index(n) for n in names]]
    return values.to_numpy(dtype=np.float64), len(todo)


@dataclass(frozen=True, eq=False)
class _Clusters:
    """One population of one window, clustered."""

    population: str
    cases: pd.DataFrame
    shap: np.ndarray
    clustering: clustering.Clustering
    ids: tuple[str, ...]


def _finding_id(model_id: str, window: Window, population: str, members: pd.Series) -> str:
    digest = hashlib.sha256(
        f"{model_id}|{window.since}|{window.until}|{population}|".encode()
        + "\n".join(sorted(members)).encode()).hexdigest()
    return "F" + digest[:10]

def _cluster_windows(con: duckdb.DuckDBPyConnection, model: LoadedModel,
                     windows: list[Window], threshold: float, seed: int, features: list[str],
                     say: Callable[[str], None], explain_rows: ExplainRows | None = None
                     ) -> list[tuple[dict[str, _Clusters], int]]:
    """Each window's populations clustered, and how many SHAP rows were computed for it: the
    cases of all the windows read in one scan, their stored SHAP rows in one more."""
    all_cases = case_rows_of(con, model.key, windows, threshold, features)
    stored = stored_shap_rows(con, model.key, list(model.schema.names),
                              [i for cases in all_cases for i in cases["transaction_id"]])
    out = []
    for i, (window, cases) in enumerate(zip(windows, all_cases, strict=True)):
        say(f"clustering cases of {window.text()}" + (" for the comparison" if i else ""))
        shap, computed = _case_shap(model, cases, stored, explain_rows)
        out.append((_cluster_cases(model, window, seed, cases, shap), computed))
    return out


def _cluster_cases(model: LoadedModel, window: Window, seed: int, cases: pd.DataFrame,
                   shap: np.ndarray) -> dict[str, _Clusters]:
    out = {}
    for population in POPULATIONS:
        rows = np.flatnonzero(cases["population"].to_numpy() == population)
        sub = cases.iloc[rows].reset_index(drop=True)
        values = shap[rows]
        clusters = clustering.cluster_shap(values, seed)
        ids = tuple(_finding_id(model.key, window, population,
                                sub["transaction_id"][clusters.labels == c])
                    for c in range(clusters.k))
        out[population] = _Clusters(population, sub, values, clusters, ids)
    return out

@dataclass(frozen=True, eq=False)
class MiningResult:
    """Findings of one window for one model, ready to show, store or export.

    `findings` is `findings_table`'s frame (current findings by amount at risk, then the ones
    gone since the previous window); `members` lists every case with its finding.
    """

    model_id: str
    window: Window
    previous: Window
    threshold: float
    seed: int
    findings: pd.DataFrame
    members: pd.DataFrame
    drift: pd.DataFrame
    counts: Mapping[str, int]


def _drivers_text(drivers: pd.DataFrame) -> str:
    return "; ".join(f"{f} {v:+.2f}" for f, v in
                     zip(drivers["feature"], drivers["mean_shap"], strict=True))


def _round(value: float, digits: int = 6) -> float:
    return round(float(value), digits) if value is not None and math.isfinite(value) else math.nan


def _records(frame: pd.DataFrame) -> str:
    """The frame as JSON records: floats rounded (non-finite ones as null), days as text.
    Built from plain Python lists (the frames are small; pandas per cell is the slow part)."""
    cols = list(frame.columns)
    values = []
    for col in cols:
        series = frame[col]
        if pd.api.types.is_float_dtype(series):
            values.append([_round(v) if math.isfinite(v) else None for v in series.to_numpy()])
        elif col == "day":
            values.append(series.astype(str).tolist())
        else:
            values.append(series.tolist())
    return json.dumps([dict(zip(cols, row, strict=True)) for row in zip(*values, strict=True)],
                      sort_keys=True, allow_nan=False)


def mine(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window, *, seed: int = 7,
         threshold: float | None = None, background_rows: int = BACKGROUND_ROWS,
         progress: Callable[[str], None] | None = None,
         explain_rows: ExplainRows | None = None) -> MiningResult:
    """Mine a window's cases into findings and compare them with the window before.
    `explain_rows(frame)` explains the cases the store lacks (schema order), e.g. on a Ray
    cluster (`fraudlens patterns --engine ray`); clustering always runs here."""
    cur = con.cursor()  # a private cursor: the caller's connection may be shared
    try:
        return _mine(cur, model, window, seed, threshold, background_rows,
                     progress or (lambda _msg: None), explain_rows)
    finally:
        cur.close()



@dataclass(frozen=True, eq=False)
class _RuleData:
    """What every finding's surrogate rule is fitted and backtested on."""

    all_cases: pd.DataFrame
    background: pd.DataFrame
    fit_frame: RuleFrame
    weight: np.ndarray
    features: list[str]


def _gone_finding(prev: _Clusters, previous: int, size_before: int, population: str,
                  names: list[str]) -> dict[str, Any]:
    drivers = clustering.drivers(prev.shap[prev.clustering.labels == previous], names)
    return {"finding_id": prev.ids[previous], "population": population, "change": "gone",
            "cases_previous_week": size_before, "drivers": drivers.head(TOP_DRIVERS)}


def _drift_text(drift: pd.DataFrame | None) -> str:
    if drift is None:
        return ""
    return "; ".join(f"{f} {v:+.2f}" for f, v in zip(drift["feature"].head(3),
                                                      drift["change_mean_abs_shap"].head(3),
                                                      strict=True))


def _finding_rule(model: LoadedModel, seed: int, cur: _Clusters, c: int,
                  data: _RuleData) -> Rule:
    """The surrogate rule that picks cluster `c`'s cases out of the window."""
    sub = cur.cases[cur.clustering.labels == c]
    target = np.concatenate([
        data.all_cases["transaction_id"].isin(sub["transaction_id"]).to_numpy(),
        np.zeros(len(data.background), dtype=bool)])
    return surrogate_rule(data.fit_frame, target, model.schema, seed=seed,
                          weights=data.weight)


def _current_finding(model: LoadedModel, cur: _Clusters, prev: _Clusters, m: Any,
                     reps: list[Any], dist: np.ndarray, rule: Rule,
                     bt: Backtest) -> tuple[dict[str, Any], pd.DataFrame]:
    """One current finding's row (findings_table's columns) and its members."""
    names = list(model.schema.names)
    c = m.current
    in_c = cur.clustering.labels == c
    sub = cur.cases[in_c]
    fid = cur.ids[c]
    drivers = clustering.drivers(cur.shap[in_c], names)
    drift = None
    if m.previous is not None:
        drift = clustering.attribution_drift(
            cur.shap[in_c], prev.shap[prev.clustering.labels == m.previous], names)
    labelled = int(sub["is_fraud"].notna().sum())
    fraud = int((sub["is_fraud"] == 1).sum())
    rep_ids = cur.cases["transaction_id"].to_numpy()[reps[c]]
    row = {
        "finding_id": fid, "population": cur.population, "change": m.change,
        "cases": int(in_c.sum()), "labelled": labelled, "confirmed_fraud": fraud,
        "confirmed_fraud_rate": fraud / labelled if labelled else math.nan,
        "amount_at_risk_usd": float(sub[AMOUNT_COLUMN].sum(min_count=1)),
        "mean_score": float(sub["score"].mean()),
        "top_drivers": _drivers_text(drivers.head(TOP_DRIVERS)),
        "rule": rule.text, "rule_alerts_in_window": bt.window_alerts,
        "backtest_since": bt.since.isoformat(), "backtest_alerts": bt.alerts,
        "backtest_alerts_per_day": bt.alerts_per_day,
        "backtest_precision": bt.precision, "backtest_recall": bt.recall,
        "previous_finding_id": prev.ids[m.previous] if m.previous is not None else None,
        "similarity": m.similarity if m.similarity is not None else math.nan,
        "cases_previous_week": m.size_before,
        "top_drift": _drift_text(drift),
        "representative_cases": " ".join(rep_ids),
        "rule_json": rule.to_json(), "drivers_json": _records(drivers),
        "backtest_daily_json": _records(bt.daily[["day", "alerts", "labelled_alerts",
                                                  "fraud_alerts", "fraud"]]),
        "drift_json": "[]" if drift is None else _records(drift),
    }
    members = pd.DataFrame({
        "finding_id": fid, "transaction_id": sub["transaction_id"].to_numpy(),
        "distance": np.round(dist[in_c], 6),
        "representative": sub["transaction_id"].isin(rep_ids).to_numpy()})
    return row, members


def _rule_data(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window,
               threshold: float, features: list[str], now: dict[str, _Clusters],
               background_rows: int, seed: int) -> tuple[_RuleData, int]:
    """Cases and a weighted background sample to fit rules on; and the background's size."""
    background, background_total = other_rows(con, model.key, window, threshold, features,
                                              background_rows, seed)
    all_cases = pd.concat([now[p].cases for p in POPULATIONS], ignore_index=True)
    fit_frame = pd.concat([all_cases[["transaction_id", *features]],
                           background[["transaction_id", *features]]], ignore_index=True)
    weight = np.concatenate([np.ones(len(all_cases)), np.full(
        len(background), background_total / len(background) if len(background) else 0.0)])
    return _RuleData(all_cases, background, RuleFrame(fit_frame, model.schema), weight,
                     features), background_total


def _map(fn: Callable[[Any], Any], items: list[Any], threads: int) -> list[Any]:
    """[fn(item) for item in items], on up to `threads` threads; results in order."""
    if threads <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items)),
                            thread_name_prefix="fraudlens-rules") as pool:
        return list(pool.map(fn, items))


def _member_frame(members: list[pd.DataFrame]) -> pd.DataFrame:
    frame = (pd.concat(members, ignore_index=True) if members else pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in (("finding_id", object), ("transaction_id", object),
                                            ("distance", float), ("representative", bool))}))
    return frame.sort_values(["finding_id", "transaction_id"],
                             kind="mergesort").reset_index(drop=True)


def _mine(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window, seed: int,
          threshold: float | None, background_rows: int,
          say: Callable[[str], None], explain_rows: ExplainRows | None = None
          ) -> MiningResult:
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    features = feature_columns(con, model.schema.names)
    names = list(model.schema.names)
    (now, computed), (before, computed_before) = _cluster_windows(
        con, model, [window, window.previous()], threshold, seed, features, say, explain_rows)
    say("fitting a rule per finding and backtesting it")
    data, background_total = _rule_data(con, model, window, threshold, features, now,
                                        background_rows, seed)
    rows: list[dict[str, Any]] = []
    members: list[pd.DataFrame] = []
    gone: list[dict[str, Any]] = []
    todo: list[tuple[_Clusters, _Clusters, Any, list[Any], np.ndarray]] = []
    for population in POPULATIONS:
        cur, prev = now[population], before[population]
        cl, pcl = cur.clustering, prev.clustering
        matches = clustering.match_weeks(cl.centroids, cl.sizes(), pcl.centroids, pcl.sizes())
        reps = clustering.representatives(cur.shap, cl.labels, cl.centroids, REPRESENTATIVES)
        dist = clustering.distances(cur.shap, cl.labels, cl.centroids) if cl.k else np.zeros(0)
        for m in matches:
            if m.current is None:
                gone.append(_gone_finding(prev, m.previous, m.size_before, population, names))
                continue
            if cl.sizes()[m.current] < MIN_FINDING_CASES:
                continue
            todo.append((cur, prev, m, reps, dist))
    found_rules = _map(lambda job: _finding_rule(model, seed, job[0], job[2].current, data),
                       todo, RULE_THREADS)
    # every rule replayed in one scan of the backtest span
    replays = backtests(con, [rule.conditions for rule in found_rules], data.features,
                        window.since, window.until)
    for (cur, prev, m, reps, dist), rule, bt in zip(todo, found_rules, replays, strict=True):
        row, found = _current_finding(model, cur, prev, m, reps, dist, rule, bt)
        rows.append(row)
        members.append(found)
    table = findings_table(rows, gone, model.key, window, threshold, seed)
    counts = {f"{p}_cases": len(now[p].cases) for p in POPULATIONS}
    counts.update({f"{p}_cases_previous": len(before[p].cases) for p in POPULATIONS})
    counts.update({"shap_computed": computed + computed_before,
                   "background_rows": len(data.background),
                   "background_total": background_total})
    drift = clustering.attribution_drift(now["flagged"].shap, before["flagged"].shap, names)
    return MiningResult(model.key, window, window.previous(), threshold, seed, table,
                        _member_frame(members), drift, counts)


def findings_table(rows: list[dict[str, Any]], gone: list[dict[str, Any]], model_id: str,
                   window: Window, threshold: float, seed: int) -> pd.DataFrame:
    """Current findings by amount at risk (then size, id), ranked from 1; then the findings
    of the previous window that have no counterpart now (change `gone`, 0 cases)."""
    current = sorted(rows, key=lambda r: (-np.nan_to_num(r["amount_at_risk_usd"]), -r["cases"],
                                          r["finding_id"]))
    out = []
    for rank, r in enumerate(current, start=1):
        out.append({**r, "rank": rank})
    for rank, g in enumerate(sorted(gone, key=lambda g: (-g["cases_previous_week"],
                                                         g["finding_id"])),
                             start=len(current) + 1):
        out.append({
            "finding_id": g["finding_id"], "rank": rank, "population": g["population"],
            "change": "gone", "cases": 0, "labelled": 0, "confirmed_fraud": 0,
            "confirmed_fraud_rate": math.nan, "amount_at_risk_usd": 0.0,
            "mean_score": math.nan, "top_drivers": _drivers_text(g["drivers"]), "rule": "",
            "rule_alerts_in_window": 0, "backtest_since": "", "backtest_alerts": 0,
            "backtest_alerts_per_day": math.nan, "backtest_precision": math.nan,
            "backtest_recall": math.nan, "previous_finding_id": g["finding_id"],
            "similarity": math.nan, "cases_previous_week": g["cases_previous_week"],
            "top_drift": "", "representative_cases": "", "rule_json": "[]",
            "drivers_json": _records(g["drivers"]), "backtest_daily_json": "[]",
            "drift_json": "[]"})
    frame = pd.DataFrame(out, columns=[c for c in FINDING_COLUMNS])
    frame["model"] = model_id
    frame["window_start"] = window.since.isoformat()
    frame["window_end"] = window.until.isoformat()
    frame["threshold"] = float(threshold)
    frame["seed"] = int(seed)
    for col, sql_type in FINDING_COLUMNS.items():
        if sql_type == "INTEGER":
            frame[col] = frame[col].astype("int64")
        elif sql_type == "DOUBLE":
            frame[col] = frame[col].astype("float64").map(_round)
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame

# --------------------------------------------------------------------------- exports
