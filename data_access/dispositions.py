"""Analysts' case outcomes in the journal: dispositions, assignments and their history.

`dispositions` is append-only: every save (an outcome, a typology, a note, an assignment) is
a new revision of the case, written in one transaction with its audit record (the audit
append joins this transaction, so an unaudited disposition is never stored). A case's status
is read from its newest revision:

- ``unworked``: no revision at all;
- ``assigned``: a revision without a final outcome (assigned, or "needs more information");
- ``decided``: the newest revision says confirmed fraud or legitimate.

Typologies come from ``[dispositions] typologies = [...]`` in the workspace's
``fraudlens.toml``, else `DEFAULT_TYPOLOGIES`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

import pandas as pd

from data_access.journal import Journal, JournalError
from data_access.journal_schema import DISPOSITION_COLUMNS, quote_ident
from explainers.errors import ValidationError, WarehouseError

__all__ = [
    "CASE_STATUSES",
    "DEFAULT_TYPOLOGIES",
    "FINAL_OUTCOMES",
    "OUTCOMES",
    "Disposition",
    "case_statuses",
    "disposition_history",
    "dispositions_between",
    "latest_dispositions",
    "record_disposition",
    "typologies",
]

# outcome code -> what the analyst reads
OUTCOMES: dict[str, str] = {
    "confirmed_fraud": "Confirmed fraud",
    "legitimate": "Legitimate",
    "needs_info": "Needs more information",
}
FINAL_OUTCOMES = frozenset({"confirmed_fraud", "legitimate"})
CASE_STATUSES = ("unworked", "assigned", "decided")
DEFAULT_TYPOLOGIES = ("account takeover", "card testing", "stolen card", "friendly fraud",
                      "money mule", "promo abuse", "other")
CONFIG_FILE = "fraudlens.toml"
_COLUMNS = list(DISPOSITION_COLUMNS)
_MAX_TEXT = 2_000


@dataclass(frozen=True)
class Disposition:
    """One revision of a case's outcome and assignment."""

    transaction_id: str
    revision: int
    model_id: str
    outcome: str
    typology: str
    assignee: str
    notes: str
    author: str
    created_at: datetime

    @property
    def status(self) -> str:
        return "decided" if self.outcome in FINAL_OUTCOMES else "assigned"


def typologies(workspace: str | Path) -> tuple[str, ...]:
    """The typology list: `[dispositions] typologies` in `<workspace>/fraudlens.toml`, else
    the default list. A malformed file is an error naming it, never a silent default."""
    path = Path(workspace) / CONFIG_FILE
    if not path.is_file():
        return DEFAULT_TYPOLOGIES
    try:
        found = tomllib.loads(path.read_text("utf-8")).get("dispositions", {}).get("typologies")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError) as exc:
        raise ValidationError(f"{path}: cannot read [dispositions] typologies ({exc})") from None
    if found is None:
        return DEFAULT_TYPOLOGIES
    if not isinstance(found, list) or not found or not all(
            isinstance(t, str) and t.strip() for t in found):
        raise ValidationError(f"{path}: [dispositions] typologies must be a non-empty list of "
                              "names")
    return tuple(dict.fromkeys(t.strip() for t in found))


def _text(name: str, value: str) -> str:
    value = (value or "").strip()
    if len(value) > _MAX_TEXT:
        raise ValidationError(f"The {name} is longer than {_MAX_TEXT} characters")
    return value


def _validated(outcome: str, typology: str, allowed: Iterable[str]) -> None:
    if outcome and outcome not in OUTCOMES:
        raise ValidationError(f"Outcome must be one of {', '.join(OUTCOMES)}; got {outcome!r}")
    if outcome == "confirmed_fraud" and not typology:
        raise ValidationError("Confirmed fraud needs a typology")
    if typology and typology not in set(allowed):
        raise ValidationError(f"Typology {typology!r} is not in the configured list")


def record_disposition(journal: Journal, transaction_id: str, *, model_id: str, outcome: str,
                       typology: str, assignee: str, notes: str, author: str,
                       allowed_typologies: Iterable[str] = DEFAULT_TYPOLOGIES,
                       before_commit: Callable[[Disposition], None] | None = None,
                       now: datetime | None = None) -> Disposition:
    """Append the case's next revision. `before_commit` (the audit record) runs inside the
    transaction: if it raises, nothing is stored. An empty outcome records only an assignment."""
    typology, assignee = _text("typology", typology), _text("assignee", assignee)
    _validated(outcome, typology, allowed_typologies)
    if not transaction_id or not author:
        raise ValidationError("A disposition needs a transaction id and an author")
    if not outcome and not assignee:
        raise ValidationError("Choose an outcome or assign the case to someone")
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    try:
        with journal.write(lock="dispositions") as s:
            row = s.execute("SELECT coalesce(max(revision), 0) FROM dispositions "
                            "WHERE transaction_id = ?", [transaction_id])
            record = Disposition(transaction_id, int(row[0][0]) + 1, model_id, outcome,
                                 typology, assignee, _text("note", notes), author, stamp)
            s.execute(f"INSERT INTO dispositions ({_cols(_COLUMNS)}) VALUES "
                      f"({', '.join('?' for _ in _COLUMNS)})",
                      [getattr(record, c) for c in _COLUMNS])
            if before_commit is not None:
                before_commit(record)
    except JournalError as exc:
        raise WarehouseError(f"Could not save the disposition: {exc}") from None
    return record


def _cols(names: Iterable[str]) -> str:
    return ", ".join(quote_ident(n) for n in names)


def disposition_history(journal: Journal, transaction_id: str) -> pd.DataFrame:
    """Every revision of one case, newest first."""
    with journal.read() as s:
        return s.frame(f"SELECT {_cols(_COLUMNS)} FROM dispositions WHERE transaction_id = ? "
                       "ORDER BY revision DESC", [transaction_id], DISPOSITION_COLUMNS)


_LATEST = (f"SELECT {_cols(_COLUMNS)} FROM (SELECT *, row_number() OVER (PARTITION BY "
           "transaction_id ORDER BY revision DESC) AS newest FROM dispositions{where}) AS d "
           "WHERE newest = 1 ORDER BY transaction_id")


def latest_dispositions(journal: Journal, transaction_ids: Iterable[str]) -> pd.DataFrame:
    """The newest revision per case, for the given ids (none given: an empty frame)."""
    ids = sorted({str(t) for t in transaction_ids})
    if not ids:
        return pd.DataFrame(columns=_COLUMNS)
    frames = []
    with journal.read() as s:
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            where = f" WHERE transaction_id IN ({', '.join('?' for _ in chunk)})"
            frames.append(s.frame(_LATEST.format(where=where), chunk, DISPOSITION_COLUMNS))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def case_statuses(journal: Journal, transaction_ids: Iterable[str]) -> dict[str, str]:
    """unworked / assigned / decided for each id (see the module docstring)."""
    ids = [str(t) for t in transaction_ids]
    latest = latest_dispositions(journal, ids)
    found = {row.transaction_id: ("decided" if row.outcome in FINAL_OUTCOMES else "assigned")
             for row in latest.itertuples(index=False)}
    return {t: found.get(t, "unworked") for t in ids}


def dispositions_between(journal: Journal, since: date, until: date) -> pd.DataFrame:
    """Every revision recorded in [since, until) (UTC dates; `until` is exclusive), oldest
    first: the export's rows."""
    if until <= since:
        raise ValidationError(f"--until ({until}) must be after --since ({since})")
    start = datetime.combine(since, time(), UTC)
    end = datetime.combine(until, time(), UTC)
    with journal.read() as s:
        return s.frame(f"SELECT {_cols(_COLUMNS)} FROM dispositions WHERE created_at >= ? AND "
                       "created_at < ? ORDER BY created_at, transaction_id, revision",
                       [start, end], DISPOSITION_COLUMNS)
