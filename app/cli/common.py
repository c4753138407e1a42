"""What the `fraudlens` subcommand modules share: the date argument type, and the actor and
role of the audited exports they write."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the commands import the audit log lazily, when they run
    from data_access.audit import AuditLog
    from data_access.journal import Journal

ROLE = "cli"


def iso_date(text: str) -> date:
    """argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def cli_actor() -> str:
    """Who the audit trail names for a command-line export: $USER, else "cli"."""
    return os.environ.get("USER") or "cli"


def record_export(audit: AuditLog, actor: str, result: Any, what: str, rows: int | None,
                  details: dict[str, Any]) -> None:
    """Record `result` (an ExportResult: path, sha256, bytes) as an `export` by `actor`."""
    audit.append(actor, ROLE, "export", result.path, "ok",
                 {**details, "what": what, "sha256": result.sha256, "rows": rows,
                  "bytes": result.bytes})


def configured_audit_key() -> str | None:
    """`[audit] hmac_key` from `.streamlit/secrets.toml` (here, else in the home folder), as
    the app reads it; None when unset. $FRAUDLENS_AUDIT_KEY, when set, wins over both."""
    import tomllib

    from explainers.errors import ValidationError

    for path in (Path(".streamlit/secrets.toml"), Path.home() / ".streamlit/secrets.toml"):
        if not path.is_file():
            continue
        try:
            key = tomllib.loads(path.read_text("utf-8")).get("audit", {}).get("hmac_key")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError) as exc:
            raise ValidationError(f"Cannot read the audit key from {path}: {exc}") from None
        if key:
            return str(key)
    return None


@contextmanager
def journal_at(workspace: Path) -> Iterator[Journal]:
    """The workspace's journal (audit trail, findings, annotations), closed afterwards."""
    from data_access.journal import open_journal

    journal = open_journal(workspace, audit_key=configured_audit_key())
    try:
        yield journal
    finally:
        journal.close()
