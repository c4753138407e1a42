"""The weekly pattern review's records in the journal: the findings mined for a (model, window),
their member transactions, and the analysts' annotations.

Findings of a window are replaced as a whole, in one transaction. Annotations are append-only:
each save is a new revision, written in one transaction with its audit record (the audit
append joins the annotation's transaction). The rules and backtests that produce findings
query the warehouse and live in `data_access.findings`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd

from data_access.journal import Journal, JournalError
from data_access.journal_schema import (
    ANNOTATION_COLUMNS,
    FINDING_COLUMNS,
    JOURNAL_TABLES,
    MEMBER_COLUMNS,
    quote_ident,
)
from explainers.errors import ValidationError, WarehouseError

__all__ = [
    "ANNOTATION_STATUSES",
    "FINDING_COLUMNS",
    "MEMBER_COLUMNS",
    "Annotation",
    "annotate",
    "annotation_history",
    "ensure_findings_tables",
    "latest_annotations",
    "store_findings",
    "stored_findings",
    "stored_members",
]

ANNOTATION_STATUSES = ("new", "confirmed", "spurious", "needs-feature", "actioned")
_STORED = [*FINDING_COLUMNS, "mined_at", "mined_by"]
_FINDINGS_TYPES = JOURNAL_TABLES["findings"][0]
_KEY_WHERE = "model_id = ? AND window_since = ? AND window_until = ?"
_NOTE_COLUMNS = ["finding_id", "revision", "title", "status", "owner", "notes", "author",
                 "created_at"]


def _cols(names: Iterable[str]) -> str:
    return ", ".join(quote_ident(n) for n in names)


def ensure_findings_tables(journal: Journal) -> None:
    """Create `findings`, `finding_members` and `annotations` in the journal if missing."""
    journal.ensure_schema()


def _rows(frame: pd.DataFrame, columns: list[str], extra: list[object]) -> list[list[object]]:
    values = frame[columns].astype(object).where(frame[columns].notna(), None)
    return [[*row, *extra] for row in values.itertuples(index=False, name=None)]


def store_findings(journal: Journal, model_id: str, since: date, until: date,
                   findings: pd.DataFrame, members: pd.DataFrame, mined_by: str) -> None:
    """Replace the stored findings of (model, window) with these, in one transaction."""
    missing = [c for c in FINDING_COLUMNS if c not in findings.columns]
    missing += [c for c in MEMBER_COLUMNS if c not in members.columns]
    if missing:
        raise ValidationError(f"Findings to store lack column(s): {', '.join(missing)}")
    key: list[object] = [model_id, since, until]
    now = datetime.now(UTC)
    f_cols, m_cols = list(FINDING_COLUMNS), list(MEMBER_COLUMNS)
    f_all = [*f_cols, "model_id", "window_since", "window_until", "mined_at", "mined_by"]
    m_all = [*m_cols, "model_id", "window_since", "window_until"]
    try:
        with journal.write(lock="findings") as s:
            for table in ("findings", "finding_members"):
                s.execute(f"DELETE FROM {quote_ident(table)} WHERE {_KEY_WHERE}", key)
            s.executemany(f"INSERT INTO findings ({_cols(f_all)}) VALUES "
                          f"({', '.join('?' for _ in f_all)})",
                          _rows(findings, f_cols, [*key, now, mined_by]))
            s.executemany(f"INSERT INTO finding_members ({_cols(m_all)}) VALUES "
                          f"({', '.join('?' for _ in m_all)})", _rows(members, m_cols, key))
    except JournalError as exc:
        raise WarehouseError(f"Could not store the findings: {exc}") from None


def stored_findings(journal: Journal, model_id: str, since: date,
                    until: date) -> pd.DataFrame:
    """The findings last mined for (model, window) as `findings_table` built them, by rank,
    plus `mined_at` and `mined_by`; empty when the window was never mined."""
    with journal.read() as s:
        return s.frame(f"SELECT {_cols(_STORED)} FROM findings WHERE {_KEY_WHERE} "
                       "ORDER BY rank", [model_id, since, until], _FINDINGS_TYPES)


def stored_members(journal: Journal, model_id: str, since: date,
                   until: date) -> pd.DataFrame:
    """The members of the stored findings of (model, window)."""
    with journal.read() as s:
        return s.frame(f"SELECT {_cols(MEMBER_COLUMNS)} FROM finding_members WHERE "
                       f"{_KEY_WHERE} ORDER BY finding_id, transaction_id",
                       [model_id, since, until], MEMBER_COLUMNS)


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


def annotate(journal: Journal, finding_id: str, *, title: str, status: str,
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
    try:
        with journal.write(lock="annotations") as s:
            row = s.execute("SELECT coalesce(max(revision), 0) FROM annotations "
                            "WHERE finding_id = ?", [finding_id])
            note = Annotation(finding_id, int(row[0][0]) + 1, title.strip(), status,
                              owner.strip(), notes.strip(), author, stamp)
            s.execute(f"INSERT INTO annotations ({_cols(_NOTE_COLUMNS)}) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      [note.finding_id, note.revision, note.title, note.status, note.owner,
                       note.notes, note.author, note.created_at])
            if before_commit is not None:
                before_commit(note)
    except JournalError as exc:
        raise WarehouseError(f"Could not save the annotation: {exc}") from None
    return note


def annotation_history(journal: Journal, finding_id: str) -> pd.DataFrame:
    """Every revision of one finding's annotation, newest first."""
    with journal.read() as s:
        return s.frame(f"SELECT {_cols(_NOTE_COLUMNS[1:])} FROM annotations "
                       "WHERE finding_id = ? ORDER BY revision DESC", [finding_id],
                       ANNOTATION_COLUMNS)


def latest_annotations(journal: Journal, finding_ids: Iterable[str]) -> pd.DataFrame:
    """The newest revision per finding, for the given ids."""
    ids = sorted(set(finding_ids))
    if not ids:
        return pd.DataFrame(columns=_NOTE_COLUMNS)
    marks = ", ".join("?" for _ in ids)
    with journal.read() as s:
        return s.frame(f"SELECT {_cols(_NOTE_COLUMNS)} FROM (SELECT *, row_number() OVER "
                       "(PARTITION BY finding_id ORDER BY revision DESC) AS newest "
                       f"FROM annotations WHERE finding_id IN ({marks})) AS latest "
                       "WHERE newest = 1 ORDER BY finding_id", ids, ANNOTATION_COLUMNS)
