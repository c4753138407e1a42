"""`fraudlens monitor`: weekly performance with late labels, drift and data quality by feature
source, attribution drift and alerts for one model, as a self-contained HTML report and CSVs.

    fraudlens monitor --model N[@V] [--since D] [--until D] --out monitor.html
                      [--csv-dir DIR] [--rules monitoring.toml] [--fail-on-alert]

Numbers are the Monitoring page's (both call `app.services.monitoring.build_report`), kept
under the workspace per model checksum, lake data version, window and rules: run again on the
same data, it reads them back, and without --since/--until (the whole lake) it keeps what the
page shows for its default dates. Every
file is recorded as an `export` in the audit trail before it appears. Exit 4 with
`--fail-on-alert` when any alert fires (after the files are written); 2 on bad input,
including a `monitoring.toml` that cannot be used (its line and key are named).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from typing import Any

from app.cli.common import (
    cli_actor,
    iso_date,
    journal_at,
    record_export,
    report_paths,
    workspace_of,
)

ALERT_EXIT = 4


def add_parser(subparsers: Any) -> None:
    """Add `monitor` to the top-level `fraudlens` subparsers."""
    p = subparsers.add_parser(
        "monitor", help="weekly performance, drift, data quality and alerts for one model")
    p.add_argument("--model", required=True, metavar="NAME[@VERSION]")
    p.add_argument("--since", type=iso_date, help="first event day (UTC; default: the first)")
    p.add_argument("--until", type=iso_date, help="last event day, inclusive (UTC)")
    p.add_argument("--out", required=True, help="the HTML report to write (.html)")
    p.add_argument("--csv-dir", help="folder for monitor_weekly.csv and monitor_alerts.csv "
                                     "(default: beside the report)")
    p.add_argument("--rules", help="alert rules (default: <workspace>/monitoring.toml, else "
                                   "the documented defaults)")
    p.add_argument("--fail-on-alert", action="store_true",
                   help=f"exit {ALERT_EXIT} when any alert fires")
    p.set_defaults(func=cmd_monitor)


def _say(message: str) -> None:
    print(f"monitor: {message}", file=sys.stderr, flush=True)


def cmd_monitor(args: argparse.Namespace) -> int:
    from app.services import monitoring
    from app.services.monitoring_rules import load_rules
    from app.views import monitoring_report as view
    from data_access.audit import AuditLog
    from data_access.exports import write_csv

    out, csv_dir = report_paths(args)
    ws = workspace_of(args)
    rules = load_rules(ws.path, args.rules)
    manifest = ws.registry.resolve(args.model)
    with closing(ws.lake()) as lake:  # kept per data version, as the Monitoring page keeps it
        report = monitoring.kept_report(lake.con, ws.path, lake.version,
                                        {**manifest.to_dict(), "model_id": manifest.key},
                                        rules, args.since, args.until, progress=_say)
    actor = cli_actor()
    with journal_at(ws.path) as journal:
        audit = AuditLog(journal)
        acks = monitoring.acknowledgements(audit.records(action=monitoring.ACK_ACTION,
                                                         limit=10_000))
        details = {"model": report.model_id, "since": str(args.since or ""),
                   "until": str(args.until or ""), "labels_as_of": report.as_of.isoformat(),
                   "alerts": len(report.alerts), "seed": rules.seed}

        def recorded(kind: str, rows: int | None):
            def before_commit(result: Any) -> None:
                record_export(audit, actor, result, f"monitoring {kind}", rows, details)
            return before_commit

        weekly, alerts = view.weekly_csv(report), view.alerts_csv(report)
        written = [
            monitoring.write_html_report(report, out, acks, recorded("report", None)),
            write_csv(weekly, csv_dir / "monitor_weekly.csv", recorded("weekly", len(weekly))),
            write_csv(alerts, csv_dir / "monitor_alerts.csv", recorded("alerts", len(alerts))),
        ]
    _print_summary(report, acks)
    for result in written:
        print(f"wrote {result.path} ({result.bytes:,} bytes, sha256 {result.sha256[:12]}…)")
    if args.fail_on_alert and report.alerts:
        return ALERT_EXIT
    return 0


def _print_summary(report: Any, acks: dict) -> None:
    print(f"{report.model_id}: {len(report.weekly)} weeks, labels as of "
          f"{report.as_of:%Y-%m-%d %H:%M} UTC; reference: {report.reference.basis}")
    for warning in report.warnings:
        print(f"note: {warning}")
    print(f"{len(report.alerts)} alert(s)" + (":" if report.alerts else ""))
    for a in report.alerts:
        ack = " [acknowledged]" if a.alert_id in acks else ""
        print(f"  {a.alert_id}{ack} {a.message}")
