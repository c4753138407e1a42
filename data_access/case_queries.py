"""What the Case Explorer reads from the lake: the queue, one transaction, an account's
transactions and timeline, every model's score for a case, a case's stored SHAP row, and the
labelled SHAP rows similar cases are drawn from. Parameterised SQL, targeted by id; frames out.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from data_access import shap_store
from data_access.shap_store import Cohort
from data_access.warehouse import fetch_df, quote_ident, table_columns

__all__ = [
    "AMOUNT_COLUMN",
    "COUNTRY_COLUMN",
    "LIST_COLUMNS",
    "QueueFilter",
    "ScoreRanking",
    "account_timeline",
    "account_transactions",
    "any_transaction",
    "case_scores",
    "case_summaries",
    "fetch_queue",
    "labelled_shap_rows",
    "queue_sql",
    "score_ranking",
    "stored_shap_row",
    "transaction_row",
]

AMOUNT_COLUMN = "amount_usd"
COUNTRY_COLUMN = "country"
# Columns shown in lists (queue, timeline, similar cases): never PII.
LIST_COLUMNS = ("txn_type", AMOUNT_COLUMN, COUNTRY_COLUMN, "channel")


@dataclass(frozen=True)
class QueueFilter:
    """Which scored transactions the queue lists, highest scores first."""

    model_id: str
    since: date | None = None
    until: date | None = None  # inclusive: the last day shown
    min_score: float = 0.0
    max_score: float = 1.0
    countries: tuple[str, ...] = ()
    min_amount: float | None = None
    max_amount: float | None = None
    limit: int = 200


def _list_columns(columns: Collection[str]) -> list[str]:
    return [c for c in LIST_COLUMNS if c in columns]


def _list_select(con: duckdb.DuckDBPyConnection) -> str:
    """`, t.<col>` for each list column the transactions have."""
    return "".join(f", t.{quote_ident(c)}" for c in _list_columns(table_columns(con,
                                                                             "transactions")))


def queue_sql(f: QueueFilter, columns: Collection[str]) -> tuple[str, list[object]]:
    """Highest scores first for one model, filtered; values are parameters, column names come
    from the fixed list above and only when the warehouse has them. Dates and score bounds are
    a `Cohort`'s (one WHERE builder for the queue and the SHAP store)."""
    cohort = Cohort(since=f.since, until=None if f.until is None else f.until + timedelta(days=1),
                    min_score=float(f.min_score), max_score=float(f.max_score))
    where, cohort_params = cohort.where([])
    clauses = ["sc.model_id = ?", where]
    params: list[object] = [f.model_id, *cohort_params]
    if f.countries and COUNTRY_COLUMN in columns:
        clauses.append(f"CAST(t.{quote_ident(COUNTRY_COLUMN)} AS VARCHAR) IN "
                       f"({', '.join('?' for _ in f.countries)})")
        params.extend(str(c) for c in f.countries)
    if AMOUNT_COLUMN in columns:
        if f.min_amount is not None:
            clauses.append(f"t.{quote_ident(AMOUNT_COLUMN)} >= ?")
            params.append(float(f.min_amount))
        if f.max_amount is not None:
            clauses.append(f"t.{quote_ident(AMOUNT_COLUMN)} <= ?")
            params.append(float(f.max_amount))
    extra = "".join(f", CAST(t.{quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}"
                    if c not in (AMOUNT_COLUMN,) else f", t.{quote_ident(c)}"
                    for c in _list_columns(columns))
    sql = (f"SELECT t.transaction_id, t.event_time, sc.score{extra}, l.is_fraud "
           "FROM scores sc JOIN transactions t ON t.transaction_id = sc.transaction_id "
           "LEFT JOIN labels l ON l.transaction_id = sc.transaction_id "
           f"WHERE {' AND '.join(clauses)} ORDER BY sc.score DESC, t.transaction_id LIMIT ?")
    params.append(int(f.limit))
    return sql, params


def fetch_queue(con: duckdb.DuckDBPyConnection, f: QueueFilter) -> pd.DataFrame:
    """The queue as a frame: transaction_id, event_time, score, list columns, outcome."""
    sql, params = queue_sql(f, table_columns(con, "transactions"))
    return _with_outcome(fetch_df(con, sql, params))


def _with_outcome(df: pd.DataFrame) -> pd.DataFrame:
    if "is_fraud" in df.columns:
        df = df.assign(outcome=_outcome(df.pop("is_fraud")))
    return df


def _outcome(is_fraud: pd.Series) -> pd.Series:
    mapped = is_fraud.map({1: "fraud", 0: "legit"})
    return mapped.astype(object).where(is_fraud.notna(), "unlabelled")


def any_transaction(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One transaction, every column (PII included: never cache or show it); 0 rows when the
    lake is empty. For warming the explainers up, not for analysts."""
    return fetch_df(con, "SELECT * FROM transactions LIMIT 1")


def transaction_row(con: duckdb.DuckDBPyConnection, transaction_id: str) -> pd.DataFrame:
    """Every column of one transaction (PII included: never cache this), 0 or 1 rows."""
    return fetch_df(con, "SELECT * FROM transactions WHERE transaction_id = ?",
                    [transaction_id])


def account_transactions(con: duckdb.DuckDBPyConnection, account_id: str,
                         model_id: str, limit: int = 200) -> pd.DataFrame:
    """An account's transactions, newest first, with the model's score (non-PII columns)."""
    extra = _list_select(con)
    return _with_outcome(fetch_df(
        con,
        f"SELECT t.transaction_id, t.event_time{extra}, sc.score, l.is_fraud "
        "FROM transactions t LEFT JOIN scores sc ON sc.transaction_id = t.transaction_id "
        "AND sc.model_id = ? LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
        "WHERE t.account_id = ? ORDER BY t.event_time DESC, t.transaction_id LIMIT ?",
        [model_id, account_id, int(limit)]))


def account_timeline(con: duckdb.DuckDBPyConnection, transaction_id: str, model_id: str,
                     days: int = 30, limit: int = 500) -> pd.DataFrame:
    """The case's account around the case: its transactions from `days` before to `days`
    after, with this model's score and the outcome; `is_case` marks the case itself. Keyed by
    the transaction, so no account id enters a cache key or the result.

    Three targeted reads, not one join: a join scanned every score of the model (0.22 s on
    1M rows against 0.1 s), while a list of the account's ids is a cheap filter."""
    case = con.execute("SELECT account_id, event_time FROM transactions "
                       "WHERE transaction_id = ? LIMIT 1", [transaction_id]).fetchone()
    extra = _list_select(con)
    if case is None:  # the same empty frame the rows below would make
        return _with_outcome(fetch_df(
            con, f"SELECT t.transaction_id, t.event_time{extra}, NULL::DOUBLE AS score, "
                 "NULL::INTEGER AS is_fraud, false AS is_case FROM transactions t LIMIT 0"))
    account, at = case
    rows = fetch_df(
        con,
        f"SELECT t.transaction_id, t.event_time{extra}, t.transaction_id = ? AS is_case "
        "FROM transactions t WHERE t.account_id = ? "
        "AND t.event_time BETWEEN ?::TIMESTAMPTZ - to_days(?) AND ?::TIMESTAMPTZ + to_days(?) "
        "ORDER BY t.event_time, t.transaction_id LIMIT ?",
        [transaction_id, account, at, int(days), at, int(days), int(limit)])
    ids = rows["transaction_id"].astype(str).tolist()
    scores = fetch_df(con, "SELECT transaction_id, score FROM scores WHERE model_id = ? "
                           "AND transaction_id IN (SELECT unnest(?::VARCHAR[]))", [model_id, ids])
    labels = fetch_df(con, "SELECT transaction_id, is_fraud FROM labels "
                           "WHERE transaction_id IN (SELECT unnest(?::VARCHAR[]))", [ids])
    out = rows.merge(scores.drop_duplicates("transaction_id"), on="transaction_id", how="left") \
        .merge(labels.drop_duplicates("transaction_id"), on="transaction_id", how="left")
    order = ["transaction_id", "event_time", *[c for c in rows.columns
                                               if c not in ("transaction_id", "event_time",
                                                            "is_case")],
             "score", "is_fraud", "is_case"]
    return _with_outcome(out[order])


@dataclass(frozen=True)
class ScoreRanking:
    """One model's scores, ascending (missing scores left out), and how many rows it
    scored: a case's rank is a binary search instead of a count over every score."""

    ascending: np.ndarray
    scored: int

    def rank(self, score: float) -> int:
        """1 for the highest score: how many scored strictly higher, plus one."""
        higher = len(self.ascending) - np.searchsorted(self.ascending, score, side="right")
        return int(higher) + 1


def score_ranking(con: duckdb.DuckDBPyConnection, model_id: str) -> ScoreRanking:
    """Every score `model_id` gave, sorted (8 bytes a scored row)."""
    scored = con.execute("SELECT count(*) FROM scores WHERE model_id = ?", [model_id]).fetchone()
    values = con.execute("SELECT score FROM scores WHERE model_id = ? AND score IS NOT NULL",
                         [model_id]).fetchnumpy()["score"]
    ascending = np.sort(np.asarray(values, dtype=np.float64))
    ascending.setflags(write=False)  # shared between sessions in the app
    return ScoreRanking(ascending, int(scored[0]))


def case_scores(con: duckdb.DuckDBPyConnection, transaction_id: str,
                ranking: Callable[[str], ScoreRanking] | None = None) -> pd.DataFrame:
    """Every model's score for one transaction with its rank among all that model scored:
    model_id, score, margin, flagged, rank (1 = highest), scored (n), top_share (rank / n).
    `ranking(model_id)` gives the model's `ScoreRanking` (a cached one, in the app); by
    default it is read here."""
    rank_of = ranking or (lambda model_id: score_ranking(con, model_id))
    df = fetch_df(con, "SELECT model_id, score, margin, flagged FROM scores "
                       "WHERE transaction_id = ? ORDER BY model_id", [transaction_id])
    ranks = [rank_of(m) for m in df["model_id"]]
    df["rank"] = pd.Series([r.rank(s) for r, s in zip(ranks, df["score"], strict=True)],
                           index=df.index, dtype="int64")
    df["scored"] = pd.Series([r.scored for r in ranks], index=df.index, dtype="int64")
    df["top_share"] = df["rank"] / df["scored"].where(df["scored"] > 0)
    return df


def case_summaries(con: duckdb.DuckDBPyConnection, transaction_ids: list[str],
                   model_id: str) -> pd.DataFrame:
    """Non-PII list columns, the model's score and the outcome for a few transactions."""
    extra = _list_select(con)
    return _with_outcome(fetch_df(
        con,
        f"SELECT t.transaction_id{extra}, sc.score, l.is_fraud FROM transactions t "
        "LEFT JOIN scores sc ON sc.transaction_id = t.transaction_id AND sc.model_id = ? "
        "LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
        "WHERE t.transaction_id IN (SELECT unnest(?::VARCHAR[]))",
        [model_id, [str(i) for i in transaction_ids]]))


def stored_shap_row(con: duckdb.DuckDBPyConnection, model_id: str,
                    transaction_id: str) -> tuple[pd.DataFrame, list[str]] | None:
    """The case's row of the model's SHAP store (base_value, flagged, one column per stored
    feature; 0 or 1 rows) and the stored feature names; None without a store."""
    stored = shap_store.stored_table(con, model_id)
    if stored is None:
        return None
    table, features = stored
    cols = ", ".join(quote_ident(f) for f in features)
    row = fetch_df(con, f"SELECT base_value, flagged, {cols} FROM {quote_ident(table)} "
                   "WHERE transaction_id = ? LIMIT 1", [transaction_id])
    return row, list(features)


def labelled_shap_rows(con: duckdb.DuckDBPyConnection, model_id: str, size: int,
                       seed: int) -> tuple[pd.DataFrame, list[str]] | None:
    """A seeded sample of at most `size` labelled rows of the model's SHAP store
    (transaction_id, is_fraud, event_time, one column per feature) and the feature names;
    None without a store."""
    stored = shap_store.stored_table(con, model_id)
    if stored is None:
        return None
    table, features = stored
    cols = ", ".join(f"s.{quote_ident(f)}" for f in features)
    df = fetch_df(
        con,
        f"SELECT s.transaction_id, l.is_fraud, t.event_time, {cols} "
        f"FROM {quote_ident(table)} s JOIN labels l USING (transaction_id) "
        "JOIN transactions t USING (transaction_id) "
        "ORDER BY hash(s.transaction_id || ?), s.transaction_id LIMIT ?",
        [str(seed), int(size)])
    return df, list(features)
