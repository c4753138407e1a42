"""The SHAP store: per model version, one lake file per transactions file, aggregated in SQL.

The lake's `shap_tables` lists which view holds which model's values, so identifiers are never
built from user input. Every file is published whole after its additivity check, so a killed
job leaves whole files only and a rerun resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.lake import cursor_for
from data_access.warehouse import fetch_df, quote_ident, table_names
from explainers.errors import ValidationError, WarehouseError
from explainers.timeutil import to_utc

SUMMARY_DECIMALS = 12


def stored_table(con: duckdb.DuckDBPyConnection, model_id: str) -> tuple[str, list[str]] | None:
    """The view holding a model's stored SHAP values and its features, or None when the lake
    holds none. Views are named by `lake.shap_view`, an injective encoding of the model id."""
    if "shap_tables" not in table_names(con):
        return None
    cur = cursor_for(con)
    try:
        row = cur.execute("SELECT table_name, features FROM shap_tables WHERE model_id = ?",
                          [model_id]).fetchall()
    finally:
        cur.close()
    return (row[0][0], list(row[0][1])) if row else None


def shap_file(rows: pd.DataFrame, feature_names: list[str], base_value: float,
              values: np.ndarray, flagged: np.ndarray) -> pa.Table:
    """One lake file of SHAP values: `rows` holds transaction_id, event_time and score in the
    order of `values`."""
    cols = {"transaction_id": pa.array(rows["transaction_id"].astype(str).to_numpy()),
            "event_time": pa.array(rows["event_time"]),
            "score": pa.array(rows["score"].to_numpy(np.float64)),
            "base_value": pa.array(np.full(len(values), float(base_value))),
            "flagged": pa.array(np.asarray(flagged, dtype=bool))}
    for j, name in enumerate(feature_names):
        if name in cols:
            raise ValidationError(f"Feature {name!r} clashes with a SHAP file column")
        cols[name] = pa.array(np.ascontiguousarray(values[:, j], dtype=np.float64))
    return pa.table(cols)


@dataclass(frozen=True)
class Cohort:
    """Which scored transactions a global view covers."""

    since: date | datetime | None = None
    until: date | datetime | None = None
    min_score: float | None = None
    max_score: float | None = None
    segment: str | None = None  # a categorical feature / transaction column
    segment_value: str | None = None

    def describe(self) -> str:
        parts = []
        if self.since or self.until:
            parts.append(f"event_time {self.since or '…'} to {self.until or '…'} (until excl.)")
        if self.min_score is not None or self.max_score is not None:
            parts.append(f"score {self.min_score if self.min_score is not None else 0:g}"
                         f"–{self.max_score if self.max_score is not None else 1:g}")
        if self.segment and self.segment_value is not None:
            parts.append(f"{self.segment} = {self.segment_value}")
        return "; ".join(parts) or "all stored rows"

    @property
    def needs_transactions(self) -> bool:
        return bool(self.segment and self.segment_value is not None)

    def where(self, allowed_segments: list[str], *, time_col: str = "t.event_time",
              score_col: str = "sc.score") -> tuple[str, list[object]]:
        """SQL over aliases t (transactions) and sc (scores) by default; values as
        parameters, the segment column only from `allowed_segments`."""
        clauses, params = ["TRUE"], []
        if self.since is not None:
            clauses.append(f"{time_col} >= ?")
            params.append(to_utc(self.since))
        if self.until is not None:
            clauses.append(f"{time_col} < ?")
            params.append(to_utc(self.until))
        if self.min_score is not None:
            clauses.append(f"{score_col} >= ?")
            params.append(float(self.min_score))
        if self.max_score is not None:
            clauses.append(f"{score_col} <= ?")
            params.append(float(self.max_score))
        if self.segment and self.segment_value is not None:
            if self.segment not in allowed_segments:
                raise ValidationError(f"Unknown segment {self.segment!r}; choose one of "
                                      f"{', '.join(allowed_segments)}")
            clauses.append(f"CAST(t.{quote_ident(self.segment)} AS VARCHAR) = ?")
            params.append(str(self.segment_value))
        return " AND ".join(clauses), params


def _cohort_sql(table: str, cohort: Cohort, segments: list[str]) -> tuple[str, list[object]]:
    """FROM ... WHERE ... for a cohort over the store; joins transactions only for a segment."""
    where, params = cohort.where(segments, time_col="s.event_time", score_col="s.score")
    join = " JOIN transactions t USING (transaction_id)" if cohort.needs_transactions else ""
    return f"FROM {quote_ident(table)} s{join} WHERE {where}", params


def summary(con: duckdb.DuckDBPyConnection, model_id: str, cohort: Cohort,
            segments: list[str]) -> pd.DataFrame:
    """Per feature: mean |SHAP|, mean SHAP and rank over a cohort, in one SQL pass."""
    stored = stored_table(con, model_id)
    if stored is None:
        raise WarehouseError(f"No SHAP values are stored for {model_id}; run "
                             f"`fraudlens explain --model {model_id}`")
    table, features = stored
    body, params = _cohort_sql(table, cohort, segments)
    # favg is Kahan-compensated and the result is rounded, so a parallel scan over many lake
    # files gives the same bytes whatever order its threads add up in
    aggs = ", ".join(f"round(favg(abs(s.{quote_ident(f)})), {SUMMARY_DECIMALS}), "
                     f"round(favg(s.{quote_ident(f)}), {SUMMARY_DECIMALS})" for f in features)
    cur = cursor_for(con)
    try:
        row = cur.execute(f"SELECT count(*), {aggs} {body}", params).fetchall()[0]
    finally:
        cur.close()
    n = int(row[0])
    mean_abs = np.array([row[1 + 2 * i] if row[1 + 2 * i] is not None else np.nan
                         for i in range(len(features))], dtype=float)
    mean = np.array([row[2 + 2 * i] if row[2 + 2 * i] is not None else np.nan
                     for i in range(len(features))], dtype=float)
    out = pd.DataFrame({"feature": features, "mean_abs_shap": mean_abs, "mean_shap": mean})
    out = out.sort_values(["mean_abs_shap", "feature"], ascending=[False, True],
                          na_position="last", kind="mergesort").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    out["model"] = model_id
    out["cohort"] = cohort.describe()
    out["row_count"] = n
    return out


def describe_summary(summary_frame: pd.DataFrame, descriptions: dict[str, str]) -> pd.DataFrame:
    """The SHAP-summary export: `summary` with each feature's `description` (from the model's
    schema) right after `feature`. `fraudlens export shap-summary` and the Global Patterns
    download both write this, so their bytes are the same."""
    out = summary_frame.copy()
    out.insert(1, "description", out["feature"].map(lambda f: descriptions.get(f, "")))
    return out


def values(con: duckdb.DuckDBPyConnection, model_id: str, cohort: Cohort | None = None,
           segments: list[str] | None = None, limit: int | None = None,
           sample_seed: int | None = None) -> pd.DataFrame:
    """Stored rows (transaction_id, base_value, features...) for a cohort; optionally a
    seeded sample of at most `limit` rows."""
    stored = stored_table(con, model_id)
    if stored is None:
        return pd.DataFrame()
    table, features = stored
    body, params = _cohort_sql(table, cohort or Cohort(), segments or [])
    cols = ", ".join(f"s.{quote_ident(f)}" for f in features)
    order = "s.transaction_id"
    if sample_seed is not None:
        order = "hash(s.transaction_id || ?), s.transaction_id"
        params = [*params, str(sample_seed)]
    sql = (f"SELECT s.transaction_id, s.base_value, s.flagged, {cols} "
           f"{body} ORDER BY {order}")
    if limit is not None:
        sql += " LIMIT ?"
        params = [*params, int(limit)]
    return fetch_df(con, sql, params)


def coverage(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Rows stored per model version against rows scored."""
    out = pd.DataFrame(columns=["model_id", "stored", "scored"])
    if "shap_tables" not in table_names(con):
        return out
    cur = cursor_for(con)
    try:
        rows = []
        for model_id, table in cur.execute(
                "SELECT model_id, table_name FROM shap_tables ORDER BY model_id").fetchall():
            stored = cur.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchall()[0][0]
            scored = cur.execute("SELECT count(*) FROM scores WHERE model_id = ?",
                                 [model_id]).fetchall()[0][0]
            rows.append({"model_id": model_id, "stored": stored, "scored": scored})
    finally:
        cur.close()
    return pd.DataFrame(rows, columns=out.columns)
