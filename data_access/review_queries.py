"""What the weekly pattern review reads from the lake: the week to review, a window's cases
(flagged, or confirmed fraud scored below the threshold) with their features, a seeded sample
of the window's other transactions, and the cases' stored SHAP rows. Parameterised SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise

import duckdb
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from data_access.lake import cursor_for
from data_access.shap_store import stored_table
from data_access.warehouse import fetch_df, quote_ident, table_columns
from explainers.errors import ValidationError, WarehouseError
from explainers.timeutil import to_utc

__all__ = ["AMOUNT_COLUMN", "Window", "case_rows", "case_rows_of", "feature_columns",
           "last_full_week",
           "other_rows", "stored_shap_rows"]

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
# _CASE_FROM with the window's transaction_id range (`_id_bounds`) on the joined scores and
# labels: the joins pair equal ids, so the result is the same, but the scans of scores and
# labels skip the files and row groups of other days (ids follow time in the lake).
_RANGED_CASE_FROM = (
    "FROM transactions t JOIN scores sc ON sc.transaction_id = t.transaction_id "
    "AND sc.model_id = ? AND sc.transaction_id >= ? AND sc.transaction_id <= ? "
    "LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
    "AND l.transaction_id >= ? AND l.transaction_id <= ? "
    "WHERE t.event_time >= ? AND t.event_time < ?")


def _window_params(model_id: str, window: Window, threshold: float) -> list[object]:
    return [model_id, to_utc(window.since), to_utc(window.until), threshold]


def _id_bounds(con: duckdb.DuckDBPyConnection, window: Window) -> tuple[object, object]:
    """The smallest and the largest transaction_id of the window's transactions (None, None
    when it has none: then no row passes a test against them, and none is in the window)."""
    got = fetch_df(con, "SELECT min(t.transaction_id) AS lo, max(t.transaction_id) AS hi "
                        "FROM transactions t WHERE t.event_time >= ? AND t.event_time < ?",
                   [to_utc(window.since), to_utc(window.until)])
    lo, hi = got["lo"].iloc[0], got["hi"].iloc[0]
    return (None if pd.isna(lo) else lo), (None if pd.isna(hi) else hi)


def _ranged_params(con: duckdb.DuckDBPyConnection, model_id: str, window: Window,
                   threshold: float) -> list[object]:
    """`_RANGED_CASE_FROM`'s and `_IS_CASE`'s parameters."""
    lo, hi = _id_bounds(con, window)
    return [model_id, lo, hi, lo, hi, to_utc(window.since), to_utc(window.until), threshold]


def case_rows(con: duckdb.DuckDBPyConnection, model_id: str, window: Window,
              threshold: float, features: list[str]) -> pd.DataFrame:
    """Flagged and missed cases of a window with score, label, amount and raw features."""
    return case_rows_of(con, model_id, [window], threshold, features)[0]


# helper columns of the queries below; no feature is named so (features are the schema's)
_WINDOW_TAG = "_fraudlens_window"
_TOTAL = "_fraudlens_total"


def case_rows_of(con: duckdb.DuckDBPyConnection, model_id: str, windows: Sequence[Window],
                 threshold: float, features: list[str]) -> list[pd.DataFrame]:
    """`case_rows` of windows that do not overlap (a week and the week before), in one scan:
    one frame per window, exactly as the window's own query would give it."""
    if not windows:
        return []
    spans = sorted(windows, key=lambda w: w.since)
    if any(a.until > b.since for a, b in pairwise(spans)):
        raise ValidationError("Case windows must not overlap")
    hull = Window(spans[0].since, max(w.until for w in windows))
    cols = [c for c in features if c != AMOUNT_COLUMN]
    amount = (f"t.{quote_ident(AMOUNT_COLUMN)}" if AMOUNT_COLUMN in
              table_columns(con, "transactions") else "CAST(NULL AS DOUBLE)")
    feature_sql = "".join(f", t.{quote_ident(c)}" for c in cols)
    which = " ".join("WHEN t.event_time >= ? AND t.event_time < ? THEN ?" for _ in windows)
    bounds = [b for i, w in enumerate(windows) for b in (to_utc(w.since), to_utc(w.until), i)]
    frames = _fetch_parts(
        con,
        f"SELECT t.transaction_id, sc.score, l.is_fraud, {amount} AS {AMOUNT_COLUMN}"
        f"{feature_sql}, CASE {which} END AS {_WINDOW_TAG} {_RANGED_CASE_FROM} AND {_IS_CASE} "
        "ORDER BY t.transaction_id",
        [*bounds, *_ranged_params(con, model_id, hull, threshold)], len(windows))
    for frame in frames:
        frame["transaction_id"] = frame["transaction_id"].astype(str)
        frame["population"] = np.where(frame["score"] >= threshold, "flagged", "missed")
    return frames


def _fetch_parts(con: duckdb.DuckDBPyConnection, sql: str, params: list[object],
                 parts: int) -> list[pd.DataFrame]:
    """A query's rows split by its `_WINDOW_TAG` column (0 .. parts - 1; rows tagged otherwise
    are left out), one frame per part, in the query's order. Each part is turned into pandas
    by DuckDB itself, so its dtypes are those of a query of that part alone (an integer column
    is nullable only when that part has a missing value)."""
    cur = cursor_for(con)
    try:
        table = cur.sql(sql, params=params).to_arrow_table()
        tags = table[_WINDOW_TAG]
        table = table.drop_columns([_WINDOW_TAG])
        return [cur.from_arrow(table.filter(pc.fill_null(pc.equal(tags, i), False))).df()
                for i in range(parts)]
    except duckdb.Error as exc:
        raise WarehouseError(f"Warehouse query failed: {exc}") from None
    finally:
        cur.close()


def other_rows(con: duckdb.DuckDBPyConnection, model_id: str, window: Window,
               threshold: float, features: list[str], rows: int,
               seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded sample of the window's other transactions (not cases), and how many there are."""
    params = _window_params(model_id, window, threshold)
    cols = "".join(f", t.{quote_ident(c)}" for c in features)
    if int(rows) > 0:  # one scan: the count of all of them rides along with the sample
        sample = fetch_df(
            con,
            f"SELECT t.transaction_id{cols}, count(*) OVER () AS {_TOTAL} {_RANGED_CASE_FROM} "
            f"AND NOT {_IS_CASE} ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
            [*_ranged_params(con, model_id, window, threshold), str(seed), int(rows)])
        total = sample[_TOTAL].iloc[0] if len(sample) else 0
        return sample.drop(columns=_TOTAL), int(total)
    total = fetch_df(con, f"SELECT count(*) AS n {_CASE_FROM} AND NOT {_IS_CASE}",
                     params)["n"].iloc[0]
    sample = fetch_df(
        con,
        f"SELECT t.transaction_id{cols} {_CASE_FROM} AND NOT {_IS_CASE} "
        "ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
        [*params, str(seed), int(rows)])
    return sample, int(total)



def stored_shap_rows(con: duckdb.DuckDBPyConnection, model_id: str, names: list[str],
                     transaction_ids: Sequence[str]) -> pd.DataFrame | None:
    """The cases' stored SHAP rows: those of these transactions
    (ids as one list parameter; their range lets the scan skip files of other days), indexed
    by transaction_id (text); None when the model has no store or it holds other features."""
    stored = stored_table(con, model_id)
    if stored is None:
        return None
    table, store_names = stored
    if list(store_names) != names:
        return None
    ids = sorted({str(i) for i in transaction_ids})
    cols = ", ".join(f"s.{quote_ident(n)}" for n in names)
    if ids:
        got = fetch_df(
            con,
            f"SELECT s.transaction_id, {cols} FROM {quote_ident(table)} s "
            "WHERE s.transaction_id >= ? AND s.transaction_id <= ? "
            "AND s.transaction_id IN (SELECT unnest(CAST(? AS VARCHAR[])))",
            [ids[0], ids[-1], ids])
    else:
        got = fetch_df(con, f"SELECT s.transaction_id, {cols} FROM {quote_ident(table)} s "
                            "WHERE FALSE")
    got["transaction_id"] = got["transaction_id"].astype(str)
    return got.set_index("transaction_id")
