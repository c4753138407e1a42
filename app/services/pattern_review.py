"""The weekly pattern review, without Streamlit: mine a window of a model's cases into findings
(clusters of SHAP vectors with a readable rule, a backtest, amount at risk and week-over-week
change), and turn them into the tables and the HTML pack the review exports.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import altair as alt
import duckdb
import numpy as np
import pandas as pd

from app.views.html_report import Chart, Note, Section, render_html
from data_access import findings as store
from data_access.exports import BeforeCommit, ExportResult, atomic_write_bytes, write_csv
from data_access.shap_store import stored_table
from data_access.warehouse import fetch_df, quote_ident, table_columns
from explainers import clustering
from explainers.errors import ValidationError
from explainers.model import LoadedModel

__all__ = [
    "DEFAULT_THRESHOLD",
    "POPULATIONS",
    "MiningResult",
    "Window",
    "Written",
    "backtest_chart",
    "csv_table",
    "drivers_chart",
    "findings_table",
    "last_full_week",
    "members_table",
    "mine",
    "mined_at_text",
    "model_threshold",
    "pct",
    "review_pack_html",
    "shap_summary_table",
    "usd",
    "write_exports",
]

DEFAULT_THRESHOLD = 0.5
POPULATIONS = ("flagged", "missed")
AMOUNT_COLUMN = "amount_usd"
BACKGROUND_ROWS = 20_000
TOP_DRIVERS = 5
REPRESENTATIVES = 5
JSON_COLUMNS = ("rule_json", "drivers_json", "backtest_daily_json", "drift_json")
POPULATION_TEXT = {
    "flagged": "scored at or above the threshold",
    "missed": "confirmed fraud scored below the threshold",
}


@dataclass(frozen=True)
class Window:
    """Event dates [since, until): `until` is the first day left out (UTC)."""

    since: date
    until: date

    def __post_init__(self) -> None:
        if self.until <= self.since:
            raise ValidationError(f"The window must end after it starts ({self.since} to "
                                  f"{self.until}); --until is the first day left out")

    @property
    def days(self) -> int:
        return (self.until - self.since).days

    def previous(self) -> Window:
        """The window of the same length just before this one."""
        return Window(self.since - timedelta(days=self.days), self.since)

    def text(self) -> str:
        return f"{self.since:%Y-%m-%d} to {self.until - timedelta(days=1):%Y-%m-%d}"


def model_threshold(extra: Mapping[str, Any] | None) -> float:
    """The manifest's `threshold` (a probability in (0, 1)) or DEFAULT_THRESHOLD."""
    value = (extra or {}).get("threshold")
    try:
        value = float(value) if value is not None else DEFAULT_THRESHOLD
    except (TypeError, ValueError):
        return DEFAULT_THRESHOLD
    return value if 0.0 < value < 1.0 else DEFAULT_THRESHOLD


def last_full_week(con: duckdb.DuckDBPyConnection) -> Window | None:
    """The newest Monday-to-Sunday week (UTC) that lies wholly before the last transaction's
    day ends and has at least one labelled transaction; None for an empty warehouse."""
    weeks = fetch_df(
        con,
        "SELECT CAST(date_trunc('week', timezone('UTC', t.event_time)) AS DATE) AS week, "
        "count(l.transaction_id) AS labelled, "
        "max(CAST(timezone('UTC', t.event_time) AS DATE)) AS last_day "
        "FROM transactions t LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
        "GROUP BY 1 ORDER BY 1")
    if weeks.empty:
        return None
    last_day = pd.Timestamp(weeks["last_day"].max()).date()
    for week, labelled in zip(weeks["week"][::-1], weeks["labelled"][::-1], strict=True):
        start = pd.Timestamp(week).date()
        if start + timedelta(days=6) <= last_day and labelled > 0:
            return Window(start, start + timedelta(days=7))
    start = pd.Timestamp(weeks["week"].iloc[-1]).date()
    return Window(start, start + timedelta(days=7))


# --------------------------------------------------------------------------- data


def _feature_columns(con: duckdb.DuckDBPyConnection, model: LoadedModel) -> list[str]:
    present = table_columns(con, "transactions")
    missing = [n for n in model.schema.names if n not in present]
    if missing:
        raise ValidationError("The warehouse's transactions lack model feature column(s): "
                              + ", ".join(missing))
    return list(model.schema.names)


def _ts(day: date) -> pd.Timestamp:
    return pd.Timestamp(day).tz_localize("UTC")


_CASE_FROM = ("FROM transactions t JOIN scores sc ON sc.transaction_id = t.transaction_id "
              "AND sc.model_id = ? LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
              "WHERE t.event_time >= ? AND t.event_time < ?")
_IS_CASE = "(sc.score >= ? OR coalesce(l.is_fraud, 0) = 1)"


def _cases(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window,
           threshold: float, features: list[str]) -> pd.DataFrame:
    """Flagged and missed cases of a window with score, label, amount and raw features."""
    cols = [c for c in features if c != AMOUNT_COLUMN]
    amount = (f"t.{quote_ident(AMOUNT_COLUMN)}" if AMOUNT_COLUMN in
              table_columns(con, "transactions") else "CAST(NULL AS DOUBLE)")
    feature_sql = "".join(f", t.{quote_ident(c)}" for c in cols)
    frame = fetch_df(
        con,
        f"SELECT t.transaction_id, sc.score, l.is_fraud, {amount} AS {AMOUNT_COLUMN}"
        f"{feature_sql} {_CASE_FROM} AND {_IS_CASE} ORDER BY t.transaction_id",
        [model.key, _ts(window.since), _ts(window.until), threshold])
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    frame["population"] = np.where(frame["score"] >= threshold, "flagged", "missed")
    return frame


def _background(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window,
                threshold: float, features: list[str], rows: int,
                seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded sample of the window's other transactions (not cases), and how many there are."""
    params = [model.key, _ts(window.since), _ts(window.until), threshold]
    total = fetch_df(con, f"SELECT count(*) AS n {_CASE_FROM} AND NOT {_IS_CASE}",
                     params)["n"].iloc[0]
    cols = "".join(f", t.{quote_ident(c)}" for c in features)
    sample = fetch_df(
        con,
        f"SELECT t.transaction_id{cols} {_CASE_FROM} AND NOT {_IS_CASE} "
        "ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
        [*params, str(seed), int(rows)])
    return sample, int(total)


def _case_shap(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window,
               threshold: float, cases: pd.DataFrame) -> tuple[np.ndarray, int]:
    """SHAP rows for the cases (schema order): from the store, the rest explained now."""
    names = list(model.schema.names)
    values = pd.DataFrame(np.nan, index=cases["transaction_id"], columns=names)
    stored = stored_table(con, model.key)
    if stored is not None:
        table, store_names = stored
        if list(store_names) == names:
            cols = ", ".join(f"s.{quote_ident(n)}" for n in names)
            got = fetch_df(
                con,
                f"SELECT s.transaction_id, {cols} FROM {quote_ident(table)} s "
                "JOIN transactions t ON t.transaction_id = s.transaction_id "
                "JOIN scores sc ON sc.transaction_id = s.transaction_id AND sc.model_id = ? "
                "LEFT JOIN labels l ON l.transaction_id = s.transaction_id "
                f"WHERE t.event_time >= ? AND t.event_time < ? AND {_IS_CASE}",
                [model.key, _ts(window.since), _ts(window.until), threshold])
            got["transaction_id"] = got["transaction_id"].astype(str)
            got = got.set_index("transaction_id")
            values.loc[got.index, names] = got[names].to_numpy()
    todo = values.index[values.isna().any(axis=1)]
    if len(todo):
        from explainers.frames import explain_frame

        frame = cases.set_index("transaction_id").loc[todo].reset_index()
        expl = explain_frame(model, frame)
        values.loc[todo, names] = np.asarray(expl.values)[:, [
            list(expl.feature_names).index(n) for n in names]]
    return values.to_numpy(dtype=np.float64), len(todo)


# --------------------------------------------------------------------------- mining


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


def _cluster_window(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window,
                    threshold: float, seed: int, features: list[str]
                    ) -> tuple[dict[str, _Clusters], int]:
    cases = _cases(con, model, window, threshold, features)
    shap, computed = _case_shap(con, model, window, threshold, cases)
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
    return out, computed


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
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].map(lambda v: _round(v) if math.isfinite(v) else None)
        elif col == "day":
            out[col] = out[col].astype(str)
    return json.dumps(out.to_dict(orient="records"), sort_keys=True, allow_nan=False)


def mine(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window, *, seed: int = 7,
         threshold: float | None = None, background_rows: int = BACKGROUND_ROWS,
         progress: Callable[[str], None] | None = None) -> MiningResult:
    """Mine a window's cases into findings and compare them with the window before."""
    cur = con.cursor()  # a private cursor: the caller's connection may be shared
    try:
        return _mine(cur, model, window, seed, threshold, background_rows,
                     progress or (lambda _msg: None))
    finally:
        cur.close()


def _mine(con: duckdb.DuckDBPyConnection, model: LoadedModel, window: Window, seed: int,
          threshold: float | None, background_rows: int,
          say: Callable[[str], None]) -> MiningResult:
    threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    features = _feature_columns(con, model)
    names = list(model.schema.names)
    say(f"clustering cases of {window.text()}")
    now, computed = _cluster_window(con, model, window, threshold, seed, features)
    say(f"clustering cases of {window.previous().text()} for the comparison")
    before, computed_before = _cluster_window(con, model, window.previous(), threshold, seed,
                                              features)
    say("fitting a rule per finding and backtesting it")
    background, background_total = _background(con, model, window, threshold, features,
                                               background_rows, seed)
    all_cases = pd.concat([now[p].cases for p in POPULATIONS], ignore_index=True)
    fit_frame = pd.concat([all_cases[["transaction_id", *features]],
                           background[["transaction_id", *features]]], ignore_index=True)
    weight = np.concatenate([np.ones(len(all_cases)), np.full(
        len(background), background_total / len(background) if len(background) else 0.0)])

    rows: list[dict[str, Any]] = []
    members: list[pd.DataFrame] = []
    gone: list[dict[str, Any]] = []
    for population in POPULATIONS:
        cur, prev = now[population], before[population]
        cl, pcl = cur.clustering, prev.clustering
        matches = clustering.match_weeks(cl.centroids, cl.sizes(), pcl.centroids, pcl.sizes())
        reps = clustering.representatives(cur.shap, cl.labels, cl.centroids, REPRESENTATIVES)
        dist = clustering.distances(cur.shap, cl.labels, cl.centroids) if cl.k else np.zeros(0)
        for m in matches:
            if m.current is None:
                prev_rows = pcl.labels == m.previous
                drivers = clustering.drivers(prev.shap[prev_rows], names)
                gone.append({"finding_id": prev.ids[m.previous], "population": population,
                             "change": "gone", "cases_previous_week": m.size_before,
                             "drivers": drivers.head(TOP_DRIVERS)})
                continue
            c = m.current
            in_c = cl.labels == c
            sub = cur.cases[in_c]
            fid = cur.ids[c]
            target = np.concatenate([
                all_cases["transaction_id"].isin(sub["transaction_id"]).to_numpy(),
                np.zeros(len(background), dtype=bool)])
            rule = clustering.surrogate_rule(fit_frame, target, model.schema, seed=seed,
                                           weights=weight)
            bt = store.backtest(con, rule.conditions, features, window.since, window.until)
            drivers = clustering.drivers(cur.shap[in_c], names)
            drift = None
            if m.previous is not None:
                drift = clustering.attribution_drift(cur.shap[in_c],
                                                   prev.shap[pcl.labels == m.previous], names)
            labelled = int(sub["is_fraud"].notna().sum())
            fraud = int((sub["is_fraud"] == 1).sum())
            rep_ids = cur.cases["transaction_id"].to_numpy()[reps[c]]
            rows.append({
                "finding_id": fid, "population": population, "change": m.change,
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
                "top_drift": ("" if drift is None else "; ".join(
                    f"{f} {v:+.2f}" for f, v in zip(drift["feature"].head(3),
                                                    drift["change_mean_abs_shap"].head(3),
                                                    strict=True))),
                "representative_cases": " ".join(rep_ids),
                "rule_json": rule.to_json(), "drivers_json": _records(drivers),
                "backtest_daily_json": _records(bt.daily[["day", "alerts", "labelled_alerts",
                                                          "fraud_alerts", "fraud"]]),
                "drift_json": "[]" if drift is None else _records(drift),
            })
            members.append(pd.DataFrame({
                "finding_id": fid, "transaction_id": sub["transaction_id"].to_numpy(),
                "distance": np.round(dist[in_c], 6),
                "representative": sub["transaction_id"].isin(rep_ids).to_numpy()}))
    table = findings_table(rows, gone, model.key, window, threshold, seed)
    member_frame = (pd.concat(members, ignore_index=True) if members else pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in (("finding_id", object), ("transaction_id", object),
                                            ("distance", float), ("representative", bool))}))
    member_frame = member_frame.sort_values(["finding_id", "transaction_id"],
                                            kind="mergesort").reset_index(drop=True)
    flagged_now = now["flagged"].shap
    flagged_before = before["flagged"].shap
    counts = {f"{p}_cases": len(now[p].cases) for p in POPULATIONS}
    counts.update({f"{p}_cases_previous": len(before[p].cases) for p in POPULATIONS})
    counts.update({"shap_computed": computed + computed_before,
                   "background_rows": len(background), "background_total": background_total})
    return MiningResult(model.key, window, window.previous(), threshold, seed, table,
                        member_frame, clustering.attribution_drift(flagged_now, flagged_before,
                                                                 names), counts)


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
    frame = pd.DataFrame(out, columns=[c for c in store.FINDING_COLUMNS])
    frame["model"] = model_id
    frame["window_start"] = window.since.isoformat()
    frame["window_end"] = window.until.isoformat()
    frame["threshold"] = float(threshold)
    frame["seed"] = int(seed)
    for col, sql_type in store.FINDING_COLUMNS.items():
        if sql_type == "INTEGER":
            frame[col] = frame[col].astype("int64")
        elif sql_type == "DOUBLE":
            frame[col] = frame[col].astype("float64").map(_round)
        else:
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


# --------------------------------------------------------------------------- exports


def csv_table(findings: pd.DataFrame) -> pd.DataFrame:
    """The findings CSV: the findings table without its JSON columns (and any storage
    columns such as mined_at)."""
    cols = [c for c in store.FINDING_COLUMNS if c not in JSON_COLUMNS]
    return findings[cols].reset_index(drop=True)


def members_table(members: pd.DataFrame) -> pd.DataFrame:
    """The members CSV: transaction_id, finding_id (DESIGN.md's contract)."""
    return members[["transaction_id", "finding_id"]].sort_values(
        ["finding_id", "transaction_id"], kind="mergesort").reset_index(drop=True)


def shap_summary_table(findings: pd.DataFrame) -> pd.DataFrame:
    """Per finding and feature: mean SHAP and mean |SHAP| over its cases (current findings)."""
    frames = []
    for row in findings.itertuples(index=False):
        if row.change == "gone":
            continue
        d = pd.DataFrame(json.loads(row.drivers_json))
        d.insert(0, "finding_id", row.finding_id)
        d.insert(1, "population", row.population)
        d["rank_in_finding"] = np.arange(1, len(d) + 1)
        frames.append(d)
    cols = ["finding_id", "population", "feature", "mean_shap", "mean_abs_shap",
            "rank_in_finding"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


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


@dataclass(frozen=True)
class Written:
    """The exports of one `write_exports` call."""

    findings: ExportResult
    members: ExportResult | None
    pack: ExportResult | None


def write_exports(result: MiningResult, out: str, *, members_out: str | None = None,
                  pack_out: str | None = None, annotations: pd.DataFrame | None = None,
                  audit: Callable[[str, ExportResult, int | None], None] | None = None,
                  ) -> Written:
    """Write the findings CSV (and members CSV, review pack); `audit(what, result, rows)` runs
    before each file appears — if it raises, that file is not published."""

    def hook(what: str, rows: int | None) -> BeforeCommit | None:
        if audit is None:
            return None
        return lambda r: audit(what, r, rows)

    table = csv_table(result.findings)
    findings = write_csv(table, out, hook("findings", len(table)))
    members = None
    if members_out:
        m = members_table(result.members)
        members = write_csv(m, members_out, hook("finding members", len(m)))
    pack = None
    if pack_out:
        about = (result.model_id, result.window, result.threshold, result.seed)
        data = review_pack_html(result.findings, annotations, about=about).encode("utf-8")
        path = str(pack_out)
        captured: list[ExportResult] = []

        def before(r: ExportResult) -> None:
            captured.append(r)
            if audit is not None:
                audit("review pack", r, None)

        atomic_write_bytes(path, data, before)
        pack = captured[0]
    return Written(findings, members, pack)


def mined_at_text(findings: pd.DataFrame) -> str:
    """When and by whom stored findings were mined, for a caption."""
    if "mined_at" not in findings.columns or findings.empty:
        return ""
    when = pd.Timestamp(findings["mined_at"].iloc[0])
    when = when.tz_convert("UTC") if when.tzinfo else when.tz_localize("UTC")
    stamp: datetime = when.to_pydatetime()
    return f"mined {stamp:%Y-%m-%d %H:%M} UTC by {findings['mined_by'].iloc[0]}"
