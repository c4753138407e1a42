"""`fraudlens patterns`: mine a window's findings for a model and export them for the review.

    fraudlens patterns --model N[@V] --since D --until D --out findings.csv
                       [--members-out M.csv] [--pack-out review.html] [--seed S]
                       [--threshold P] [--engine local|ray] [--ray-address ADDR]

`--until` is the first day left out (UTC). Every file is recorded as an `export` in the
workspace's audit trail before it appears (actor: $USER, else "cli"); if the record cannot be
stored, the file is not published. The findings are then kept in the journal, where the
Pattern Review page shows them and their annotations.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from app.cli.common import cli_actor, iso_date, journal_at, record_export, workspace_of
from explainers.errors import ValidationError


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability between 0 and 1")
    return value


def add_parser(subparsers: Any) -> None:
    """Add `patterns` to the top-level `fraudlens` subparsers."""
    p = subparsers.add_parser(
        "patterns", help="mine a window's pattern findings; write findings CSV and review pack")
    p.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    p.add_argument("--since", type=iso_date, required=True, help="first event day (UTC)")
    p.add_argument("--until", type=iso_date, required=True,
                   help="first event day left out (UTC)")
    p.add_argument("--out", required=True, help="findings CSV to write (.csv)")
    p.add_argument("--members-out", help="CSV of transaction_id, finding_id (.csv)")
    p.add_argument("--pack-out", help="self-contained HTML review pack (.html)")
    p.add_argument("--seed", type=int, default=7, help="seed for clustering and samples")
    p.add_argument("--threshold", type=_probability,
                   help="score at or above which a case counts as flagged (default: the "
                        "manifest's `threshold`, else 0.5)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="ray: explain the cases the SHAP store lacks on a Ray cluster "
                        "(pip install fraudlens[ray]); clustering runs here either way")
    p.add_argument("--ray-address", default="auto",
                   help="Ray cluster to join: auto ($RAY_ADDRESS, else a local cluster), "
                        "local, HOST:PORT or ray://HOST:PORT")
    p.set_defaults(func=handler)


def _checked(path: str | None, suffixes: tuple[str, ...], what: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise ValidationError(f"{path}: the {what} must be named *{suffixes[0]}")
    if not p.parent.resolve().is_dir():
        raise ValidationError(f"{p.parent}: no such folder")
    return p


def _say(message: str) -> None:
    print(f"patterns: {message}", file=sys.stderr, flush=True)


@contextmanager
def _engine(args: argparse.Namespace, ws: Any, model_ref: str) -> Iterator[Any]:
    """None for the local engine; for `--engine ray`, a function explaining cases on the
    cluster (joined, or started locally, for the duration of the command)."""
    if getattr(args, "engine", "local") != "ray":
        yield None
        return
    from jobs import ray_engine

    ref = ray_engine.ModelRef.of(ws, model_ref)
    started = ray_engine.connect(args.ray_address)
    try:
        _say(f"explaining the cases the store lacks on Ray ({args.ray_address})")
        yield lambda frame: ray_engine.explain_frame_on_ray(ref, frame)
    finally:
        if started:
            ray_engine.import_ray().shutdown()


def handler(args: argparse.Namespace) -> int:
    """Mine, export (audited) and keep the findings; returns the exit status."""
    from app.services import pattern_review
    from data_access import review_journal
    from data_access.audit import AuditLog

    out = _checked(args.out, (".csv",), "findings file")
    members_out = _checked(args.members_out, (".csv",), "members file")
    pack_out = _checked(args.pack_out, (".html", ".htm"), "review pack")
    window = pattern_review.Window(args.since, args.until)
    ws = workspace_of(args)
    manifest = ws.registry.resolve(args.model)
    threshold = (args.threshold if args.threshold is not None
                 else pattern_review.model_threshold(manifest.extra))
    _say(f"loading {manifest.key}")
    model = ws.registry.load(manifest)
    with closing(ws.reader()) as con, _engine(args, ws, manifest.key) as explain_rows:
        result = pattern_review.mine(con, model, window, seed=args.seed, threshold=threshold,
                                     progress=_say, explain_rows=explain_rows)

    actor = cli_actor()
    with journal_at(ws.path) as journal:
        audit = AuditLog(journal)
        details = {"model": manifest.key, "since": window.since.isoformat(),
                   "until": window.until.isoformat(), "seed": args.seed, "threshold": threshold}

        def record(what: str, written: Any, rows: int | None) -> None:
            record_export(audit, actor, written, what, rows, details)

        ids = result.findings["finding_id"].tolist()
        annotations = review_journal.latest_annotations(journal, ids)
        written = pattern_review.write_exports(
            result, str(out), members_out=str(members_out) if members_out else None,
            pack_out=str(pack_out) if pack_out else None, annotations=annotations,
            audit=record)
        review_journal.store_findings(journal, manifest.key, window.since, window.until,
                             result.findings, result.members, actor)
    current = result.findings[result.findings["change"] != "gone"]
    print(f"{len(current)} findings for {manifest.key}, {window.text()} "
          f"(threshold {threshold:g}, seed {args.seed}); "
          f"{int((result.findings['change'] == 'gone').sum())} gone since the week before")
    for row in current.head(10).itertuples(index=False):
        print(f"  #{row.rank} {row.finding_id} {row.population:<7} {row.change:<9} "
              f"{row.cases:>5} cases  ${row.amount_at_risk_usd:>12,.2f}  {row.rule}")
    for result_file in (written.findings, written.members, written.pack):
        if result_file is not None:
            print(f"wrote {result_file.path} ({result_file.bytes:,} bytes, "
                  f"sha256 {result_file.sha256[:12]}…)")
    return 0
