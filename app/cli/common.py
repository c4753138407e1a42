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


def check_window(args: argparse.Namespace) -> None:
    """Refuse a `--since`/`--until` pair that selects nothing (one line, exit 2), for every
    command that takes dates: `--until` is exclusive (so it must be after `--since`), except
    for `monitor`, whose `--until` is the last day included."""
    from explainers.errors import ValidationError

    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if not isinstance(since, date) or not isinstance(until, date):
        return
    inclusive = getattr(args, "command", None) == "monitor"
    if until < since or (until == since and not inclusive):
        rule = "on or after" if inclusive else "after (it is exclusive)"
        raise ValidationError(f"--until {until} must be {rule} --since {since}")


def workspace_of(args: argparse.Namespace, *, create: bool = False) -> Any:
    """The workspace named by --workspace; a folder that does not exist is named as such
    (a mistyped path must not read as "no models registered")."""
    from data_access.workspace import Workspace
    from explainers.errors import ValidationError

    ws = Workspace.at(args.workspace)
    if not create and not ws.path.is_dir():
        raise ValidationError(f"The workspace folder {ws.path} does not exist; check --workspace "
                              "(or FRAUDLENS_WORKSPACE), or build one with `fraudlens demo`")
    return ws


def report_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """`--out` (an HTML report) and `--csv-dir` (default: beside it), both in folders that
    exist; a wrong name or folder is one line, before any work starts."""
    from explainers.errors import ValidationError

    out = Path(args.out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValidationError(f"{args.out}: the report is HTML; name it *.html")
    csv_dir = Path(args.csv_dir) if getattr(args, "csv_dir", None) else out.parent
    for folder in {out.parent, csv_dir}:
        if not folder.is_dir():
            raise ValidationError(f"{folder}: no such folder")
    return out, csv_dir


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
