"""Pattern findings in SQL: a rule as a parameterised WHERE clause, its backtest against labels,
and the journal tables that keep findings, their members and their annotations.

Rules come in as plain conditions (feature, op, threshold or levels, or_missing). Column names
are checked against an allowlist (the model's features present in `transactions`) and quoted
with `quote_ident`; every threshold and level is a parameter. Annotations are append-only:
each save is a new revision, written in one transaction with its audit record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import duckdb
import pandas as pd
import pyarrow as pa

from data_access.warehouse import fetch_df, quote_ident, run_sql, transaction
from explainers.errors import ValidationError, WarehouseError

__all__ = [
    "ANNOTATION_STATUSES",
    "FINDING_COLUMNS",
    "MEMBER_COLUMNS",
    "Annotation",
    "Backtest",
    "RuleCondition",
    "annotate",
    "annotation_history",
    "backtest",
    "ensure_findings_tables",
    "latest_annotations",
    "rule_where",
    "store_findings",
    "stored_findings",
    "stored_members",
]

ANNOTATION_STATUSES = ("new", "confirmed", "spurious", "needs-feature", "actioned")
BACKTEST_WEEKS = 4
_SQL_OPS = {"<=": "<=", "<": "<", ">": ">", ">=": ">=", "=": "="}

# The findings table as `app.patterns.findings_table` builds it, with SQL types. The journal
# stores it keyed by (model, window); the CSV export is the same rows without the *_json columns.
FINDING_COLUMNS: dict[str, str] = {
    "finding_id": "VARCHAR", "rank": "INTEGER", "population": "VARCHAR", "change": "VARCHAR",
    "cases": "INTEGER", "labelled": "INTEGER", "confirmed_fraud": "INTEGER",
    "confirmed_fraud_rate": "DOUBLE", "amount_at_risk_usd": "DOUBLE", "mean_score": "DOUBLE",
    "top_drivers": "VARCHAR", "rule": "VARCHAR", "rule_alerts_in_window": "INTEGER",
    "backtest_since": "VARCHAR", "backtest_alerts": "INTEGER",
    "backtest_alerts_per_day": "DOUBLE", "backtest_precision": "DOUBLE",
    "backtest_recall": "DOUBLE", "previous_finding_id": "VARCHAR", "similarity": "DOUBLE",
    "cases_previous_week": "INTEGER", "top_drift": "VARCHAR", "representative_cases": "VARCHAR",
    "model": "VARCHAR", "window_start": "VARCHAR", "window_end": "VARCHAR",
    "threshold": "DOUBLE", "seed": "INTEGER",
    "rule_json": "VARCHAR", "drivers_json": "VARCHAR", "backtest_daily_json": "VARCHAR",
    "drift_json": "VARCHAR",
}
MEMBER_COLUMNS: dict[str, str] = {
    "finding_id": "VARCHAR", "transaction_id": "VARCHAR", "distance": "DOUBLE",
    "representative": "BOOLEAN",
}
_KEY = {"model_id": "VARCHAR NOT NULL", "window_since": "DATE NOT NULL",
        "window_until": "DATE NOT NULL"}


def _ddl(table: str, columns: dict[str, str], extra: dict[str, str]) -> str:
    cols = {**extra, **columns}
    return (f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ("
            + ", ".join(f"{quote_ident(n)} {t}" for n, t in cols.items()) + ")")


FINDINGS_DDL = (
    _ddl("findings", FINDING_COLUMNS,
         {**_KEY, "mined_at": "TIMESTAMPTZ NOT NULL", "mined_by": "VARCHAR NOT NULL"}),
    _ddl("finding_members", MEMBER_COLUMNS, _KEY),
)


class RuleCondition(Protocol):
    """What a rule condition must offer (explainers.patterns.Condition does)."""

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


def _utc(day: date | datetime) -> datetime:
    if isinstance(day, datetime):
        return day.astimezone(UTC) if day.tzinfo else day.replace(tzinfo=UTC)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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
        [*params, _utc(start), _utc(until)])
    for col in ("transactions", "alerts", "labelled_alerts", "fraud_alerts", "fraud"):
        daily[col] = daily[col].astype("int64")
    daily["day"] = pd.to_datetime(daily["day"]).dt.date
    in_window = daily["day"] >= since
    return Backtest(start, until, int(daily["alerts"].sum()),
                    int(daily["labelled_alerts"].sum()), int(daily["fraud_alerts"].sum()),
                    int(daily["fraud"].sum()), int(daily.loc[in_window, "alerts"].sum()),
                    daily.reset_index(drop=True))


# --------------------------------------------------------------------------- journal tables


def ensure_findings_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create `findings` and `finding_members` in the journal if they are missing."""
    cur = con.cursor()
    try:
        for stmt in FINDINGS_DDL:
            run_sql(cur, stmt)
    finally:
        cur.close()


def _has_findings(con: duckdb.DuckDBPyConnection) -> bool:
    present = fetch_df(con, "SELECT table_name FROM information_schema.tables")
    return {"findings", "finding_members"} <= set(present["table_name"])


def store_findings(con: duckdb.DuckDBPyConnection, model_id: str, since: date, until: date,
                   findings: pd.DataFrame, members: pd.DataFrame, mined_by: str) -> None:
    """Replace the stored findings of (model, window) with these, in one transaction."""
    missing = [c for c in FINDING_COLUMNS if c not in findings.columns]
    missing += [c for c in MEMBER_COLUMNS if c not in members.columns]
    if missing:
        raise ValidationError(f"Findings to store lack column(s): {', '.join(missing)}")
    ensure_findings_tables(con)
    key = [model_id, since, until]
    staged = {"staging_findings": findings[list(FINDING_COLUMNS)],
              "staging_members": members[list(MEMBER_COLUMNS)]}
    now = datetime.now(UTC)
    cur = con.cursor()
    try:
        with transaction(cur):
            for table in ("findings", "finding_members"):
                run_sql(cur, f"DELETE FROM {quote_ident(table)} WHERE model_id = ? AND "
                             "window_since = ? AND window_until = ?", key)
            for name, frame in staged.items():
                cur.register(name, pa.Table.from_pandas(frame, preserve_index=False))
            try:
                run_sql(cur, "INSERT INTO findings BY NAME SELECT *, ? AS model_id, "
                             "? AS window_since, ? AS window_until, ? AS mined_at, "
                             "? AS mined_by FROM staging_findings", [*key, now, mined_by])
                run_sql(cur, "INSERT INTO finding_members BY NAME SELECT *, ? AS model_id, "
                             "? AS window_since, ? AS window_until FROM staging_members", key)
            finally:
                for name in staged:
                    cur.unregister(name)
    except duckdb.Error as exc:
        raise WarehouseError(f"Could not store the findings: {exc}") from None
    finally:
        cur.close()


def stored_findings(con: duckdb.DuckDBPyConnection, model_id: str, since: date,
                    until: date) -> pd.DataFrame:
    """The findings last mined for (model, window) as `findings_table` built them, by rank,
    plus `mined_at` and `mined_by`; empty when the window was never mined."""
    names = [*FINDING_COLUMNS, "mined_at", "mined_by"]
    if not _has_findings(con):
        return pd.DataFrame(columns=names)
    cols = ", ".join(quote_ident(c) for c in names)
    return fetch_df(con, f"SELECT {cols} FROM findings WHERE model_id = ? AND "
                         "window_since = ? AND window_until = ? ORDER BY rank",
                    [model_id, since, until])


def stored_members(con: duckdb.DuckDBPyConnection, model_id: str, since: date,
                   until: date) -> pd.DataFrame:
    """The members of the stored findings of (model, window)."""
    if not _has_findings(con):
        return pd.DataFrame(columns=list(MEMBER_COLUMNS))
    cols = ", ".join(quote_ident(c) for c in MEMBER_COLUMNS)
    return fetch_df(con, f"SELECT {cols} FROM finding_members WHERE model_id = ? AND "
                         "window_since = ? AND window_until = ? "
                         "ORDER BY finding_id, transaction_id", [model_id, since, until])


# --------------------------------------------------------------------------- annotations


@dataclass(frozen=True)
class Annotation:
    """One revision of an analyst's note on a finding."""

    finding_id: str
    revision: int
    title: str
    status: str
    owner: str
    notes: str
    author: str
    created_at: datetime


def annotate(con: duckdb.DuckDBPyConnection, finding_id: str, *, title: str, status: str,
             owner: str, notes: str, author: str,
             before_commit: Callable[[Annotation], None] | None = None,
             now: datetime | None = None) -> Annotation:
    """Append the next revision for a finding. `before_commit` (the audit record) runs inside
    the transaction: if it raises, no revision is stored."""
    if status not in ANNOTATION_STATUSES:
        raise ValidationError(f"Status must be one of {', '.join(ANNOTATION_STATUSES)}; "
                              f"got {status!r}")
    if not finding_id or not author:
        raise ValidationError("An annotation needs a finding id and an author")
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    cur = con.cursor()
    try:
        with transaction(cur):
            row = cur.execute("SELECT coalesce(max(revision), 0) FROM annotations "
                              "WHERE finding_id = ?", [finding_id]).fetchall()
            note = Annotation(finding_id, int(row[0][0]) + 1, title.strip(), status,
                              owner.strip(), notes.strip(), author, stamp)
            run_sql(cur, "INSERT INTO annotations (finding_id, revision, title, status, owner, "
                         "notes, author, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [note.finding_id, note.revision, note.title, note.status, note.owner,
                     note.notes, note.author, note.created_at])
            if before_commit is not None:
                before_commit(note)
    except duckdb.Error as exc:
        raise WarehouseError(f"Could not save the annotation: {exc}") from None
    finally:
        cur.close()
    return note


def annotation_history(con: duckdb.DuckDBPyConnection, finding_id: str) -> pd.DataFrame:
    """Every revision of one finding's annotation, newest first."""
    return fetch_df(con, "SELECT revision, title, status, owner, notes, author, created_at "
                         "FROM annotations WHERE finding_id = ? ORDER BY revision DESC",
                    [finding_id])


def latest_annotations(con: duckdb.DuckDBPyConnection,
                       finding_ids: Iterable[str]) -> pd.DataFrame:
    """The newest revision per finding, for the given ids."""
    ids = sorted(set(finding_ids))
    cols = ["finding_id", "revision", "title", "status", "owner", "notes", "author",
            "created_at"]
    if not ids:
        return pd.DataFrame(columns=cols)
    marks = ", ".join("?" for _ in ids)
    return fetch_df(con, f"SELECT {', '.join(cols)} FROM annotations WHERE finding_id IN "
                         f"({marks}) QUALIFY row_number() OVER (PARTITION BY finding_id "
                         "ORDER BY revision DESC) = 1 ORDER BY finding_id", ids)
