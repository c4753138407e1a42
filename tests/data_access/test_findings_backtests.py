"""One scan for many rules: `findings.backtests` gives, rule for rule, exactly the numbers of
`findings.backtest` (one scan per rule), on small seeded data with missing values."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

import duckdb
import numpy as np
import pandas as pd
import pytest

from data_access import findings
from explainers.errors import ValidationError
from explainers.rules import Condition

ALLOWED = ["amount_usd", "txn_count_1h", "new_device", "country"]
SINCE, UNTIL = date(2026, 3, 9), date(2026, 3, 16)


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    """Six weeks of seeded transactions (some values missing) and labels for some of them."""
    rng = np.random.default_rng(11)
    n = 6000
    start = pd.Timestamp("2026-02-01", tz="UTC")
    tx = pd.DataFrame({
        "transaction_id": [f"T{i:06d}" for i in range(n)],
        "event_time": start + pd.to_timedelta(np.sort(rng.uniform(0, 44 * 86400, n)), unit="s"),
        "amount_usd": np.where(rng.random(n) < 0.05, np.nan, rng.lognormal(4, 1.2, n)),
        "txn_count_1h": pd.array(np.where(rng.random(n) < 0.05, None, rng.poisson(2, n)),
                                 dtype="Int32"),
        "new_device": pd.array(np.where(rng.random(n) < 0.03, None, rng.random(n) < 0.2),
                               dtype="Int8"),
        "country": np.where(rng.random(n) < 0.04, None,
                            rng.choice(["US", "GB", "NG", "BR"], n)).astype(object),
    })
    labelled = rng.random(n) < 0.4
    labels = pd.DataFrame({"transaction_id": tx["transaction_id"][labelled],
                           "is_fraud": (rng.random(int(labelled.sum())) < 0.1).astype("int32")})
    c = duckdb.connect()
    c.register("tx_frame", tx)
    c.register("label_frame", labels)
    c.execute("CREATE TABLE transactions AS SELECT * FROM tx_frame")
    c.execute("CREATE TABLE labels AS SELECT * FROM label_frame")
    c.unregister("tx_frame")
    c.unregister("label_frame")
    yield c
    c.close()


RULES = [
    (Condition("amount_usd", ">", 120.0),),
    (Condition("amount_usd", "<=", 40.0, or_missing=True), Condition("new_device", "=", 1.0)),
    (Condition("txn_count_1h", ">=", 4.0), Condition("country", "in", levels=("NG", "BR"))),
    (Condition("country", "not in", levels=("US",), or_missing=True),),
    (Condition("txn_count_1h", "is missing"),),
    (Condition("amount_usd", "is present"), Condition("txn_count_1h", "<", 2.0),
     Condition("new_device", "=", 0.0, or_missing=True)),
    (Condition("amount_usd", ">", 120.0),),  # the same rule twice: counted once, given twice
    (),  # no conditions: every transaction
    (Condition("amount_usd", ">", 1e9),),  # no alerts at all
]


def _same(one: findings.Backtest, alone: findings.Backtest) -> None:
    assert (one.since, one.until) == (alone.since, alone.until)
    assert (one.alerts, one.labelled_alerts, one.fraud_alerts, one.fraud, one.window_alerts) \
        == (alone.alerts, alone.labelled_alerts, alone.fraud_alerts, alone.fraud,
            alone.window_alerts)
    for a, b in ((one.precision, alone.precision), (one.recall, alone.recall),
                 (one.alerts_per_day, alone.alerts_per_day)):
        assert a == b or (np.isnan(a) and np.isnan(b))
    pd.testing.assert_frame_equal(one.daily, alone.daily, check_exact=True)


def test_one_scan_equals_one_backtest_per_rule(con: duckdb.DuckDBPyConnection,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    queries: list[str] = []
    fetch = findings.fetch_df
    monkeypatch.setattr(findings, "fetch_df",
                        lambda c, sql, params=(): queries.append(sql) or fetch(c, sql, params))
    together = findings.backtests(con, RULES, ALLOWED, SINCE, UNTIL)
    assert len(queries) == 1  # one scan for all of them
    monkeypatch.undo()
    assert len(together) == len(RULES)
    for rule, one in zip(RULES, together, strict=True):
        _same(one, findings.backtest(con, rule, ALLOWED, SINCE, UNTIL))
    # the data exercise what they should: alerts, labels and fraud in and before the window
    first = together[0]
    assert first.window_alerts > 0 and first.alerts > first.window_alerts
    assert first.labelled_alerts > first.fraud_alerts > 0
    assert list(first.daily.columns) == ["day", "transactions", "alerts", "labelled_alerts",
                                         "fraud_alerts", "fraud"]
    assert first.daily["day"].iloc[0] == first.since  # 4 weeks before the window
    assert together[-1].alerts == 0 and together[-2].alerts == first.daily["transactions"].sum()


def test_one_scan_keeps_other_spans_and_refuses_what_backtest_refuses(
        con: duckdb.DuckDBPyConnection) -> None:
    together = findings.backtests(con, RULES[:3], ALLOWED, SINCE, UNTIL, weeks_before=1)
    for rule, one in zip(RULES[:3], together, strict=True):
        _same(one, findings.backtest(con, rule, ALLOWED, SINCE, UNTIL, weeks_before=1))
    assert findings.backtests(con, [], ALLOWED, SINCE, UNTIL) == []
    with pytest.raises(ValidationError):  # names come from the allowlist only
        findings.backtests(con, [RULES[0], (Condition("email", "in", levels=("x",)),)],
                           ALLOWED, SINCE, UNTIL)
    evil = (Condition("country", "in", levels=("' OR 1=1--",)),)
    assert findings.backtests(con, [evil], ALLOWED, SINCE, UNTIL)[0].alerts == 0
