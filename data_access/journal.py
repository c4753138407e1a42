"""The journal: audit trail, pattern-review findings and annotations, written by the app and
any number of `fraudlens` processes at once.

Embedded default: `<workspace>/journal.sqlite`, SQLite in WAL mode (readers never wait, writers
queue with a busy timeout). Past one machine: `FRAUDLENS_JOURNAL_URL=postgresql://…`, the same
tables on PostgreSQL. Either way a `Journal` holds no connection between operations: each
transaction opens its own (so the object is safe to share between threads and to cache in the
app), and a transaction already open on this thread is joined rather than nested, so an
annotation and its audit record commit together. Work that must follow the commit (the audit
checkpoint) is queued with `after_commit`.

A journal that was deleted is never silently recreated: when the workspace's checkpoint log
(`audit-checkpoints.jsonl`) says records existed, opening it fails with `JournalMissingError`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from data_access.audit_checkpoints import CHECKPOINT_FILE, CheckpointLog
from data_access.journal_backends import Backend, PostgresBackend, SQLiteBackend
from data_access.journal_schema import base_type, render_ddl
from explainers.errors import AuditError, WarehouseError

__all__ = [
    "JOURNAL_FILE",
    "URL_ENV",
    "Journal",
    "JournalError",
    "JournalMissingError",
    "Session",
    "open_journal",
]

JOURNAL_FILE = "journal.sqlite"
URL_ENV = "FRAUDLENS_JOURNAL_URL"


class JournalError(WarehouseError, AuditError):
    """The journal cannot be opened, read or written (an audited action must not happen)."""


class JournalMissingError(JournalError):
    """The journal is gone although the checkpoint log says it held records."""


class Session:
    """One open transaction on one connection; every value goes in as a parameter."""

    def __init__(self, backend: Backend, con: Any) -> None:
        self._backend = backend
        self._con = con
        self._locks: set[str] = set()

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    def _fail(self, exc: BaseException) -> JournalError:
        return JournalError(f"Journal query failed ({self._backend.location}): {exc}")

    def lock(self, name: str) -> None:
        """Hold the named writer lock until this transaction ends (PostgreSQL advisory lock;
        SQLite's `BEGIN IMMEDIATE` already serialises every writer)."""
        if name not in self._locks:
            try:
                self._backend.lock(self._con, name)
            except self._backend.errors as exc:
                raise self._fail(exc) from None
            self._locks.add(name)

    def _params(self, params: Iterable[Any]) -> list[Any]:
        return [self._backend.adapt(v) for v in params]

    def execute(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (none for statements that return none)."""
        try:
            cur = self._con.cursor()
            try:
                cur.execute(self._backend.sql(sql), self._params(params))
                return list(cur.fetchall()) if cur.description else []
            finally:
                cur.close()
        except self._backend.errors as exc:
            raise self._fail(exc) from None

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        batch = [self._params(r) for r in rows]
        if not batch:
            return
        try:
            cur = self._con.cursor()
            try:
                cur.executemany(self._backend.sql(sql), batch)
            finally:
                cur.close()
        except self._backend.errors as exc:
            raise self._fail(exc) from None

    def stream(self, sql: str, params: Iterable[Any] = (), batch: int = 10_000
               ) -> Iterator[tuple[Any, ...]]:
        """Rows one at a time, fetched in batches (server-side on PostgreSQL)."""
        try:
            yield from self._backend.stream(self._con, sql, self._params(params), batch)
        except self._backend.errors as exc:
            raise self._fail(exc) from None

    def frame(self, sql: str, params: Iterable[Any], types: Mapping[str, str]) -> pd.DataFrame:
        """A query's rows as a frame, each column converted from its journal type."""
        try:
            cur = self._con.cursor()
            try:
                cur.execute(self._backend.sql(sql), self._params(params))
                names = [d[0] for d in cur.description]
                rows = cur.fetchall()
            finally:
                cur.close()
        except self._backend.errors as exc:
            raise self._fail(exc) from None
        df = pd.DataFrame.from_records(rows, columns=names)
        for name in names:
            df[name] = _convert(df[name], base_type(types.get(name, "VARCHAR")))
        return df

    def has_table(self, name: str) -> bool:
        try:
            return self._backend.has_table(self._con, name)
        except self._backend.errors as exc:
            raise self._fail(exc) from None


def _convert(col: pd.Series, kind: str) -> pd.Series:
    if kind in ("INTEGER", "BIGINT"):
        return col.astype("int64") if col.notna().all() else col.astype("Int64")
    if kind == "DOUBLE":
        return pd.to_numeric(col, errors="coerce").astype("float64")
    if kind == "BOOLEAN":
        return col.astype(bool) if col.notna().all() else col.astype("boolean")
    if kind == "TIMESTAMPTZ":
        return pd.to_datetime(col, utc=True, format="ISO8601")
    if kind == "DATE":
        return col.map(lambda v: date.fromisoformat(v) if isinstance(v, str) else v)
    return col.astype(object).where(col.notna(), None)


@dataclass
class _Tx:
    session: Session
    hooks: list[Callable[[], None]] = field(default_factory=list)


_LOCAL = threading.local()


def _active() -> dict[str, _Tx]:
    if not hasattr(_LOCAL, "tx"):
        _LOCAL.tx = {}
    return _LOCAL.tx


class Journal:
    """The journal's tables on one backend, plus the workspace's audit checkpoint log."""

    def __init__(self, backend: Backend, checkpoints: CheckpointLog) -> None:
        self._backend = backend
        self.checkpoints = checkpoints
        self._closed = False

    @property
    def dialect(self) -> str:
        return self._backend.dialect

    @property
    def location(self) -> str:
        return self._backend.location

    def __repr__(self) -> str:
        return f"Journal({self.dialect}: {self.location})"

    def close(self) -> None:
        """Refuse further use (no connection is held between operations)."""
        self._closed = True

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> Any:
        if self._closed:
            raise JournalError(f"The journal {self.location} is closed")
        if isinstance(self._backend, SQLiteBackend) and not self._backend.exists():
            raise JournalMissingError(
                f"The journal {self.location} is missing (deleted or moved while in use); "
                "restore it from a backup. FraudLens will not create an empty one in its place.")
        try:
            return self._backend.connect()
        except self._backend.errors as exc:
            raise JournalError(f"Cannot open the journal {self.location}: {exc}") from None

    @contextlib.contextmanager
    def write(self, lock: str = "journal") -> Iterator[Session]:
        """One write transaction, all or nothing, holding the writer lock `lock`. Joins the
        transaction this thread already has open on the same journal."""
        tx = _active().get(self.location)
        if tx is not None:
            tx.session.lock(lock)
            yield tx.session
            return
        con = self._connect()
        tx = _Tx(Session(self._backend, con))
        try:
            self._begin(con, write=True)
            tx.session.lock(lock)
            _active()[self.location] = tx
            try:
                yield tx.session
            except BaseException:
                with contextlib.suppress(*self._backend.errors):
                    con.execute("ROLLBACK")
                raise
            finally:
                _active().pop(self.location, None)
            self._finish(con)
        finally:
            con.close()
        for hook in tx.hooks:
            hook()

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A consistent read-only snapshot (or this thread's open write transaction)."""
        tx = _active().get(self.location)
        if tx is not None:
            yield tx.session
            return
        con = self._connect()
        try:
            self._begin(con, write=False)
            try:
                yield Session(self._backend, con)
            finally:
                with contextlib.suppress(*self._backend.errors):
                    con.execute("ROLLBACK")
        finally:
            con.close()

    def _begin(self, con: Any, *, write: bool) -> None:
        try:
            (self._backend.begin_write if write else self._backend.begin_read)(con)
        except self._backend.errors as exc:
            raise JournalError(
                f"The journal {self.location} is busy or unavailable: {exc}") from None

    def _finish(self, con: Any) -> None:
        try:
            con.execute("COMMIT")
        except self._backend.errors as exc:
            with contextlib.suppress(*self._backend.errors):
                con.execute("ROLLBACK")
            raise JournalError(f"Could not commit to the journal {self.location}: {exc}"
                               ) from None

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Run `hook` once the transaction open on this thread commits (now, if none is)."""
        tx = _active().get(self.location)
        if tx is None:
            hook()
        else:
            tx.hooks.append(hook)

    def ensure_schema(self) -> None:
        """Create the journal's tables if missing; refuse when checkpoints say the audit
        trail existed (the journal was replaced or emptied)."""
        with self.write(lock="schema") as s:
            if not s.has_table("audit_log") and self.checkpoints.has_entries():
                raise JournalMissingError(
                    f"The journal {self.location} has no audit trail, but "
                    f"{self.checkpoints.path} anchors earlier records: the journal was "
                    "replaced or emptied. Restore it from a backup; FraudLens will not start "
                    "a new audit trail in its place.")
            for stmt in render_ddl(s.dialect):
                s.execute(stmt)


def _workspace_dir(workspace: str | os.PathLike[str] | None) -> Path:
    return Path(workspace or os.environ.get("FRAUDLENS_WORKSPACE") or "workspace")


def open_journal(workspace: str | os.PathLike[str] | None = None, *, url: str | None = None,
                 audit_key: str | bytes | None = None) -> Journal:
    """The workspace's journal: PostgreSQL when `url` (or $FRAUDLENS_JOURNAL_URL) is set,
    else `<workspace>/journal.sqlite`, created on first use unless checkpoints show that a
    journal existed. `audit_key` (e.g. from the app's secrets) signs the checkpoints; see
    `data_access.audit_checkpoints.resolve_audit_key` for the order of key sources."""
    folder = _workspace_dir(workspace)
    if not folder.is_dir():
        raise JournalError(f"No workspace at {folder}; run `fraudlens demo` first")
    checkpoints = CheckpointLog.for_workspace(folder, audit_key)
    url = url or os.environ.get(URL_ENV) or None
    backend: Backend
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise JournalError(f"{URL_ENV} must be a postgresql:// URL")
        backend = PostgresBackend(url)
    else:
        backend = SQLiteBackend(folder / JOURNAL_FILE)
        if not backend.exists():
            if checkpoints.has_entries():
                raise JournalMissingError(
                    f"The journal {backend.path} is missing, but {CHECKPOINT_FILE} anchors "
                    "audit records it held: it was deleted or moved. Restore it from a backup; "
                    "FraudLens will not create an empty journal in its place.")
            _create(folder, backend, checkpoints)
    journal = Journal(backend, checkpoints)
    journal.ensure_schema()
    return journal


def _create(folder: Path, backend: SQLiteBackend, checkpoints: CheckpointLog) -> None:
    """A new SQLite journal; seeded from an earlier version's `journal.duckdb` if present."""
    from data_access.journal_legacy import LEGACY_FILE, import_legacy

    try:
        if (folder / LEGACY_FILE).is_file():
            import_legacy(folder, backend, checkpoints)
        else:
            backend.create()
    except (*backend.errors, OSError) as exc:
        raise JournalError(f"Cannot create the journal {backend.path}: {exc}") from None
    except duckdb.Error as exc:
        raise JournalError(
            f"Cannot import the old journal {folder / LEGACY_FILE} ({exc}); stop any older "
            "FraudLens app still running on this workspace, then retry.") from None


def stored_time(value: Any) -> datetime:
    """A journal timestamp (ISO text from SQLite, datetime from PostgreSQL) as aware UTC."""
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value
    raise JournalError(f"Unexpected timestamp in the journal: {value!r}")
