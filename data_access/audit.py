"""Append-only, hash-chained audit trail kept in the journal (table ``audit_log``).

Every record's hash covers the previous record's hash and its own fields (canonical JSON), so
an edited, deleted or reordered record breaks the chain. Appends are serialised across threads
and processes by the journal (SQLite write lock, PostgreSQL advisory lock). After each commit
the new head is written to the workspace's signed checkpoint log, and `verify` checks the
journal against it, so deleting the newest records or replacing the journal is detected too.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import PurePath
from typing import Any

import pandas as pd

from data_access.audit_checkpoints import Checkpoint, CheckpointScan, head_prefix
from data_access.journal import Journal, JournalError, JournalMissingError, stored_time
from data_access.journal_schema import AUDIT_COLUMNS
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
COLUMNS = tuple(AUDIT_COLUMNS)
_SELECT = ", ".join(COLUMNS)


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
    """Outcome of re-checking the chain and its signed checkpoints.

    ``anchored``: the record count of the newest valid checkpoint the journal matched (records
    after it, ``checked - anchored``, were committed but not yet, or never, checkpointed)."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str
    head_hash: str | None = None
    anchored: int = 0


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



def ensure_audit_table(journal: Journal) -> None:
    """Create the journal's tables (``audit_log`` among them) if they are missing."""
    journal.ensure_schema()


def _target_text(target: str | Sequence[str | int]) -> str:
    if isinstance(target, str):
        return target
    return canonical_json(list(target))


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AuditError(f"Audit {name} must be a non-empty string, got {value!r}")
    return value


def _link_problem(seq: int, expected_seq: int, prev: str, expected_prev: str,
                  digest: str, recomputed: str) -> str | None:
    if seq != expected_seq:
        return f"expected seq {expected_seq} but found {seq}: record(s) deleted or renumbered"
    if prev != expected_prev:
        return (f"record {seq} does not link to the record before it "
                "(prev_hash mismatch: deleted, reordered or rewritten)")
    if digest != recomputed:
        return f"record {seq} was edited (hash does not match content)"
    return None


class _Anchors:
    """The scan's checkpoints, met in seq order while the chain is walked (a merge join)."""

    def __init__(self, scan: CheckpointScan) -> None:
        self._scan = scan
        self._at = 0

    def problem(self, seq: int, digest: str) -> str | None:
        seqs, n = self._scan.seqs, len(self._scan.seqs)
        while self._at < n and seqs[self._at] < seq:
            self._at += 1
        while self._at < n and seqs[self._at] == seq:
            if self._scan.heads[self._at] != head_prefix(digest):
                return (f"record {seq} differs from the signed checkpoint on line "
                        f"{self._scan.lines[self._at]}: the journal was replaced or rewritten")
            self._at += 1
        return None


def _tail_problem(checked: int, newest: Checkpoint | None) -> str | None:
    if newest is None or checked >= newest.count:
        return None
    if checked == 0:
        return (f"all audit records were deleted: the journal is empty but the signed "
                f"checkpoint of {newest.ts} anchors {newest.count} records")
    return (f"the newest audit records were deleted: the journal holds {checked} records but "
            f"the signed checkpoint of {newest.ts} anchors {newest.count} (records "
            f"{checked + 1}-{newest.count} are missing)")


class AuditLog:
    """Writes and checks the audit trail in a :class:`~data_access.journal.Journal`.

    Safe to share between threads: every call runs in its own journal transaction, or joins
    the one this thread has open (an annotation and its audit record commit together)."""

    def __init__(self, journal: Journal) -> None:
        if not isinstance(journal, Journal):
            raise AuditError(f"AuditLog needs a Journal (open_journal), got {type(journal)}")
        self._journal = journal

    @property
    def journal(self) -> Journal:
        return self._journal

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
        try:
            return self._append(actor, role, action, target_text, outcome, details_text, ts)
        except JournalError as exc:  # keeps its type (JournalMissingError stays one)
            raise type(exc)(
                f"Could not write the audit record ({action} by {actor}): {exc}") from exc

    def _append(self, actor: str, role: str, action: str, target: str, outcome: str,
                details: str, ts: datetime) -> AuditRecord:
        with self._journal.write(lock="audit") as s:
            rows = s.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            if not rows and self._journal.checkpoints.has_entries():
                raise JournalMissingError(
                    f"The audit trail in {self._journal.location} is empty, but "
                    f"{self._journal.checkpoints.path.name} anchors earlier records: it was "
                    "emptied or replaced. Restore the journal from a backup; FraudLens will not "
                    "start a new chain in its place.")
            seq, prev = (1, GENESIS_HASH) if not rows else (int(rows[0][0]) + 1, rows[0][1])
            digest = record_hash(prev, seq=seq, ts=ts, actor=actor, role=role, action=action,
                                 target=target, details=details, outcome=outcome)
            s.execute(
                f"INSERT INTO audit_log ({_SELECT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [seq, ts, actor, role, action, target, details, outcome, prev, digest])
            # anchored once committed: a rolled-back record must not be checkpointed
            self._journal.after_commit(lambda: self._journal.checkpoints.append(seq, digest))
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
        sql = f"SELECT {_SELECT} FROM audit_log {where} ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        try:
            with self._journal.read() as s:
                return s.frame(sql, params, AUDIT_COLUMNS)
        except JournalError as exc:
            raise type(exc)(f"Could not read the audit log: {exc}") from exc

    def verify(self, batch_size: int = 10_000) -> VerifyResult:
        """Recompute the chain from the first record; report the first record that breaks it,
        a checkpoint line that does not verify, or a journal that lost records or was replaced
        since the newest signed checkpoint."""
        scan = self._journal.checkpoints.scan()  # before the journal: checkpoints trail commits
        try:
            with self._journal.read() as s:
                rows = s.stream(f"SELECT {_SELECT} FROM audit_log ORDER BY seq",
                                batch=batch_size)
                try:
                    result = self._walk(rows, scan)
                finally:
                    rows.close()  # ends a server-side cursor left open by an early return
        except JournalError as exc:
            raise type(exc)(f"Could not read the audit log to verify it: {exc}") from exc
        return result

    def _walk(self, rows: Any, scan: CheckpointScan) -> VerifyResult:
        anchors = _Anchors(scan)
        expected_seq, expected_prev, checked = 1, GENESIS_HASH, 0
        for seq, ts, actor, role, action, target, details, outcome, prev, digest in rows:
            recomputed = record_hash(prev, seq=seq, ts=stored_time(ts), actor=actor, role=role,
                                     action=action, target=target, details=details,
                                     outcome=outcome)
            problem = (_link_problem(seq, expected_seq, prev, expected_prev, digest, recomputed)
                       or anchors.problem(seq, digest))
            if problem is not None:
                return VerifyResult(False, checked, int(seq), problem)
            checked += 1
            expected_seq, expected_prev = seq + 1, digest
        head = expected_prev if checked else None
        if scan.problems:
            more = f" (and {scan.bad_lines - 1} more)" if scan.bad_lines > 1 else ""
            return VerifyResult(False, checked, None, scan.problems[0] + more, head)
        newest = scan.newest
        tail = _tail_problem(checked, newest)
        if tail is not None:
            return VerifyResult(False, checked, checked + 1, tail, head)
        anchored = newest.count if newest is not None else 0
        return VerifyResult(True, checked, None, f"{checked} records verified", head, anchored)
