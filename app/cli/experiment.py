"""`fraudlens import assignments FILE` and `fraudlens experiment`: experiments in the lake and
their report (HTML plus experiment_arms.csv and experiment_weekly.csv).

    fraudlens import assignments FILE
    fraudlens experiment --list
    fraudlens experiment --name E --out report.html [--csv-dir DIR] [--as-of D]
                         [--maturity-days N] [--review-cost C] [--resamples N] [--seed S]

The report is computed once per experiment, lake data version and settings and kept under
`<workspace>/.cache/experiments/`; the Experiments page reads the same file. Every file written
is recorded as an `export` in the audit trail before it appears.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

from app.cli.common import cli_actor, iso_date, journal_at, record_export, report_paths
from explainers.errors import ValidationError


def _say(message: str) -> None:
    print(f"experiment: {message}", file=sys.stderr, flush=True)


def add_import_parser(imports: Any) -> None:
    """Add `assignments` under `fraudlens import`."""
    p = imports.add_parser("assignments", help="experiment assignments (.parquet/.csv): "
                           "experiment, unit_id, unit_type, arm, model, threshold, start, end")
    p.add_argument("file")
    p.set_defaults(func=cmd_import_assignments)


def add_parser(subparsers: Any) -> None:
    """Add `experiment` to the top-level `fraudlens` subparsers."""
    p = subparsers.add_parser("experiment", help="treatment vs control: an experiment report")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="imported experiments, one a line")
    what.add_argument("--name", help="the experiment to report on")
    p.add_argument("--out", help="the HTML report to write (.html)")
    p.add_argument("--csv-dir", help="folder for experiment_arms.csv and experiment_weekly.csv "
                                     "(default: beside the report)")
    p.add_argument("--as-of", type=iso_date, help="labels known by the end of this day (UTC)")
    p.add_argument("--maturity-days", type=int, default=30,
                   help="transactions younger than this at the as-of time are left out")
    p.add_argument("--review-cost", type=float, default=5.0, help="USD per review")
    p.add_argument("--resamples", type=int, default=200, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_experiment)


def cmd_import_assignments(args: argparse.Namespace) -> int:
    from app.cli.main import _read_table, _workspace
    from data_access.assignments import import_assignments

    ws = _workspace(args)
    frame = _read_table(args.file)
    registered = [m.key for m in ws.registry.list()]
    with closing(ws.lake()) as lake:
        done = import_assignments(lake, frame, registered, source=args.file)
    for e in done:
        state = "already imported" if e.already_present else "imported"
        print(f"{state} {e.name}: {e.units:,} units in arms {', '.join(e.arms)}")
    return 0


def _settings(args: argparse.Namespace):
    from app.services.experiments import ExperimentSettings

    if args.maturity_days < 0 or args.resamples < 2 or not args.review_cost >= 0:
        raise ValidationError("--maturity-days must be 0 or more, --resamples 2 or more and "
                              "--review-cost 0 or more")
    return ExperimentSettings(as_of=args.as_of, maturity_days=args.maturity_days,
                              review_cost=args.review_cost, n_resamples=args.resamples,
                              seed=args.seed)


def cmd_experiment(args: argparse.Namespace) -> int:
    from app.cli.main import _workspace
    from app.services import experiments

    ws = _workspace(args)
    if args.list:
        with closing(ws.reader()) as con:
            for name in experiments.experiment_names(con):
                print(name)
        return 0
    if not args.out:
        raise ValidationError("--name needs --out report.html")
    out, csv_dir = report_paths(args)
    settings = _settings(args)
    with closing(ws.lake()) as lake:
        report = experiments.cached_report(lake.con, ws.path, args.name, lake.version, settings,
                                           progress=_say)
    _write(ws, report, out, csv_dir)
    return 0


def _write(ws: Any, report: Any, out: Path, csv_dir: Path) -> None:
    from app.views import experiment_report as view
    from data_access.audit import AuditLog
    from data_access.exports import atomic_write_bytes, write_csv

    actor = cli_actor()
    details = {"experiment": report.name, "as_of": report.as_of.isoformat(),
               "data_version": report.data_version}
    arms, weekly = view.arms_table(report), view.weekly_table(report)
    with journal_at(ws.path) as journal:
        audit = AuditLog(journal)

        def recorded(kind: str, rows: int | None):
            def before_commit(result: Any) -> None:
                record_export(audit, actor, result, f"experiment {kind}", rows, details)
            return before_commit

        data = view.report_html(report).encode("utf-8")
        atomic_write_bytes(out, data, recorded("report", None))
        written = [str(out.resolve()),
                   write_csv(arms, csv_dir / "experiment_arms.csv",
                             recorded("arms", len(arms))).path,
                   write_csv(weekly, csv_dir / "experiment_weekly.csv",
                             recorded("weekly", len(weekly))).path]
    for a in report.arms:
        print(f"{a.arm}: {a.model} at {a.threshold:.4f}, {a.units_seen:,} units, "
              f"{a.matured_rows:,} matured rows, {a.fraud:,} fraud — {a.status}")
    for w in report.warnings:
        print(f"warning: {w}")
    for path in written:
        print(f"wrote {path}")
