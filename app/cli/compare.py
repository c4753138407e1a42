"""`fraudlens compare`: judge two or more candidates on one matured holdout and write the
comparison as a self-contained HTML report plus CSVs of its numbers and attributions.

    fraudlens compare N1[@V] N2[@V] [...] --out report.html [--csv-dir DIR] [--as-of DATE]
                      [--capacity K] [--review-cost C] [--seed S]

Every file written is recorded as an `export` in the workspace's audit trail before it appears
(actor: $USER, else "cli"); if the record cannot be stored, the file is not published. The
comparison is also kept under the workspace as Model Comparison keys it (models' checksums,
the lake's data version, the settings), so the page shows it at once for the same models and
settings (the first model named is the reference).
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
from explainers.errors import ValidationError


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def _money(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an amount in USD (0 or more)")
    return value


def add_parser(subparsers: Any) -> None:
    """Add `compare` to the top-level `fraudlens` subparsers."""
    p = subparsers.add_parser(
        "compare", help="compare model candidates on one matured holdout; write an HTML report")
    p.add_argument("models", nargs="+", metavar="NAME[@VERSION]",
                   help="two or more registered models; the first is the reference")
    p.add_argument("--out", required=True, help="the HTML report to write (.html)")
    p.add_argument("--csv-dir", help="folder for <report>_metrics.csv and "
                                     "<report>_attributions.csv (default: beside the report)")
    p.add_argument("--as-of", type=iso_date, help="judge on labels known by the end of this day "
                                               "(UTC; default: the newest label)")
    p.add_argument("--capacity", type=_positive_int, default=20,
                   help="reviews the team can do per day (default 20)")
    p.add_argument("--review-cost", type=_money, default=5.0,
                   help="cost of one review in USD (default 5)")
    p.add_argument("--maturity-days", type=_positive_int, default=30,
                   help="labels of transactions younger than this are immature (default 30)")
    p.add_argument("--sla-p99-ms", type=float, default=10.0,
                   help="single-row latency budget at p99, in ms (default 10)")
    p.add_argument("--resamples", type=_positive_int, default=200,
                   help="bootstrap resamples (default 200)")
    p.add_argument("--seed", type=int, default=7)
    p.set_defaults(func=cmd_compare)


def _say(message: str) -> None:
    print(f"compare: {message}", file=sys.stderr, flush=True)


def cmd_compare(args: argparse.Namespace) -> int:
    from app.services import model_comparison as comparison
    from app.views import comparison_report
    from data_access.audit import AuditLog
    from data_access.exports import write_csv

    if len(args.models) < 2:
        raise ValidationError("Name two or more models to compare, e.g. "
                              "`fraudlens compare fraud_xgb fraud_catboost --out report.html`")
    out, csv_dir = report_paths(args)
    ws = workspace_of(args)
    manifests = [ws.registry.resolve(ref) for ref in args.models]
    keys = [m.key for m in manifests]
    if len(set(keys)) != len(keys):
        raise ValidationError(f"Each model may appear once; got {', '.join(keys)}")
    settings = comparison.ComparisonSettings(
        as_of=args.as_of, maturity_days=args.maturity_days, capacity=args.capacity,
        review_cost=args.review_cost, n_resamples=args.resamples, seed=args.seed,
        sla_p99_ms=args.sla_p99_ms)
    _say(f"loading {', '.join(keys)}")
    models = [ws.registry.load(m) for m in manifests]
    with closing(ws.lake()) as lake:
        report = comparison.build_report(lake.con, manifests, models, settings,
                                         latency=comparison.timed_with(ws.registry),
                                         progress=_say)
        # kept as Model Comparison keys it: with the page's settings the page shows it at once
        comparison.keep_report(ws.path, report, lake.version)

    actor = cli_actor()
    with journal_at(ws.path) as journal:
        audit = AuditLog(journal)
        details = {"models": keys, "reference": report.reference,
                   "as_of": report.holdout.as_of.isoformat(), "holdout_rows": report.holdout.rows,
                   "capacity": settings.capacity, "review_cost": settings.review_cost,
                   "seed": settings.seed}

        def recorded(kind: str, rows: int | None):
            def before_commit(result: Any) -> None:
                record_export(audit, actor, result, f"comparison {kind}", rows, details)
            return before_commit

        stem = out.stem
        numbers = comparison_report.numbers_table(report)
        attributions = comparison_report.attributions_table(report)
        written = [
            comparison.write_html_report(report, out, recorded("report", None)),
            write_csv(numbers, csv_dir / f"{stem}_metrics.csv",
                      recorded("metrics", len(numbers))),
            write_csv(attributions, csv_dir / f"{stem}_attributions.csv",
                      recorded("attributions", len(attributions))),
        ]
    _print_summary(report)
    for result in written:
        print(f"wrote {result.path} ({result.bytes:,} bytes, sha256 {result.sha256[:12]}…)")
    return 0


def _print_summary(report: Any) -> None:
    h = report.holdout
    print(f"holdout: {h.rows:,} rows, {h.fraud:,} fraud, {h.start:%Y-%m-%d} to {h.end:%Y-%m-%d}"
          f" (labels as of {h.as_of:%Y-%m-%d %H:%M} UTC)")
    for e in h.exclusions:
        if e.rows:
            print(f"  left out {e.rows:,}: {e.reason}")
    m = report.metrics
    for model in report.model_ids:
        roc, pr = m.get(model, "roc_auc"), m.get(model, "pr_auc")
        print(f"{model}: ROC AUC {roc.estimate:.4f} [{roc.low:.4f}, {roc.high:.4f}]  "
              f"PR AUC {pr.estimate:.4f} [{pr.low:.4f}, {pr.high:.4f}]")
    for t in report.latency:
        verdict = "meets" if t.meets(report.sla) else "misses"
        print(f"{t.model_id}: p50 {t.p50_ms:.2f} ms, p99 {t.p99_ms:.2f} ms, "
              f"{t.rows_per_s:,.0f} rows/s — {verdict} the SLA (p99 <= {report.sla.p99_ms:g} ms)")
    for p in report.pairs:
        verb = "saves" if p.savings_usd >= 0 else "costs"
        print(f"switching {p.reference} → {p.challenger} {verb} ${abs(p.savings_usd):,.0f} on "
              f"the holdout; {p.disagreement_total:,} disagreements")
