"""Precompute what the pages' first visits read, so no page computes on its first visit what
a job could do: Model Comparison for its default candidates and settings, Monitoring for every
registered model that is not archived (default window and rules) and each experiment's report
(default settings), each kept under the workspace for the lake's current data version with
exactly the key the page asks for (`app.services.model_comparison.default_settings`,
`monitoring.kept_window`, `experiments.kept_parts`). Results already kept for this data
version are skipped. No Streamlit; `fraudlens precompute` (and `score`/`explain` at their end)
run it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from app.services import experiments, monitoring, overview
from app.services import model_comparison as comparison
from app.services.monitoring_rules import load_rules
from data_access import report_cache
from explainers.errors import FraudLensError

__all__ = ["Step", "precompute", "sample_seed"]

Say = Callable[[str], None]


def sample_seed() -> int:
    """The seed for every sample the pages draw (FRAUDLENS_SEED, default 7)."""
    try:
        return int(os.environ.get("FRAUDLENS_SEED", "7"))
    except ValueError:
        return 7


@dataclass(frozen=True)
class Step:
    """One result: what it is, whether it was computed, already kept, or could not be."""

    kind: str  # "comparison", "monitoring" or "experiment"
    name: str
    outcome: str  # "computed", "already kept", "not computed: <why>" or "failed: <error>"
    seconds: float

    @property
    def failed(self) -> bool:
        """It raised something other than a FraudLensError: a bug, not a state of the data."""
        return self.outcome.startswith("failed")

    @property
    def line(self) -> str:
        where = "" if self.outcome.startswith(("not computed", "failed")) else (
            " for this data version")
        return f"{self.kind} {self.name}: {self.outcome}{where} ({self.seconds:.1f} s)"


def precompute(ws: Any, *, seed: int | None = None, on_step: Say | None = None,
               progress: Say | None = None) -> list[Step]:
    """Compute and keep, for the lake's current data version, every result the pages read
    on their first visit with default settings; `ws` is a `data_access.workspace.Workspace`.
    `on_step` hears each finished result's line, `progress` the stages within one."""
    seed = sample_seed() if seed is None else seed
    say = progress or (lambda _m: None)
    steps: list[Step] = []
    with closing(ws.lake()) as lake:
        for step in _all(ws, lake.con, lake.version, seed, say):
            steps.append(step)
            if on_step is not None:
                on_step(step.line)
    return steps


def _all(ws: Any, con: Any, version: str, seed: int, say: Say) -> Iterator[Step]:
    manifests = {m.key: m for m in ws.registry.list()}
    infos = overview.model_infos([{**m.to_dict(), "model_id": key}
                                  for key, m in manifests.items()])
    chosen = comparison.default_candidates(infos)
    if len(chosen) >= 2:
        reference = comparison.default_reference(infos, chosen)
        picked = [manifests[m] for m in chosen]
        settings = comparison.default_settings(seed)
        stable = comparison.kept_parts(chosen, [m.sha256 for m in picked], reference, settings)

        def compare() -> Any:
            say(f"loading {', '.join(chosen)}")
            models = [ws.registry.load(m) for m in picked]
            return comparison.build_report(con, picked, models, settings, reference=reference,
                                           latency=comparison.timed_with(ws.registry),
                                           progress=say)

        yield _step("comparison", f"{' vs '.join(chosen)} (reference {reference})",
                    comparison.KEPT_KIND, stable, ws, version, compare)

    try:
        rules = load_rules(ws.path)
    except FraudLensError as exc:
        rules, why = None, str(exc)
    for info in infos:
        if info.stage == "archived":
            continue
        if rules is None:
            yield Step("monitoring", info.model_id, f"not computed: {why}", 0.0)
            continue
        manifest = {**manifests[info.model_id].to_dict(), "model_id": info.model_id}
        # the whole lake: the page's default dates (`monitoring.kept_window`)
        yield _step("monitoring", info.model_id, monitoring.KEPT_KIND,
                    monitoring.kept_parts(manifest, rules), ws, version,
                    lambda m=manifest, r=rules: monitoring.build_report(con, m, r,
                                                                        progress=say))

    asked = experiments.ExperimentSettings(seed=seed)  # what the Experiments page asks for
    for name in experiments.experiment_names(con):
        yield _step("experiment", name, experiments.KEPT_KIND,
                    experiments.kept_parts(name, asked), ws, version,
                    lambda n=name: experiments.build_report(con, n, asked,
                                                            data_version=version,
                                                            progress=say))


def _step(kind: str, name: str, cache_kind: str, stable: tuple[object, ...], ws: Any,
          version: str, build: Callable[[], Any]) -> Step:
    start = time.perf_counter()
    if report_cache.has_kept(ws.path, cache_kind, stable, version):
        return Step(kind, name, "already kept", time.perf_counter() - start)
    try:
        result = build()
    except FraudLensError as exc:  # e.g. a model not scored yet: the page would say the same
        return Step(kind, name, f"not computed: {exc}", time.perf_counter() - start)
    except Exception as exc:  # one result's failure never stops the others (nor `score`)
        return Step(kind, name, f"failed: {type(exc).__name__}: {exc}",
                    time.perf_counter() - start)
    kept = report_cache.keep(ws.path, cache_kind, stable, version, result)
    outcome = "computed" if kept else "computed, but it could not be kept"
    return Step(kind, name, outcome, time.perf_counter() - start)
