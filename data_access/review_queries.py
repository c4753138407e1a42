"""What the weekly pattern review reads from the lake: the week to review, a window's cases
(flagged, or confirmed fraud scored below the threshold) with their features, a seeded sample
of the window's other transactions, and the cases' stored SHAP rows. Parameterised SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import pandas as pd

from data_access.shap_store import stored_table
from data_access.warehouse import fetch_df, quote_ident, table_columns
from explainers.errors import ValidationError
from explainers.timeutil import to_utc

__all__ = ["AMOUNT_COLUMN", "Window", "case_rows", "feature_columns", "last_full_week",
           "other_rows", "stored_case_shap"]

AMOUNT_COLUMN = "amount_usd"


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


# A week's labels are "meaningful" for the review when at least this share of its transactions
# has a known outcome: enough for a finding's confirmed-fraud rate and its rule's backtest to
# say something. Newer weeks hold only the fast-arriving labels (under 1% in the demo).
MIN_LABEL_COVERAGE = 0.25


def last_full_week(con: duckdb.DuckDBPyConnection,
                   min_coverage: float = MIN_LABEL_COVERAGE) -> Window | None:
    """The newest Monday-to-Sunday week (UTC) that lies wholly before the last transaction's
    day ends and has at least `min_coverage` of its transactions labelled; failing that, the
    full week with the highest coverage; None for an empty warehouse."""
    weeks = fetch_df(
        con,
        "SELECT CAST(date_trunc('week', timezone('UTC', t.event_time)) AS DATE) AS week, "
        "count(l.transaction_id) AS labelled, count(*) AS total, "
        "max(CAST(timezone('UTC', t.event_time) AS DATE)) AS last_day "
        "FROM transactions t LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
        "GROUP BY 1 ORDER BY 1")
    if weeks.empty:
        return None
    last_day = pd.Timestamp(weeks["last_day"].max()).date()
    weeks["start"] = [pd.Timestamp(w).date() for w in weeks["week"]]
    weeks["coverage"] = weeks["labelled"] / weeks["total"].clip(lower=1)
    full = weeks[[s + timedelta(days=6) <= last_day for s in weeks["start"]]]
    good = full[(full["coverage"] >= min_coverage) & (full["labelled"] > 0)]
    if len(good):
        start = good["start"].iloc[-1]
    elif len(full) and full["labelled"].max() > 0:
        start = full.loc[full["coverage"].idxmax(), "start"]
    else:
        start = weeks["start"].iloc[-1]
    return Window(start, start + timedelta(days=7))


def feature_columns(con: duckdb.DuckDBPyConnection, names: Sequence[str]) -> list[str]:
    """The model's feature columns, or an error naming those the transactions lack."""
    present = table_columns(con, "transactions")
    missing = [n for n in names if n not in present]
    if missing:
        raise ValidationError("The warehouse's transactions lack model feature column(s): "
                              + ", ".join(missing))
    return list(names)


_CASE_FROM = ("FROM transactions t JOIN scores sc ON sc.transaction_id = t.transaction_id "
              "AND sc.model_id = ? LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
              "WHERE t.event_time >= ? AND t.event_time < ?")
_IS_CASE = "(sc.score >= ? OR coalesce(l.is_fraud, 0) = 1)"


def _window_params(model_id: str, window: Window, threshold: float) -> list[object]:
    return [model_id, to_utc(window.since), to_utc(window.until), threshold]


def case_rows(con: duckdb.DuckDBPyConnection, model_id: str, window: Window,
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
        _window_params(model_id, window, threshold))
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    frame["population"] = np.where(frame["score"] >= threshold, "flagged", "missed")
    return frame


def other_rows(con: duckdb.DuckDBPyConnection, model_id: str, window: Window,
               threshold: float, features: list[str], rows: int,
               seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded sample of the window's other transactions (not cases), and how many there are."""
    params = _window_params(model_id, window, threshold)
    total = fetch_df(con, f"SELECT count(*) AS n {_CASE_FROM} AND NOT {_IS_CASE}",
                     params)["n"].iloc[0]
    cols = "".join(f", t.{quote_ident(c)}" for c in features)
    sample = fetch_df(
        con,
        f"SELECT t.transaction_id{cols} {_CASE_FROM} AND NOT {_IS_CASE} "
        "ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
        [*params, str(seed), int(rows)])
    return sample, int(total)


def stored_case_shap(con: duckdb.DuckDBPyConnection, model_id: str, names: list[str],
                     window: Window, threshold: float) -> pd.DataFrame | None:
    """The window's cases' stored SHAP rows, indexed by transaction_id (text), one column per
    feature; None when the model has no store or it holds other features."""
    stored = stored_table(con, model_id)
    if stored is None:
        return None
    table, store_names = stored
    if list(store_names) != names:
        return None
    cols = ", ".join(f"s.{quote_ident(n)}" for n in names)
    got = fetch_df(
        con,
        f"SELECT s.transaction_id, {cols} FROM {quote_ident(table)} s "
        "JOIN transactions t ON t.transaction_id = s.transaction_id "
        "JOIN scores sc ON sc.transaction_id = s.transaction_id AND sc.model_id = ? "
        "LEFT JOIN labels l ON l.transaction_id = s.transaction_id "
        f"WHERE t.event_time >= ? AND t.event_time < ? AND {_IS_CASE}",
        _window_params(model_id, window, threshold))
    got["transaction_id"] = got["transaction_id"].astype(str)
    return got.set_index("transaction_id")
