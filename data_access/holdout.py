"""What a model comparison reads from the lake: when the newest label arrived, how many
transactions precede the training windows, and the candidate holdout rows with each model's
stored score and the label known at the as-of time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import duckdb
import pandas as pd

from data_access.case_queries import AMOUNT_COLUMN
from data_access.warehouse import fetch_df, quote_ident
from explainers.errors import ValidationError
from explainers.timeutil import to_utc

__all__ = ["candidate_rows", "newest_label_time", "rows_until"]


def newest_label_time(con: duckdb.DuckDBPyConnection) -> pd.Timestamp | None:
    """When the newest label arrived (the default as-of time), or None without labels."""
    newest = fetch_df(con, "SELECT max(label_time) AS t FROM labels")["t"].iloc[0]
    return None if pd.isna(newest) else to_utc(newest)


def labels_as_of(con: duckdb.DuckDBPyConnection, chosen: date | None, purpose: str
                 ) -> pd.Timestamp:
    """The as-of time: the end of the `chosen` UTC day, else when the newest label arrived.
    Without labels there is nothing to measure `purpose` on: an error saying how to add them."""
    if chosen is not None:
        return to_utc(chosen) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    newest = newest_label_time(con)
    if newest is None:
        raise ValidationError(f"No labels in the lake, so {purpose}. Import labels with "
                              "`fraudlens import transactions FILE --labels FILE`.")
    return newest


def rows_until(con: duckdb.DuckDBPyConnection, end: pd.Timestamp) -> int:
    """Transactions at or before `end` (those inside a training window)."""
    return int(fetch_df(con, "SELECT count(*) AS n FROM transactions WHERE event_time <= ?",
                        [end])["n"].iloc[0])


def candidate_rows(con: duckdb.DuckDBPyConnection, model_ids: Sequence[str],
                   after: pd.Timestamp | None, as_of: pd.Timestamp,
                   segment: str | None) -> pd.DataFrame:
    """Transactions after the training windows: amount, segment, the label known as of
    `as_of`, and each model's stored score (score_<model>)."""
    seg = f", CAST(t.{quote_ident(segment)} AS VARCHAR) AS segment" if segment else ""
    joins, cols, params = [], [], [as_of]
    for i, model_id in enumerate(model_ids):
        joins.append(f"LEFT JOIN scores s{i} ON s{i}.transaction_id = t.transaction_id "
                     f"AND s{i}.model_id = ?")
        cols.append(f"s{i}.score AS s{i}")
        params.append(model_id)
    where = "TRUE"
    if after is not None:
        where = "t.event_time > ?"
        params.append(after)
    sql = (f"SELECT t.transaction_id, t.event_time, t.{quote_ident(AMOUNT_COLUMN)} AS amount_usd"
           f"{seg}, l.is_fraud, l.label_time, {', '.join(cols)} FROM transactions t "
           "LEFT JOIN labels l ON l.transaction_id = t.transaction_id AND l.label_time <= ? "
           f"{' '.join(joins)} WHERE {where} ORDER BY t.event_time, t.transaction_id")
    frame = fetch_df(con, sql, params)
    frame = frame.rename(columns={f"s{i}": f"score_{m}" for i, m in enumerate(model_ids)})
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["label_time"] = pd.to_datetime(frame["label_time"], utc=True)
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    return frame
