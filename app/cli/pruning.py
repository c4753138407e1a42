"""`fraudlens models prune` and `fraudlens models frontier`: truncated ensembles for the SLA.

    fraudlens models prune N@V --trees K --version V2
    fraudlens models frontier N@V [N2@V2 ...] [--sla-p99-ms MS] [--tolerance T]

`frontier` is the cached job behind the Model Comparison page's pruning section: it stores its
result under `<workspace>/.cache/frontier/`, keyed by the models' checksums, the lake's data
version and the settings, and the page reads it from there.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from typing import Any

from explainers.errors import ValidationError, WarehouseError


def _say(message: str) -> None:
    print(f"frontier: {message}", file=sys.stderr, flush=True)


def add_parsers(models: Any) -> None:
    """Add `prune` and `frontier` under `fraudlens models`."""
    p = models.add_parser("prune", help="register the first K trees of a model as a candidate")
    p.add_argument("model", metavar="NAME@VERSION")
    p.add_argument("--trees", type=int, required=True, help="trees to keep (1 to the model's)")
    p.add_argument("--version", required=True, help="version of the pruned model")
    p.set_defaults(func=cmd_prune)
    f = models.add_parser("frontier", help="holdout ROC AUC against calibrated p99 latency "
                          "for the first k trees of each model (stored for the app)")
    f.add_argument("models", nargs="+", metavar="NAME[@VERSION]")
    f.add_argument("--sla-p99-ms", type=float, default=10.0)
    f.add_argument("--tolerance", type=float, default=0.005,
                   help="ROC AUC a pruned model may lose (default 0.005)")
    f.add_argument("--maturity-days", type=int, default=30)
    f.set_defaults(func=cmd_frontier)


def cmd_prune(args: argparse.Namespace) -> int:
    from app.cli.main import _workspace
    from app.services.pruning import prune_model

    ws = _workspace(args)
    if args.trees < 1:
        raise ValidationError(f"--trees must be 1 or more, got {args.trees}")
    try:
        lake = ws.lake()  # for the pruned model's holdout metrics, when there is data
    except WarehouseError:
        lake = None
    try:
        manifest = prune_model(ws.registry, args.model, args.trees, args.version,
                               lake.con if lake is not None else None)
    finally:
        if lake is not None:
            lake.close()
    try:
        ws.sync_models()
    except BaseException:
        ws.registry.discard(manifest)  # all or nothing, as `models register`
        raise
    print(f"registered {manifest.key}: the first {args.trees} trees of "
          f"{manifest.extra['parent']} (sha256 {manifest.sha256[:12]}…)")
    return 0


def cmd_frontier(args: argparse.Namespace) -> int:
    import time

    from app.cli.main import _workspace
    from app.services import pruning

    t0 = time.perf_counter()
    ws = _workspace(args)
    manifests = [ws.registry.resolve(ref) for ref in args.models]
    settings = pruning.FrontierSettings(sla_p99_ms=args.sla_p99_ms, tolerance=args.tolerance,
                                        maturity_days=args.maturity_days)
    _say(f"loading {', '.join(m.key for m in manifests)}")
    models = [ws.registry.load(m) for m in manifests]
    with closing(ws.lake()) as lake:
        result = pruning.cached_frontier(lake.con, ws.path, manifests, models, lake.version,
                                         settings, progress=_say)
    c = result.calibration
    print(f"calibration: reference workload {c.workload_ms:.1f} ms here "
          f"({c.reference_ms:g} ms on the reference machine, factor {c.factor:.2f}); "
          f"load average {c.load_1m:.2f}")
    for m in result.models:
        full = m.points[-1]
        chosen = next(p for p in m.points if p.trees == m.smallest_within)
        print(f"{m.model_id}: full {m.total_trees} trees ROC AUC {full.roc_auc:.4f}, "
              f"p99 {full.p99_calibrated_ms:.2f} ms calibrated; smallest within "
              f"{settings.tolerance:g} AUC: {chosen.trees} trees, ROC AUC {chosen.roc_auc:.4f}, "
              f"p99 {chosen.p99_calibrated_ms:.2f} ms — "
              f"{'meets' if chosen.meets_sla else 'misses'} the SLA (p99 <= "
              f"{settings.sla_p99_ms:g} ms)")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
