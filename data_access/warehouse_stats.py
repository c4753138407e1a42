"""What the Home page reads about the lake as a whole: sizes, label coverage per week, and how
much each model has scored. Aggregates only, no PII."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from data_access.warehouse import fetch_df
from explainers.timeutil import to_utc

__all__ = ["WarehouseSummary", "scored_counts", "warehouse_summary", "weekly_labels"]


@dataclass(frozen=True)
class WarehouseSummary:
    transactions: int
    accounts: int
    first_event: pd.Timestamp | None
    last_event: pd.Timestamp | None
    labelled: int
    labelled_fraud: int

    @property
    def label_share(self) -> float:
        return self.labelled / self.transactions if self.transactions else 0.0


def warehouse_summary(con: duckdb.DuckDBPyConnection) -> WarehouseSummary:
    n, accounts, first, last = con.execute(
        "SELECT count(*), count(DISTINCT account_id), min(event_time), max(event_time) "
        "FROM transactions").fetchone()
    labelled, fraud = con.execute(
        "SELECT count(*), coalesce(sum(l.is_fraud), 0) FROM labels l "
        "SEMI JOIN transactions t USING (transaction_id)").fetchone()
    return WarehouseSummary(int(n), int(accounts), None if first is None else to_utc(first),
                            None if last is None else to_utc(last), int(labelled), int(fraud))


def weekly_labels(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per week (Monday, UTC): transactions, labelled, fraud, share labelled."""
    df = fetch_df(
        con,
        "SELECT date_trunc('week', t.event_time) AS week, count(*) AS transactions, "
        "count(l.transaction_id) AS labelled, coalesce(sum(l.is_fraud), 0) AS fraud "
        "FROM transactions t LEFT JOIN labels l USING (transaction_id) "
        "GROUP BY 1 ORDER BY 1")
    df["share"] = df["labelled"] / df["transactions"]
    return df


def scored_counts(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per model: transactions scored, flagged inputs, last scoring time."""
    return fetch_df(con, "SELECT model_id, count(*) AS scored, "
                         "count(*) FILTER (WHERE flagged) AS flagged_inputs, "
                         "max(scored_at) AS last_scored FROM scores GROUP BY 1")
