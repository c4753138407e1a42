"""Pattern findings in SQL over the warehouse: a rule as a parameterised WHERE clause, and its
backtest against labels.

Rules come in as plain conditions (feature, op, threshold or levels, or_missing). Column names
are checked against an allowlist (the model's features present in `transactions`) and quoted
with `quote_ident`; every threshold and level is a parameter. The findings, their members and
their annotations are kept in the journal: see `data_access.review_journal`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Protocol

import duckdb
import pandas as pd

from data_access.journal_schema import FINDING_COLUMNS, MEMBER_COLUMNS
from data_access.warehouse import fetch_df, quote_ident
from explainers.errors import ValidationError
from explainers.timeutil import to_utc

__all__ = [
    "FINDING_COLUMNS",
    "MEMBER_COLUMNS",
    "Backtest",
    "RuleCondition",
    "backtest",
    "backtests",
    "rule_where",
]

BACKTEST_WEEKS = 4
_SQL_OPS = {"<=": "<=", "<": "<", ">": ">", ">=": ">=", "=": "="}


class RuleCondition(Protocol):
    """What a rule condition must offer (explainers.rules.Condition does)."""

    feature: str
    op: str
    threshold: float | None
    levels: tuple[str, ...]
    or_missing: bool


def rule_where(conditions: Sequence[RuleCondition], allowed: Collection[str],
               alias: str = "t") -> tuple[str, list[object]]:
    """A rule as SQL over `alias` (transactions): identifiers from the allowlist only, values
    as parameters. A missing value fails a test unless the condition is `or_missing`."""
    prefix = f"{quote_ident(alias)}."
    clauses: list[str] = []
    params: list[object] = []
    for c in conditions:
        if c.feature not in allowed:
            raise ValidationError(f"Rule feature {c.feature!r} is not a known feature column")
        col = prefix + quote_ident(c.feature)
        if c.op in ("is missing", "is present"):
            clauses.append(f"({col} IS {'NULL' if c.op == 'is missing' else 'NOT NULL'})")
            continue
        if c.op in ("in", "not in"):
            if not c.levels:
                raise ValidationError(f"Rule condition on {c.feature} has no levels")
            marks = ", ".join("?" for _ in c.levels)
            test = f"CAST({col} AS VARCHAR) {'IN' if c.op == 'in' else 'NOT IN'} ({marks})"
            params.extend(str(v) for v in c.levels)
        elif c.op in _SQL_OPS:
            if c.threshold is None or not math.isfinite(float(c.threshold)):
                raise ValidationError(f"Rule condition on {c.feature} needs a finite threshold")
            test = f"{col} {_SQL_OPS[c.op]} ?"
            params.append(float(c.threshold))
        else:
            raise ValidationError(f"Unknown rule operator {c.op!r}")
        clauses.append(f"({test} OR {col} IS NULL)" if c.or_missing else f"({test} IS TRUE)")
    return (" AND ".join(clauses) or "TRUE"), params


@dataclass(frozen=True, eq=False)
class Backtest:
    """A rule replayed over a window and the weeks before it, against the labels known now.

    precision = labelled fraud among alerts / labelled alerts; recall = labelled fraud among
    alerts / all labelled fraud; both over the whole span. `daily` has one row per UTC day.
    """

    since: date
    until: date
    alerts: int
    labelled_alerts: int
    fraud_alerts: int
    fraud: int
    window_alerts: int
    daily: pd.DataFrame

    @property
    def precision(self) -> float:
        return self.fraud_alerts / self.labelled_alerts if self.labelled_alerts else math.nan

    @property
    def recall(self) -> float:
        return self.fraud_alerts / self.fraud if self.fraud else math.nan

    @property
    def alerts_per_day(self) -> float:
        days = (self.until - self.since).days
        return self.alerts / days if days else math.nan


def backtest(con: duckdb.DuckDBPyConnection, conditions: Sequence[RuleCondition],
             allowed: Collection[str], since: date, until: date,
             weeks_before: int = BACKTEST_WEEKS) -> Backtest:
    """Replay the rule over [since - weeks_before weeks, until) on the warehouse."""
    start = since - timedelta(weeks=weeks_before)
    where, params = rule_where(conditions, allowed)
    daily = fetch_df(
        con,
        "SELECT day, count(*) AS transactions, count(*) FILTER (WHERE hit) AS alerts, "
        "count(*) FILTER (WHERE hit AND labelled) AS labelled_alerts, "
        "count(*) FILTER (WHERE hit AND fraud) AS fraud_alerts, "
        "count(*) FILTER (WHERE fraud) AS fraud "
        "FROM (SELECT CAST(timezone('UTC', t.event_time) AS DATE) AS day, "
        f"coalesce({where}, FALSE) AS hit, l.transaction_id IS NOT NULL AS labelled, "
        "coalesce(l.is_fraud = 1, FALSE) AS fraud "
        "FROM transactions t LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
        "WHERE t.event_time >= ? AND t.event_time < ?) GROUP BY day ORDER BY day",
        [*params, to_utc(start).to_pydatetime(), to_utc(until).to_pydatetime()])
    return _backtest_of(daily, start, since, until)


def _backtest_of(daily: pd.DataFrame, start: date, since: date, until: date,
                 typed: bool = False) -> Backtest:
    """A Backtest from its daily counts (day, transactions, alerts, labelled_alerts,
    fraud_alerts, fraud); `typed`: counts already int64 and days already dates."""
    if not typed:
        _type_daily(daily)
    in_window = daily["day"] >= since
    return Backtest(start, until, int(daily["alerts"].sum()),
                    int(daily["labelled_alerts"].sum()), int(daily["fraud_alerts"].sum()),
                    int(daily["fraud"].sum()), int(daily.loc[in_window, "alerts"].sum()),
                    daily.reset_index(drop=True))


def _type_daily(daily: pd.DataFrame) -> None:
    """Every count as int64 and the day as a date, in place."""
    for col in list(daily.columns):
        if col != "day":
            daily[col] = daily[col].astype("int64")
    daily["day"] = pd.to_datetime(daily["day"]).dt.date


def backtests(con: duckdb.DuckDBPyConnection, rules: Sequence[Sequence[RuleCondition]],
              allowed: Collection[str], since: date, until: date,
              weeks_before: int = BACKTEST_WEEKS) -> list[Backtest]:
    """`backtest` for several rules over the same span, in one scan of the warehouse: one
    group of counts per distinct rule (columns named by position, values as parameters).
    Each Backtest holds exactly the numbers `backtest` gives for that rule alone."""
    if not rules:
        return []
    start = since - timedelta(weeks=weeks_before)
    slot: dict[tuple[str, tuple[object, ...]], int] = {}
    of_rule: list[int] = []
    hits: list[str] = []
    counts: list[str] = []
    params: list[object] = []
    for conditions in rules:
        where, values = rule_where(conditions, allowed)
        key = (where, tuple(values))
        if key not in slot:
            i = slot[key] = len(slot)
            hits.append(f"coalesce({where}, FALSE) AS hit_{i}")
            counts.append(f"count(*) FILTER (WHERE hit_{i}) AS alerts_{i}, "
                          f"count(*) FILTER (WHERE hit_{i} AND labelled) AS labelled_alerts_{i}, "
                          f"count(*) FILTER (WHERE hit_{i} AND fraud) AS fraud_alerts_{i}")
            params.extend(values)
        of_rule.append(slot[key])
    daily = fetch_df(
        con,
        "SELECT day, count(*) AS transactions, count(*) FILTER (WHERE fraud) AS fraud, "
        f"{', '.join(counts)} "
        "FROM (SELECT CAST(timezone('UTC', t.event_time) AS DATE) AS day, "
        f"{', '.join(hits)}, l.transaction_id IS NOT NULL AS labelled, "
        "coalesce(l.is_fraud = 1, FALSE) AS fraud "
        "FROM transactions t LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
        "WHERE t.event_time >= ? AND t.event_time < ?) GROUP BY day ORDER BY day",
        [*params, to_utc(start).to_pydatetime(), to_utc(until).to_pydatetime()])
    _type_daily(daily)
    out = []
    for i in of_rule:
        one = pd.DataFrame({
            "day": daily["day"], "transactions": daily["transactions"],
            "alerts": daily[f"alerts_{i}"], "labelled_alerts": daily[f"labelled_alerts_{i}"],
            "fraud_alerts": daily[f"fraud_alerts_{i}"], "fraud": daily["fraud"]})
        out.append(_backtest_of(one, start, since, until, typed=True))
    return out
