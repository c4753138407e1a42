"""`fraudlens precompute`: compute and keep, for the lake's current data, what the pages'
first visits read, so they show it at once instead of computing.

    fraudlens precompute [--seed S]

Kept under `<workspace>/.cache/`, keyed by the models' checksums, the lake's data version and
the settings, exactly as the pages key them:

* Model Comparison: the page's default candidates (the first two models that are not
  archived, champions first; the champion is the reference) with the page's default
  settings;
* Monitoring: every registered model that is not archived, over the whole lake (the page's
  default dates; what `fraudlens monitor` computes without --since/--until), under
  `<workspace>/monitoring.toml` (else the default rules);
* Experiments: each imported experiment with the default settings.

One line per result with the seconds it took; results already kept for this data version
are skipped, and one that cannot be computed yet (e.g. a model not scored) says why. Exit 0;
1 only when a result failed with an unexpected error (the others are still computed).

`fraudlens score` and `fraudlens explain` run this at their end (unless given
`--no-precompute`); `compare`, `monitor` and `experiment` keep the result they compute under
the same keys. A page shows a result kept for earlier data at once, with its age and a button
to recompute it on the current data.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from app.cli.common import workspace_of

HELP = "compute and keep what the pages show on their first visit (comparison, monitoring, " \
       "experiments) for the lake's current data"


def add_parser(subparsers: Any) -> None:
    """Add `precompute` to the top-level `fraudlens` subparsers."""
    p = subparsers.add_parser("precompute", help=HELP,
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=None,
                   help="the pages' sample seed (default: $FRAUDLENS_SEED, else 7, as the app)")
    p.set_defaults(func=cmd_precompute)


def add_flag(parser: argparse.ArgumentParser) -> None:
    """`--no-precompute` for a command that changes the lake (`score`, `explain`)."""
    parser.add_argument("--no-precompute", action="store_true",
                        help="do not run `fraudlens precompute` at the end (the pages then "
                             "compute on their first visit after this change)")


def _say(message: str) -> None:
    print(f"precompute: {message}", file=sys.stderr, flush=True)


def _line(line: str) -> None:
    print(line, flush=True)


def run(ws: Any, seed: int | None = None, on_step: Any = _line) -> bool:
    """Precompute for the workspace, one line per result (on stdout); False when a result
    failed with an unexpected error (the others are still computed)."""
    from app.services.precompute import precompute

    steps = precompute(ws, seed=seed, on_step=on_step, progress=_say)
    return not any(step.failed for step in steps)


def cmd_precompute(args: argparse.Namespace) -> int:
    """Exit 0, also when a result cannot be computed yet (a model not scored: its line says
    why); 1 when one failed with an unexpected error."""
    return 0 if run(workspace_of(args), args.seed) else 1


def after_change(args: argparse.Namespace) -> None:
    """What `score` and `explain` run once they have written: precompute, unless
    `--no-precompute`, its lines on stderr (their stdout stays theirs). A result that cannot
    be computed is a line, never a failed command."""
    from explainers.errors import FraudLensError

    if getattr(args, "no_precompute", False):
        return
    try:
        run(workspace_of(args), on_step=_say)
    except FraudLensError as exc:
        print(f"fraudlens: warning: precompute did not finish: {exc}", file=sys.stderr)
