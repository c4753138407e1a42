"""The journal's tables, written once in neutral types and rendered for SQLite or PostgreSQL.

The journal holds the audit trail (`audit_log`), the pattern-review findings
(`findings`, `finding_members`) and their `annotations`. Column types here are the neutral
names the rest of the code already uses (VARCHAR, INTEGER, BIGINT, DOUBLE, BOOLEAN, DATE,
TIMESTAMPTZ); `render_ddl` maps them to each backend. SQLite keeps timestamps as fixed-width
ISO-8601 UTC text (microseconds, `+00:00`), so text order is time order.
"""

from __future__ import annotations

import re

__all__ = [
    "ANNOTATION_COLUMNS",
    "AUDIT_COLUMNS",
    "DISPOSITION_COLUMNS",
    "FINDING_COLUMNS",
    "JOURNAL_TABLES",
    "MEMBER_COLUMNS",
    "quote_ident",
    "render_ddl",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

AUDIT_COLUMNS: dict[str, str] = {
    "seq": "BIGINT NOT NULL PRIMARY KEY",
    "ts": "TIMESTAMPTZ NOT NULL",
    "actor": "VARCHAR NOT NULL",
    "role": "VARCHAR NOT NULL",
    "action": "VARCHAR NOT NULL",
    "target": "VARCHAR NOT NULL",
    "details": "VARCHAR NOT NULL",
    "outcome": "VARCHAR NOT NULL",
    "prev_hash": "VARCHAR NOT NULL",
    "hash": "VARCHAR NOT NULL UNIQUE",
}

# The findings table as `app.services.pattern_review.findings_table` builds it. The journal
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
ANNOTATION_COLUMNS: dict[str, str] = {
    "finding_id": "VARCHAR NOT NULL", "revision": "INTEGER NOT NULL", "title": "VARCHAR",
    "status": "VARCHAR NOT NULL", "owner": "VARCHAR", "notes": "VARCHAR",
    "author": "VARCHAR NOT NULL", "created_at": "TIMESTAMPTZ NOT NULL",
}
DISPOSITION_COLUMNS: dict[str, str] = {
    "transaction_id": "VARCHAR NOT NULL", "revision": "INTEGER NOT NULL",
    "model_id": "VARCHAR", "outcome": "VARCHAR", "typology": "VARCHAR",
    "assignee": "VARCHAR", "notes": "VARCHAR", "author": "VARCHAR NOT NULL",
    "created_at": "TIMESTAMPTZ NOT NULL",
}
_KEY = {"model_id": "VARCHAR NOT NULL", "window_since": "DATE NOT NULL",
        "window_until": "DATE NOT NULL"}

# table -> (columns, table constraints)
JOURNAL_TABLES: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "audit_log": (AUDIT_COLUMNS, ()),
    "findings": ({**_KEY, **FINDING_COLUMNS, "mined_at": "TIMESTAMPTZ NOT NULL",
                  "mined_by": "VARCHAR NOT NULL"}, ()),
    "finding_members": ({**_KEY, **MEMBER_COLUMNS}, ()),
    "annotations": (ANNOTATION_COLUMNS, ("PRIMARY KEY (finding_id, revision)",)),
    "dispositions": (DISPOSITION_COLUMNS, ("PRIMARY KEY (transaction_id, revision)",)),
}
INDEXES = (
    "CREATE INDEX IF NOT EXISTS findings_window ON findings "
    "(model_id, window_since, window_until)",
    "CREATE INDEX IF NOT EXISTS finding_members_window ON finding_members "
    "(model_id, window_since, window_until)",
    "CREATE INDEX IF NOT EXISTS audit_log_ts ON audit_log (ts)",
    "CREATE INDEX IF NOT EXISTS dispositions_created ON dispositions (created_at)",
)

_TYPES = {
    "sqlite": {"VARCHAR": "TEXT", "INTEGER": "INTEGER", "BIGINT": "INTEGER", "DOUBLE": "REAL",
               "BOOLEAN": "INTEGER", "DATE": "TEXT", "TIMESTAMPTZ": "TEXT"},
    "postgresql": {"VARCHAR": "TEXT", "INTEGER": "INTEGER", "BIGINT": "BIGINT",
                   "DOUBLE": "DOUBLE PRECISION", "BOOLEAN": "BOOLEAN", "DATE": "DATE",
                   "TIMESTAMPTZ": "TIMESTAMPTZ"},
}


def quote_ident(name: str) -> str:
    """Quote a table or column name that passes the identifier allowlist."""
    if not _IDENT.match(name):
        raise ValueError(f"{name!r} is not an allowed journal identifier")
    return f'"{name}"'


def base_type(declared: str) -> str:
    """The neutral type of a column declaration ("VARCHAR NOT NULL" -> "VARCHAR")."""
    return declared.split()[0]


def _column(dialect: str, name: str, declared: str) -> str:
    first, *rest = declared.split()
    return " ".join([quote_ident(name), _TYPES[dialect][first], *rest])


def render_ddl(dialect: str) -> list[str]:
    """CREATE TABLE / INDEX IF NOT EXISTS statements for every journal table."""
    out = []
    for table, (columns, constraints) in JOURNAL_TABLES.items():
        parts = [_column(dialect, n, t) for n, t in columns.items()] + list(constraints)
        out.append(f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} ({', '.join(parts)})")
    return out + list(INDEXES)
