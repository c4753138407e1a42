"""The two places a journal can live: a SQLite file in WAL mode (one machine, many processes)
or a PostgreSQL database through psycopg 3 (past one machine).

Each backend opens a fresh connection per transaction (sqlite3 and psycopg connections are
never shared between threads), starts write transactions so that appends are serialised
(SQLite: `BEGIN IMMEDIATE` takes the database's write lock; PostgreSQL: a transaction-level
advisory lock per chain), and adapts Python values to what its driver stores. SQL is written
once with `?` placeholders; PostgreSQL's are rewritten to `%s`. Values are always parameters.
"""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

__all__ = ["BUSY_TIMEOUT_S", "Backend", "PostgresBackend", "SQLiteBackend", "iso_utc"]

BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10


def iso_utc(ts: datetime) -> str:
    """Fixed-width ISO-8601 in UTC with microseconds: text order is time order."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime stored in the journal; use a timezone-aware one")
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def _plain(value: Any) -> Any:
    """numpy/pandas scalars as plain Python; NaN, NaT and NA as None (NULL)."""
    if value is None:
        return None
    if hasattr(value, "to_pydatetime"):  # pandas Timestamp (NaT included)
        value = None if value != value else value.to_pydatetime()
    elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        if value is not None and not isinstance(value, (str, bytes)) and value != value:
            return None  # pandas NA and friends
    except (TypeError, ValueError):
        return None
    return value


class Backend:
    """What the journal needs from a database (see the two implementations below)."""

    dialect = ""
    location = ""  # identifies the database, for messages and per-thread transactions
    errors: tuple[type[BaseException], ...] = ()

    def connect(self) -> Any:
        raise NotImplementedError

    def begin_write(self, con: Any) -> None:
        raise NotImplementedError

    def begin_read(self, con: Any) -> None:
        raise NotImplementedError

    def lock(self, con: Any, name: str) -> None:
        """Serialise writers of one chain (audit trail, annotations) until the commit."""

    def sql(self, text: str) -> str:
        return text

    def adapt(self, value: Any) -> Any:
        return _plain(value)

    def has_table(self, con: Any, name: str) -> bool:
        raise NotImplementedError

    def stream(self, con: Any, sql: str, params: list[Any], batch: int) -> Any:
        cur = con.cursor()
        cur.execute(self.sql(sql), params)
        while rows := cur.fetchmany(batch):
            yield from rows
        cur.close()


class SQLiteBackend(Backend):
    """`<workspace>/journal.sqlite` in WAL mode: readers never block the writer, writers queue
    for the write lock (busy timeout), and a commit is durable (`synchronous = FULL`)."""

    dialect = "sqlite"
    errors = (sqlite3.Error,)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.location = str(self.path.resolve())

    def exists(self) -> bool:
        return self.path.is_file()

    def _open(self, mode: str) -> sqlite3.Connection:
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        con.execute("PRAGMA synchronous = FULL")
        return con

    def create(self) -> None:
        """Create the file (if needed) and switch it to WAL mode, which is persistent."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open("rwc")
        try:
            mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"could not switch {self.path} to WAL ({mode})")
        finally:
            con.close()

    def connect(self) -> sqlite3.Connection:
        return self._open("rw")  # never creates: a deleted journal stays missing

    def begin_write(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")

    def begin_read(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN")

    def adapt(self, value: Any) -> Any:
        value = _plain(value)
        if isinstance(value, datetime):
            return iso_utc(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
        return value

    def has_table(self, con: sqlite3.Connection, name: str) -> bool:
        rows = con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                           "name = ?", [name]).fetchall()
        return bool(rows[0][0])


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


class PostgresBackend(Backend):
    """A PostgreSQL database (FRAUDLENS_JOURNAL_URL=postgresql://…), session time zone UTC."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg

        self._psycopg = psycopg
        self.url = url
        self.location = _redact(url)
        self.errors = (psycopg.Error,)

    def connect(self) -> Any:
        return self._psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=CONNECT_TIMEOUT_S,
                                     options="-c timezone=UTC")

    def begin_write(self, con: Any) -> None:
        con.execute("BEGIN ISOLATION LEVEL READ COMMITTED")

    def begin_read(self, con: Any) -> None:
        con.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def lock(self, con: Any, name: str) -> None:
        key = int.from_bytes(hashlib.sha256(f"fraudlens:{name}".encode()).digest()[:8],
                             "big", signed=True)
        con.execute("SELECT pg_advisory_xact_lock(%s)", [key])

    def sql(self, text: str) -> str:
        if "%" in text:
            raise ValueError("journal SQL must not contain '%'; use ? placeholders")
        return text.replace("?", "%s")

    def has_table(self, con: Any, name: str) -> bool:
        row = con.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()
        return bool(row[0])

    def stream(self, con: Any, sql: str, params: list[Any], batch: int) -> Any:
        with con.cursor(name="journal_stream") as cur:  # server-side, inside the transaction
            cur.execute(self.sql(sql), params)
            while rows := cur.fetchmany(batch):
                yield from rows
