"""The pattern review's reads, made cheaper, return exactly what the plain queries return: the
cases with the window's id range on the joins, the background sample with its count in one
scan, and the stored SHAP rows fetched by the cases' ids."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from data_access import review_queries as rq
from data_access.shap_store import stored_table
from data_access.warehouse import fetch_df, quote_ident
from data_access.workspace import Workspace
from explainers.errors import ValidationError
from explainers.timeutil import to_utc

MODEL = "fraud_xgb@1"
THRESHOLD = 0.5
EMPTY = rq.Window(date(2027, 1, 4), date(2027, 1, 11))


@pytest.fixture(scope="module")
def reader(demo_workspace: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, list[str]]]:
    ws = Workspace(demo_workspace)
    con = ws.reader()
    try:
        yield con, list(ws.registry.load(MODEL).schema.names)
    finally:
        con.close()


def _windows(con: duckdb.DuckDBPyConnection) -> list[rq.Window]:
    week = rq.last_full_week(con)
    assert week is not None
    return [week, week.previous(), EMPTY]


def _plain_cases(con: duckdb.DuckDBPyConnection, window: rq.Window,
                 features: list[str]) -> pd.DataFrame:
    cols = "".join(f", t.{quote_ident(c)}" for c in features if c != rq.AMOUNT_COLUMN)
    frame = fetch_df(
        con, f"SELECT t.transaction_id, sc.score, l.is_fraud, t.amount_usd AS amount_usd{cols} "
             f"{rq._CASE_FROM} AND {rq._IS_CASE} ORDER BY t.transaction_id",
        rq._window_params(MODEL, window, THRESHOLD))
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    frame["population"] = np.where(frame["score"] >= THRESHOLD, "flagged", "missed")
    return frame


def test_cases_with_the_id_range_are_the_plain_query_s_cases(reader) -> None:
    con, features = reader
    for window in _windows(con):
        got = rq.case_rows(con, MODEL, window, THRESHOLD, features)
        pd.testing.assert_frame_equal(got, _plain_cases(con, window, features),
                                      check_exact=True)
        assert len(got) or window == EMPTY


def test_background_sample_and_count_in_one_scan_equal_the_two_queries(reader) -> None:
    con, features = reader
    for window in _windows(con):
        params = rq._window_params(MODEL, window, THRESHOLD)
        cols = "".join(f", t.{quote_ident(c)}" for c in features)
        for rows, seed in ((500, 7), (10**7, 3), (0, 7)):
            total = fetch_df(con, f"SELECT count(*) AS n {rq._CASE_FROM} AND NOT {rq._IS_CASE}",
                             params)["n"].iloc[0]
            plain = fetch_df(
                con, f"SELECT t.transaction_id{cols} {rq._CASE_FROM} AND NOT {rq._IS_CASE} "
                     "ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
                [*params, str(seed), rows])
            sample, count = rq.other_rows(con, MODEL, window, THRESHOLD, features, rows, seed)
            assert count == int(total)
            pd.testing.assert_frame_equal(sample, plain, check_exact=True)
            assert (count > 0) or window == EMPTY


def _stored_case_shap_by_window(con, names: list[str], window: rq.Window) -> pd.DataFrame:
    """The plain query: the window's cases' stored SHAP rows, joined through the window."""
    table, _ = stored_table(con, MODEL)
    cols = ", ".join(f"s.{quote_ident(n)}" for n in names)
    got = fetch_df(
        con,
        f"SELECT s.transaction_id, {cols} FROM {quote_ident(table)} s "
        "JOIN transactions t ON t.transaction_id = s.transaction_id "
        "JOIN scores sc ON sc.transaction_id = s.transaction_id AND sc.model_id = ? "
        "LEFT JOIN labels l ON l.transaction_id = s.transaction_id "
        "WHERE t.event_time >= ? AND t.event_time < ? "
        "AND (sc.score >= ? OR coalesce(l.is_fraud, 0) = 1)",
        [MODEL, to_utc(window.since), to_utc(window.until), THRESHOLD])
    got["transaction_id"] = got["transaction_id"].astype(str)
    return got.set_index("transaction_id")


def test_stored_shap_by_case_ids_equals_the_window_s_stored_shap(reader) -> None:
    con, features = reader
    for window in _windows(con):
        cases = rq.case_rows(con, MODEL, window, THRESHOLD, features)
        by_ids = rq.stored_shap_rows(con, MODEL, features, cases["transaction_id"])
        by_window = _stored_case_shap_by_window(con, features, window)
        assert by_ids is not None and by_window is not None
        pd.testing.assert_frame_equal(by_ids.sort_index(), by_window.sort_index(),
                                      check_exact=True)
        assert len(by_ids) == len(cases)  # the demo stores SHAP for every scored row
    assert rq.stored_shap_rows(con, MODEL, features[::-1], ["T1"]) is None  # other features
    assert rq.stored_shap_rows(con, "no_such_model@1", features, ["T1"]) is None


def test_cases_of_two_weeks_in_one_scan_are_each_week_s_own_cases(reader) -> None:
    con, features = reader
    week, before, empty = _windows(con)
    for windows in ([week, before], [before, week], [empty, week], [week]):
        frames = rq.case_rows_of(con, MODEL, windows, THRESHOLD, features)
        assert len(frames) == len(windows)
        for window, frame in zip(windows, frames, strict=True):
            pd.testing.assert_frame_equal(frame, _plain_cases(con, window, features),
                                          check_exact=True)
    assert rq.case_rows_of(con, MODEL, [], THRESHOLD, features) == []
    with pytest.raises(ValidationError, match="overlap"):
        rq.case_rows_of(con, MODEL, [week, rq.Window(week.since, week.until + timedelta(1))],
                        THRESHOLD, features)
