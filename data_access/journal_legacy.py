"""One-time import of a workspace's old DuckDB journal (`journal.duckdb`) into the new one.

Earlier versions kept the audit trail and annotations in `journal.duckdb`. The first time a
workspace's SQLite journal is created, whatever that file holds is copied over verbatim (every
audit record keeps its seq, timestamp and hashes, so the chain still verifies), into a
temporary file that is linked into place only once complete (and only if no journal appeared
meanwhile). The old file is left as it was.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from data_access.audit_checkpoints import CheckpointLog
from data_access.journal_backends import SQLiteBackend
from data_access.journal_schema import JOURNAL_TABLES, quote_ident

__all__ = ["LEGACY_FILE", "import_legacy"]

LEGACY_FILE = "journal.duckdb"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_READ_ONLY = {"enable_external_access": False, "autoload_known_extensions": False,
              "autoinstall_known_extensions": False, "lock_configuration": True}


def _legacy_rows(con: duckdb.DuckDBPyConnection, table: str) -> tuple[list[str], list[tuple]]:
    present = {r[0]: r[1] for r in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
        [table]).fetchall()}
    columns = [c for c in JOURNAL_TABLES[table][0] if c in present]
    if not columns:
        return [], []
    select = ", ".join(f"epoch_us({quote_ident(c)})" if present[c].startswith("TIMESTAMP")
                       else quote_ident(c) for c in columns)
    rows = con.execute(f"SELECT {select} FROM {quote_ident(table)}").fetchall()
    stamps = [i for i, c in enumerate(columns) if present[c].startswith("TIMESTAMP")]
    if stamps:
        rows = [tuple(_EPOCH + timedelta(microseconds=v) if i in stamps and v is not None
                      else v for i, v in enumerate(r)) for r in rows]
    return columns, rows


def import_legacy(folder: Path, target: SQLiteBackend, checkpoints: CheckpointLog) -> int:
    """Build `target` from `<folder>/journal.duckdb`; the number of audit records copied.
    Raises duckdb.Error or sqlite3.Error (the target is then left absent)."""
    from data_access.journal import Journal

    legacy = duckdb.connect(str(folder / LEGACY_FILE), read_only=True, config=dict(_READ_ONLY))
    staging = SQLiteBackend(target.path.with_name(f"{target.path.name}.importing-{os.getpid()}"))
    with contextlib.suppress(FileNotFoundError):
        staging.path.unlink()
    try:
        staging.create()
        journal = Journal(staging, checkpoints)
        journal.ensure_schema()
        head: tuple[int, str] | None = None
        with journal.write(lock="import") as s:
            for table in JOURNAL_TABLES:
                columns, rows = _legacy_rows(legacy, table)
                marks = ", ".join("?" for _ in columns)
                s.executemany(f"INSERT INTO {quote_ident(table)} "
                              f"({', '.join(map(quote_ident, columns))}) VALUES ({marks})", rows)
            last = s.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            head = (int(last[0][0]), str(last[0][1])) if last else None
        try:
            os.link(staging.path, target.path)  # only if absent: never over a live journal
        except FileExistsError:
            return 0  # another process imported it first
    finally:
        legacy.close()
        with contextlib.suppress(FileNotFoundError):
            staging.path.unlink()
    if head is not None:
        checkpoints.append(*head)
    return head[0] if head else 0
