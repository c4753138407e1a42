"""The DuckDB warehouse: one file per workspace, hardened connections, parameterised SQL.

Readers (the app) open it read-only with external access, extension loading, replacement
scans and configuration changes all off. Writers (CLI jobs, annotations, audit) go through
`open_writer`, which is hardened the same way but may write. Identifiers only ever come from
`quote_ident` over names checked against an allowlist.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from explainers.errors import ValidationError, WarehouseError

WAREHOUSE_FILE = "warehouse.duckdb"
CORE_COLUMNS = ("transaction_id", "account_id", "event_time")
REQUIRED_TABLES = ("transactions", "labels", "models", "scores")
HARDENED = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,
    "lock_configuration": True,
}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

DDL = (
    """CREATE TABLE IF NOT EXISTS labels (
        transaction_id VARCHAR NOT NULL, is_fraud TINYINT NOT NULL,
        label_time TIMESTAMPTZ NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS models (
        model_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
        framework VARCHAR NOT NULL, stage VARCHAR NOT NULL, sha256 VARCHAR NOT NULL,
        roc_auc DOUBLE, pr_auc DOUBLE, manifest VARCHAR NOT NULL, synced_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS scores (
        model_id VARCHAR NOT NULL, transaction_id VARCHAR NOT NULL, score DOUBLE NOT NULL,
        margin DOUBLE NOT NULL, flagged BOOLEAN NOT NULL, scored_at TIMESTAMPTZ NOT NULL)""",
)


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: Iterable[object] = ()) -> None:
    """Execute a statement and drain its result, so the connection is free for the next."""
    con.execute(sql, list(params)).fetchall()


def quote_ident(name: str) -> str:
    """Quote an identifier that has already passed the allowlist pattern."""
    if not _IDENT.match(name):
        raise ValidationError(f"{name!r} is not an allowed column or table name")
    return f'"{name}"'


def workspace_dir(workspace: str | os.PathLike[str] | None = None) -> Path:
    return Path(workspace or os.environ.get("FRAUDLENS_WORKSPACE") or "workspace")


def warehouse_path(workspace: str | os.PathLike[str] | None = None) -> Path:
    return workspace_dir(workspace) / WAREHOUSE_FILE


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(str(path), read_only=read_only, config=dict(HARDENED))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise WarehouseError(
                f"The warehouse {path} is locked by another process (a fraudlens command may "
                "be writing to it). Wait for it to finish, then retry.") from None
        raise WarehouseError(f"Cannot open the warehouse {path}: {exc}") from None
    except duckdb.Error as exc:
        raise WarehouseError(f"{path} is not a FraudLens warehouse: {exc}") from None


def check_schema(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}
    missing = [t for t in REQUIRED_TABLES if t not in present]
    if missing:
        raise WarehouseError(
            f"{path} is not a FraudLens warehouse (missing tables: {', '.join(missing)}). "
            "Build one with `fraudlens demo` or `fraudlens import transactions FILE`.")


def open_reader(workspace: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only hardened connection; never creates a warehouse."""
    path = warehouse_path(workspace)
    if not path.is_file():
        raise WarehouseError(
            f"No warehouse at {path}. Build the demo workspace with `fraudlens demo`, or "
            "import data with `fraudlens import transactions FILE --labels FILE`.")
    con = _connect(path, read_only=True)
    try:
        check_schema(con, path)
    except WarehouseError:
        con.close()
        raise
    return con


def open_writer(workspace: str | os.PathLike[str] | None = None, *,
                create: bool = False) -> duckdb.DuckDBPyConnection:
    """A hardened read-write connection, for jobs and the small write path."""
    path = warehouse_path(workspace)
    if not path.is_file() and not create:
        raise WarehouseError(f"No warehouse at {path}; run `fraudlens demo` or import data")
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path, read_only=False)
    for stmt in DDL:
        run_sql(con, stmt)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing: a failure inside leaves the warehouse as it was."""
    run_sql(con, "BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        run_sql(con, "ROLLBACK")
        raise
    run_sql(con, "COMMIT")


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()
    return {r[0]: r[1] for r in rows}


@dataclass(frozen=True)
class ImportResult:
    transactions_added: int
    transactions_skipped: int
    labels_added: int


def _staged(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> None:
    con.register(name, pa.Table.from_pandas(df, preserve_index=False))


def normalise_transactions(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in CORE_COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError(f"Transactions are missing required column(s): {', '.join(missing)}")
    bad = [c for c in df.columns if not _IDENT.match(str(c))]
    if bad:
        raise ValidationError(f"Column names must be plain identifiers: {', '.join(map(str, bad))}")
    out = df.copy()
    out["transaction_id"] = out["transaction_id"].astype("string")
    out["account_id"] = out["account_id"].astype("string")
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("string")  # stored as VARCHAR, levels live in schemas
    try:
        out["event_time"] = pd.to_datetime(out["event_time"], utc=True)
    except (ValueError, TypeError) as exc:
        raise ValidationError(f"event_time is not a timestamp: {exc}") from None
    if out["transaction_id"].isna().any():
        raise ValidationError("transaction_id has empty values")
    if out["transaction_id"].duplicated().any():
        raise ValidationError("transaction_id values are not unique in the file")
    return out


def normalise_labels(df: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("transaction_id", "is_fraud", "label_time") if c not in df.columns]
    if missing:
        raise ValidationError(f"Labels are missing required column(s): {', '.join(missing)}")
    out = df[["transaction_id", "is_fraud", "label_time"]].copy()
    out["transaction_id"] = out["transaction_id"].astype("string")
    if not out["is_fraud"].isin([0, 1]).all():
        raise ValidationError("is_fraud must be 0 or 1")
    out["is_fraud"] = out["is_fraud"].astype("int8")
    out["label_time"] = pd.to_datetime(out["label_time"], utc=True)
    return out


def import_frames(con: duckdb.DuckDBPyConnection, transactions: pd.DataFrame | None,
                  labels: pd.DataFrame | None = None) -> ImportResult:
    """Append transactions (and labels) not already present; inside one transaction."""
    added = skipped = labels_added = 0
    with transaction(con):
        if transactions is not None:
            txns = normalise_transactions(transactions)
            _staged(con, "staging_txn", txns)
            try:
                if "transactions" not in table_names(con):
                    run_sql(con, "CREATE TABLE transactions AS SELECT * FROM staging_txn LIMIT 0")
                existing = table_columns(con, "transactions")
                for col in txns.columns:
                    if col not in existing:
                        dtype = con.execute(
                            "SELECT data_type FROM (DESCRIBE staging_txn) "
                            "WHERE column_name = ?", [col]).fetchall()[0][0]
                        run_sql(con, f"ALTER TABLE transactions ADD COLUMN {quote_ident(col)} "
                                    f"{_sql_type(dtype)}")
                before = con.execute("SELECT count(*) FROM transactions").fetchall()[0][0]
                run_sql(
                    con, "INSERT INTO transactions BY NAME SELECT s.* FROM staging_txn s "
                    "ANTI JOIN transactions t USING (transaction_id)")
                added = con.execute("SELECT count(*) FROM transactions").fetchall()[0][0] - before
                skipped = len(txns) - added
            finally:
                con.unregister("staging_txn")
        if labels is not None:
            labs = normalise_labels(labels)
            _staged(con, "staging_labels", labs)
            try:
                before = con.execute("SELECT count(*) FROM labels").fetchall()[0][0]
                run_sql(
                    con, "INSERT INTO labels SELECT s.* FROM staging_labels s "
                    "ANTI JOIN labels l USING (transaction_id)")
                labels_added = con.execute("SELECT count(*) FROM labels").fetchall()[0][0] - before
            finally:
                con.unregister("staging_labels")
    return ImportResult(added, skipped, labels_added)


_SQL_TYPES = {"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "BOOLEAN",
              "VARCHAR", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP", "DATE", "HUGEINT", "UBIGINT",
              "UINTEGER", "USMALLINT", "UTINYINT"}


def _sql_type(dtype: str) -> str:
    return dtype if dtype in _SQL_TYPES else "VARCHAR"


def fetch_df(con: duckdb.DuckDBPyConnection, sql: str,
             params: Iterable[object] = ()) -> pd.DataFrame:
    """Run a parameterised query on a fresh cursor and return a frame."""
    cur = con.cursor()
    try:
        return cur.execute(sql, list(params)).df()
    except duckdb.Error as exc:
        raise WarehouseError(f"Warehouse query failed: {exc}") from None
    finally:
        cur.close()


JOURNAL_FILE = "journal.duckdb"
JOURNAL_DDL = (
    """CREATE TABLE IF NOT EXISTS annotations (
        finding_id VARCHAR NOT NULL, revision INTEGER NOT NULL, title VARCHAR,
        status VARCHAR NOT NULL, owner VARCHAR, notes VARCHAR, author VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL)""",
)


def open_journal(workspace: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """The small write path beside the read-only warehouse: audit trail and annotations.

    DuckDB lets one process hold a file either read-only or read-write, so the app keeps the
    warehouse read-only and writes its few records to this second, equally hardened file.
    """
    from data_access.audit import ensure_audit_table

    folder = workspace_dir(workspace)
    if not folder.is_dir():
        raise WarehouseError(f"No workspace at {folder}; run `fraudlens demo` first")
    con = _connect(folder / JOURNAL_FILE, read_only=False)
    ensure_audit_table(con)
    for stmt in JOURNAL_DDL:
        run_sql(con, stmt)
    return con
