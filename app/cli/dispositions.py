"""`fraudlens export dispositions`: analysts' case outcomes recorded in a window, as CSV.

    fraudlens export dispositions --since D --until D --out F.csv

Every revision recorded in [since, until) (UTC; `--until` is the first day left out), oldest
first, written formula-safe and atomically; the file is recorded as an `export` in the audit
trail before it appears (no record, no file).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from app.cli.common import cli_actor, iso_date, journal_at, record_export
from explainers.errors import ValidationError


def add_parser(export_subparsers: Any) -> None:
    """Add `dispositions` to the `fraudlens export` subparsers."""
    p = export_subparsers.add_parser(
        "dispositions", help="analysts' case dispositions recorded in a window, as CSV",
        description="Write every disposition revision recorded in [--since, --until) as a "
                    "formula-safe CSV; the export is recorded in the audit trail.")
    p.add_argument("--since", type=iso_date, required=True, metavar="YYYY-MM-DD",
                   help="first day of the window (UTC)")
    p.add_argument("--until", type=iso_date, required=True, metavar="YYYY-MM-DD",
                   help="first day left out (UTC; exclusive)")
    p.add_argument("--out", required=True, help="CSV file to write (.csv)")
    p.set_defaults(func=run, what="dispositions")


def run(args: argparse.Namespace) -> int:
    from data_access.audit import AuditLog
    from data_access.dispositions import dispositions_between
    from data_access.exports import write_csv
    from data_access.workspace import Workspace

    out = Path(args.out)
    if out.suffix != ".csv":
        raise ValidationError(f"{args.out}: use .csv")
    ws = Workspace.at(args.workspace)
    if not ws.path.is_dir():
        raise ValidationError(f"No workspace at {ws.path}; run `fraudlens demo` first")
    with journal_at(ws.path) as journal:
        frame = dispositions_between(journal, args.since, args.until)
        audit = AuditLog(journal)
        details = {"since": args.since.isoformat(), "until": args.until.isoformat()}
        result = write_csv(frame, out, before_commit=lambda r: record_export(
            audit, cli_actor(), r, "dispositions", len(frame), details))
    print(f"wrote {result.rows:,} dispositions to {result.path} "
          f"(sha256 {result.sha256[:12]}…)")
    return 0
