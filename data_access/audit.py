"""Append-only, hash-chained audit trail kept in the DuckDB warehouse (table ``audit_log``)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import PurePath
from typing import Any

import duckdb
import pandas as pd

from explainers.errors import AuditError

__all__ = [
    "ACTIONS",
    "GENESIS_HASH",
    "OUTCOMES",
    "AuditLog",
    "AuditRecord",
    "VerifyResult",
    "canonical_json",
    "ensure_audit_table",
    "record_hash",
]

GENESIS_HASH = "0" * 64
OUTCOMES = ("ok", "denied", "failed")
# The actions the app records; others are allowed so new features need no schema change.
ACTIONS = ("case_view", "unmask", "export", "stage_change", "access_denied", "annotation")
COLUMNS = (
    "seq",
    "ts",
    "actor",
    "role",
    "action",
    "target",
    "details",
    "outcome",
    "prev_hash",
    "hash",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RETRIES = 5
# One writer at a time in this process, across every AuditLog and connection: the next seq is
# read then written, so concurrent appends would otherwise race for it.
_APPEND_LOCK = threading.Lock()

_DDL = """
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    ts TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    role VARCHAR NOT NULL,
    action VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    details VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    prev_hash VARCHAR NOT NULL,
    hash VARCHAR NOT NULL UNIQUE
)
"""


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry as stored; ``details`` is canonical JSON, ``ts`` is UTC."""

    seq: int
    ts: datetime
    actor: str
    role: str
    action: str
    target: str
    details: str
    outcome: str
    prev_hash: str
    hash: str

    def details_dict(self) -> dict[str, Any]:
        """The details parsed back into a dict."""
        return dict(json.loads(self.details))


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of re-checking the chain; ``head_hash`` can be anchored outside the database."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str
    head_hash: str | None = None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("naive datetime in audit details; use a timezone-aware one")
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no spaces, UTF-8 text, no NaN/inf."""
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


def _iso_utc(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(
    prev_hash: str,
    *,
    seq: int,
    ts: datetime,
    actor: str,
    role: str,
    action: str,
    target: str,
    details: str,
    outcome: str,
) -> str:
    """sha256 over ``prev_hash`` + canonical JSON of the record's other fields."""
    body = canonical_json(
        {
            "seq": seq,
            "ts": _iso_utc(ts),
            "actor": actor,
            "role": role,
            "action": action,
            "target": target,
            "details": details,
            "outcome": outcome,
        }
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def ensure_audit_table(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``audit_log`` if it is missing (no write happens when it exists)."""
    try:
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'audit_log' "
            "AND schema_name = current_schema() AND database_name = current_database()"
        ).fetchall()
        if not exists or not exists[0][0]:
            con.execute(_DDL).fetchall()
    except duckdb.Error as exc:
        raise AuditError(f"Could not prepare the audit table: {exc}") from exc


def _target_text(target: str | Sequence[str | int]) -> str:
    if isinstance(target, str):
        return target
    return canonical_json(list(target))


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AuditError(f"Audit {name} must be a non-empty string, got {value!r}")
    return value


def _from_epoch_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


class AuditLog:
    """Writes and checks the audit trail through a read-write DuckDB connection.

    Each call works on its own cursor of ``con``, so the caller's transaction state does not
    matter; appends in this process are serialised, and a race with another writer is retried.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        with self._cursor() as cur:
            ensure_audit_table(cur)

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            cur = self._con.cursor()
        except duckdb.Error as exc:
            raise AuditError(f"Audit database connection is unavailable: {exc}") from exc
        try:
            yield cur
        finally:
            with contextlib.suppress(duckdb.Error):
                cur.close()

    def append(
        self,
        actor: str,
        role: str,
        action: str,
        target: str | Sequence[str | int],
        outcome: str = "ok",
        details: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> AuditRecord:
        """Append one record in a transaction; raise :class:`AuditError` if it is not stored."""
        _require_text("actor", actor)
        _require_text("role", role)
        _require_text("action", action)
        if outcome not in OUTCOMES:
            raise AuditError(f"Audit outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
        if now is None:
            now = datetime.now(UTC)
        elif now.tzinfo is None:
            raise AuditError("Audit timestamp must be timezone-aware (UTC)")
        ts = now.astimezone(UTC)
        try:
            target_text = _target_text(target)
            details_text = canonical_json(dict(details or {}))
        except (TypeError, ValueError) as exc:
            raise AuditError(f"Audit details are not plain JSON: {exc}") from exc

        with _APPEND_LOCK:
            last_exc: duckdb.Error | None = None
            for attempt in range(_RETRIES):
                try:
                    return self._append_once(
                        actor, role, action, target_text, outcome, details_text, ts
                    )
                except (duckdb.TransactionException, duckdb.ConstraintException) as exc:
                    # another writer took this seq first: re-read the head and try again
                    last_exc = exc
                    time.sleep(0.005 * (attempt + 1))
                except duckdb.Error as exc:
                    raise AuditError(
                        f"Could not write the audit record ({action} by {actor}): {exc}"
                    ) from exc
            raise AuditError(
                f"Could not write the audit record ({action} by {actor}) after {_RETRIES} "
                f"attempts: {last_exc}"
            ) from last_exc

    def _append_once(
        self,
        actor: str,
        role: str,
        action: str,
        target: str,
        outcome: str,
        details: str,
        ts: datetime,
    ) -> AuditRecord:
        with self._cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            try:
                rows = cur.execute(
                    "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
                ).fetchall()
                last = rows[0] if rows else None
                seq, prev = (1, GENESIS_HASH) if last is None else (int(last[0]) + 1, last[1])
                digest = record_hash(
                    prev,
                    seq=seq,
                    ts=ts,
                    actor=actor,
                    role=role,
                    action=action,
                    target=target,
                    details=details,
                    outcome=outcome,
                )
                cur.execute(
                    "INSERT INTO audit_log (seq, ts, actor, role, action, target, details, "
                    "outcome, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [seq, ts, actor, role, action, target, details, outcome, prev, digest],
                )
                cur.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    cur.execute("ROLLBACK")
                raise
        return AuditRecord(seq, ts, actor, role, action, target, details, outcome, prev, digest)

    def records(
        self,
        action: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        outcome: str | None = None,
    ) -> pd.DataFrame:
        """Newest-first records matching every given filter (``since`` inclusive, ``until`` not)."""
        if not isinstance(limit, int) or limit < 1:
            raise AuditError(f"limit must be a positive integer, got {limit!r}")
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("action", action), ("actor", actor), ("outcome", outcome)):
            if value is not None:
                clauses.append(f"{column} = ?")  # column names are fixed above, values bound
                params.append(value)
        for op, value in ((">=", since), ("<", until)):
            if value is not None:
                if value.tzinfo is None:
                    raise AuditError("since/until must be timezone-aware datetimes")
                clauses.append(f"ts {op} ?")
                params.append(value.astimezone(UTC))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {', '.join(COLUMNS)} FROM audit_log {where} ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        try:
            with self._cursor() as cur:
                df = cur.execute(sql, params).df()
        except duckdb.Error as exc:
            raise AuditError(f"Could not read the audit log: {exc}") from exc
        df["ts"] = pd.to_datetime(df["ts"], utc=True)
        return df

    def verify(self, batch_size: int = 10_000) -> VerifyResult:
        """Recompute the chain from the first record; report the first record that breaks it."""
        expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0
        try:
            with self._cursor() as cur:
                cur.execute(
                    "SELECT seq, epoch_us(ts), actor, role, action, target, details, outcome, "
                    "prev_hash, hash FROM audit_log ORDER BY seq"
                )
                while rows := cur.fetchmany(batch_size):
                    for (
                        seq,
                        ts_us,
                        actor,
                        role,
                        action,
                        target,
                        details,
                        outcome,
                        prev,
                        digest,
                    ) in rows:
                        problem = None
                        if seq != expected_seq:
                            problem = (
                                f"expected seq {expected_seq} but found {seq}: "
                                "record(s) deleted or renumbered"
                            )
                        elif prev != expected_prev:
                            problem = (
                                f"record {seq} does not link to the record before it "
                                "(prev_hash mismatch: deleted, reordered or rewritten)"
                            )
                        elif digest != record_hash(
                            prev,
                            seq=seq,
                            ts=_from_epoch_us(ts_us),
                            actor=actor,
                            role=role,
                            action=action,
                            target=target,
                            details=details,
                            outcome=outcome,
                        ):
                            problem = f"record {seq} was edited (hash does not match content)"
                        if problem is not None:
                            return VerifyResult(False, checked, int(seq), problem)
                        checked += 1
                        expected_seq, expected_prev = seq + 1, digest
        except duckdb.Error as exc:
            raise AuditError(f"Could not read the audit log to verify it: {exc}") from exc
        head = expected_prev if checked else None
        return VerifyResult(True, checked, None, f"{checked} records verified", head)
