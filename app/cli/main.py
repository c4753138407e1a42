"""FraudLens command line: build, register, import, score, explain, export, compare, mine
patterns, verify the audit trail. No Streamlit here.

Every command exits non-zero with a one-line reason on bad input and leaves the workspace
unchanged when it fails; long work shows progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from app.cli import compare as compare_command
from app.cli import dispositions as dispositions_command
from app.cli import experiment as experiment_command
from app.cli import monitor as monitor_command
from app.cli import pattern_review as patterns_command
from app.cli import precompute as precompute_command
from app.cli import pruning as pruning_command
from app.cli.common import check_window, iso_date, workspace_of
from app.cli.registry import add_parsers as add_registry_parsers
from explainers.errors import FraudLensError, ValidationError


def _read_table(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise ValidationError(f"{path}: no such file")
    if p.suffix not in (".parquet", ".csv"):
        raise ValidationError(f"{path}: use a .parquet or .csv file")
    try:
        frame = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(
            p, encoding="utf-8", dtype={"transaction_id": str, "account_id": str})
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8"
                              ) from None
    except pd.errors.EmptyDataError:
        raise ValidationError(f"{path}: the file is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValidationError(f"{path}: cannot be read as {p.suffix[1:]}: "
                              f"{str(exc).splitlines()[0][:200]}") from None
    if frame.empty:
        raise ValidationError(f"{path}: the file holds no rows")
    return frame


def cmd_demo(args: argparse.Namespace) -> int:
    from jobs.demo import build_demo

    build_demo(args.workspace or "workspace", rows=args.rows, seed=args.seed,
               explain=not args.no_explain, explain_sample=args.explain_sample or None)
    return 0


_workspace = workspace_of  # the subcommand modules import it by this name too


def cmd_models_list(args: argparse.Namespace) -> int:
    registry = _workspace(args).registry
    manifests = registry.list()
    for problem in registry.problems:  # skipped manifests: reported, never blocking the rest
        print(f"fraudlens: warning: skipped {problem}", file=sys.stderr)
    unusable = registry.unusable()
    if args.json:
        print(json.dumps([{**m.to_dict(), **({"unusable": unusable[m.key]} if m.key in unusable
                                             else {})} for m in manifests],
                         indent=2, sort_keys=True))
        return 0
    if not manifests:
        print("No models registered. Run `fraudlens demo` or `fraudlens models register`.")
        return 0
    print(f"{'model':<24} {'framework':<9} {'stage':<10} {'ROC AUC':>8} {'PR AUC':>7}  created")
    for m in manifests:
        stage = "UNUSABLE" if m.key in unusable else m.stage
        print(f"{m.key:<24} {m.framework:<9} {stage:<10} {m.metrics['roc_auc']:>8.4f} "
              f"{m.metrics['pr_auc']:>7.4f}  {m.created_at}")
    for key, reason in unusable.items():
        print(f"{key} is unusable: {reason}")
    return 0


def cmd_models_register(args: argparse.Namespace) -> int:
    from data_access.registry import parse_metrics, read_capped, training_window
    from explainers.schema import FeatureSchema

    ws = _workspace(args, create=True)
    artifact = Path(args.file)
    if not artifact.is_file():
        raise ValidationError(f"{args.file}: no such file")
    schema_path = Path(args.schema)
    if not schema_path.is_file():
        raise ValidationError(f"{args.schema}: no such schema file")
    schema = FeatureSchema.from_json(schema_path.read_bytes())
    name = "model" + artifact.suffix
    window = training_window(args.training_start, args.training_end)
    # size-capped read; register() checks the structure and probe-loads the model in a child
    # process before anything is written, then writes the version in one step
    manifest = ws.registry.register(read_capped(artifact, "artifact"), name=args.name,
                                    version=args.version, framework_name=args.framework,
                                    artifact_name=name, schema=schema,
                                    metrics=parse_metrics(args.metrics),
                                    training_window=window, seed=args.seed)
    try:
        ws.sync_models()
    except BaseException:
        ws.registry.discard(manifest)  # all or nothing: a failed register leaves no version
        raise
    print(f"registered {manifest.key} ({manifest.framework}, sha256 {manifest.sha256[:12]}…)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from data_access.warehouse import import_frames

    ws = _workspace(args, create=True)
    txns = _read_table(args.file)
    labels = _read_table(args.labels) if args.labels else None
    for manifest in ws.registry.list():
        manifest.feature_schema.check_frame(txns)
    with closing(ws.lake(create=True)) as lake:
        result = import_frames(lake, txns, labels, source=args.file)
    print(f"imported {result.transactions_added:,} transactions "
          f"({result.transactions_skipped:,} already present), {result.labels_added:,} labels")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from jobs.scoring import score_transactions

    key, n = _batch_job(args, local=score_transactions,
                        on_ray=lambda ray_engine, lake, model, ref: ray_engine.score_on_ray(
                            lake, model, ref))
    print(f"scored {n:,} new transactions with {key}")
    precompute_command.after_change(args)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from jobs.explain import fill_store

    window = {"since": args.since, "until": args.until, "sample": args.sample, "seed": args.seed}
    key, n = _batch_job(args, local=lambda lake, model: fill_store(lake, model, **window),
                        on_ray=lambda ray_engine, lake, model, ref: ray_engine.explain_on_ray(
                            lake, model, ref, **window))
    print(f"stored SHAP values for {n:,} new transactions of {key}")
    precompute_command.after_change(args)
    return 0


def _batch_job(args: argparse.Namespace, *, local: Callable[[Any, Any], int],
               on_ray: Callable[[Any, Any, Any, Any], int]) -> tuple[str, int]:
    """Run a batch job for --model over the workspace's lake, on the local engine or on Ray
    (`--engine ray`): (model key, rows done)."""
    ws = _workspace(args)
    model = ws.registry.load(args.model)
    with closing(ws.lake()) as lake:
        if getattr(args, "engine", "local") != "ray":
            return model.key, local(lake, model)
        from jobs import ray_engine

        ref = ray_engine.ModelRef.of(ws, model.key)
        with _ray_session(args.ray_address):
            return model.key, on_ray(ray_engine, lake, model, ref)


@contextmanager
def _ray_session(address: str) -> Iterator[None]:
    """Connected to a Ray cluster for the block (`--engine ray`); a cluster this command
    started or joined is left (and a local one stopped) at the end."""
    from jobs import ray_engine

    started = ray_engine.connect(address)
    try:
        yield
    finally:
        if started:
            ray_engine.import_ray().shutdown()


def _add_engine(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="where the batch work runs (ray: pip install fraudlens[ray])")
    parser.add_argument("--ray-address", default="auto",
                        help="Ray cluster to join: auto ($RAY_ADDRESS, else a local cluster), "
                             "local, HOST:PORT or ray://HOST:PORT")


def cmd_export(args: argparse.Namespace) -> int:
    from app.cli.common import cli_actor, journal_at, record_export
    from data_access import shap_store
    from data_access.audit import AuditLog
    from data_access.exports import write_csv, write_parquet
    from data_access.shap_store import Cohort

    ws = _workspace(args)
    manifest = ws.registry.resolve(args.model)
    with closing(ws.reader()) as con:
        segments = manifest.feature_schema.categorical
        cohort = Cohort(since=args.since, until=args.until)
        if args.what == "shap-values":
            frame = shap_store.values(con, manifest.key, cohort, segments)
            if frame.empty:
                raise ValidationError(f"No SHAP values stored for {manifest.key}; run "
                                      f"`fraudlens explain --model {manifest.key}`")
            frame = frame.drop(columns=["flagged"])
        else:
            frame = shap_store.describe_summary(
                shap_store.summary(con, manifest.key, cohort, segments),
                {f.name: f.description for f in manifest.feature_schema.features})
    out = Path(args.out)
    if args.what == "shap-values" and out.suffix == ".parquet":
        writer = write_parquet
    elif out.suffix == ".csv":
        writer = write_csv
    else:
        raise ValidationError(f"{args.out}: use .csv" + (" or .parquet"
                              if args.what == "shap-values" else ""))
    with journal_at(ws.path) as journal:
        audit = AuditLog(journal)
        details = {"model": manifest.key, "cohort": cohort.describe()}
        # the audit record is written before the file is moved into place: no record, no file
        result = writer(frame, out, before_commit=lambda r: record_export(
            audit, cli_actor(), r, args.what, len(frame), details))
    print(f"wrote {result.rows:,} rows to {result.path} (sha256 {result.sha256[:12]}…)")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from app.cli.common import journal_at
    from data_access.audit import AuditLog
    from data_access.audit_checkpoints import AuditKeyError
    from data_access.journal import JournalMissingError

    try:
        with journal_at(_workspace(args).path) as journal:
            result = AuditLog(journal).verify()
    except (JournalMissingError, AuditKeyError) as exc:
        print(f"fraudlens: error: audit trail broken: {exc}", file=sys.stderr)
        return 3
    if result.ok:
        anchor = (f"; matches the signed checkpoint of {result.anchored:,} records"
                  if result.anchored else "; no signed checkpoint yet")
        print(f"audit trail intact: {result.checked:,} records, hash chain verified{anchor}")
        return 0
    where = f" at record {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    print(f"fraudlens: error: audit trail broken{where}: {result.problem}", file=sys.stderr)
    return 3


def _add_export_parsers(sub: argparse._SubParsersAction) -> None:
    """`fraudlens export shap-values | shap-summary | dispositions`, every option described."""
    ex = sub.add_parser("export", help="write SHAP values, summaries or dispositions"
                        ).add_subparsers(dest="what", required=True)
    for what, says in (("shap-values", "per row: transaction_id, base_value, one SHAP value "
                                       "per feature (.csv or .parquet)"),
                       ("shap-summary", "per feature: mean |SHAP|, description and the other "
                                        "columns of the Global Patterns download (.csv)")):
        x = ex.add_parser(what, help=says, description=f"Write {says}; audited.")
        x.add_argument("--model", required=True, help="NAME or NAME@VERSION")
        x.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD",
                       help="first event day (UTC; default: the first)")
        x.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD",
                       help="first event day left out (UTC; exclusive; default: after the last)")
        x.add_argument("--out", required=True, help="file to write")
        x.set_defaults(func=cmd_export, what=what)
    dispositions_command.add_parser(ex)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fraudlens", description=__doc__.splitlines()[0])
    p.add_argument("--workspace", default=None,
                   help="workspace folder (default: $FRAUDLENS_WORKSPACE or ./workspace)")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="build the demo workspace end to end")
    d.add_argument("--rows", type=int, default=100_000)
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--no-explain", action="store_true", help="skip filling the SHAP store")
    d.add_argument("--explain-sample", type=int, default=0,
                   help="store SHAP values for a seeded sample of about this many rows per "
                        "model instead of every row (default 0: every row)")
    d.set_defaults(func=cmd_demo)

    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True)
    ml = models.add_parser("list", help="registered models, stage, holdout metrics")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_models_list)
    mr = models.add_parser("register", help="register a model trained elsewhere")
    mr.add_argument("file")
    mr.add_argument("--name", required=True)
    mr.add_argument("--version", required=True)
    mr.add_argument("--framework", required=True, choices=["xgboost", "catboost"])
    mr.add_argument("--schema", required=True, help="feature schema JSON")
    mr.add_argument("--metrics", help='holdout metrics as JSON, e.g. {"roc_auc":0.9,"pr_auc":0.4}')
    mr.add_argument("--training-start", type=iso_date, metavar="YYYY-MM-DD",
                    help="first day of the training data (UTC)")
    mr.add_argument("--training-end", type=iso_date, metavar="YYYY-MM-DD",
                    help="last day of the training data (UTC, inclusive); compare leaves "
                         "rows up to it out of the holdout")
    mr.add_argument("--seed", type=int, default=0, help="the training seed, for the record")
    mr.set_defaults(func=cmd_models_register)
    add_registry_parsers(models)
    pruning_command.add_parsers(models)

    imp = sub.add_parser("import", help="import data into the warehouse").add_subparsers(
        dest="import_what", required=True)
    it = imp.add_parser("transactions", help="transactions (.parquet/.csv) and labels")
    it.add_argument("file")
    it.add_argument("--labels")
    it.set_defaults(func=cmd_import)
    experiment_command.add_import_parser(imp)

    s = sub.add_parser("score", help="score transactions with a model")
    s.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    _add_engine(s)
    precompute_command.add_flag(s)
    s.set_defaults(func=cmd_score)

    e = sub.add_parser("explain", help="fill the SHAP store for a model")
    e.add_argument("--model", required=True, help="NAME or NAME@VERSION")
    e.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD",
                   help="first event day to explain (UTC; default: the first)")
    e.add_argument("--until", type=iso_date, metavar="YYYY-MM-DD",
                   help="first event day left out (UTC; exclusive; default: after the last)")
    e.add_argument("--sample", type=int,
                   help="explain a seeded sample of about this many rows (default: every row)")
    e.add_argument("--seed", type=int, default=7, help="seed of the sample (default 7)")
    _add_engine(e)
    precompute_command.add_flag(e)
    e.set_defaults(func=cmd_explain)

    _add_export_parsers(sub)
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="audit_command", required=True)
    audit.add_parser("verify", help="check the hash chain: exit 3 when a record was edited, "
                     "deleted or reordered").set_defaults(func=cmd_audit_verify)
    compare_command.add_parser(sub)
    patterns_command.add_parser(sub)
    monitor_command.add_parser(sub)
    experiment_command.add_parser(sub)
    precompute_command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_window(args)
        return int(args.func(args) or 0)
    except FraudLensError as exc:
        print(f"fraudlens: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fraudlens: interrupted; nothing half-written was kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
