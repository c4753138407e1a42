"""Pruning for the serving SLA: how much holdout ROC AUC each candidate keeps with only its
first k trees, against its measured p99 single-row latency, and registering a truncated model
as a new candidate. No Streamlit, no SQL beyond `data_access`.

Truncation uses the frameworks' own iteration ranges (XGBoost `iteration_range`, CatBoost
`ntree_end`) to score, and their own slicing (`booster[:k]`, `shrink` on a copy) to time and
to register, so a pruned model scores exactly as its parent over the same range. Latency is
judged after calibration (`explainers.latency.calibrate`): the same model gets the same verdict
in the CLI and in the app.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from data_access import report_cache
from data_access.cohort_queries import feature_rows
from data_access.holdout import candidate_rows, newest_label_time
from data_access.registry import Manifest, ModelRegistry
from explainers import comparison_stats as cmp
from explainers.errors import ValidationError
from explainers.latency import Calibration, calibrate, single_row_p99
from explainers.model import LoadedModel, sigmoid
from explainers.timeutil import to_utc

__all__ = ["FrontierPoint", "FrontierSettings", "ModelFrontier", "PruningFrontier",
           "cached_frontier", "frontier", "prune_model", "truncated", "truncated_margin"]


def _xgb_margin(native: Any, data: Any, k: int) -> np.ndarray:
    return np.asarray(native.predict(data, output_margin=True, iteration_range=(0, k)), float)


def _cb_margin(native: Any, data: Any, k: int) -> np.ndarray:
    return np.asarray(native.predict(data, prediction_type="RawFormulaVal", ntree_end=k), float)


def _xgb_slice(native: Any, k: int) -> Any:
    return native[:k]


def _cb_slice(native: Any, k: int) -> Any:
    copy = native.copy()
    copy.shrink(ntree_end=k)
    return copy


# framework -> (margin over the first k trees, a copy holding only the first k trees)
TRUNCATION: dict[str, tuple[Callable[[Any, Any, int], np.ndarray], Callable[[Any, int], Any]]] = {
    "xgboost": (_xgb_margin, _xgb_slice),
    "catboost": (_cb_margin, _cb_slice),
}


def _trees(model: LoadedModel) -> int:
    return int(model.backend.structure(model.native)["trees"])


def truncated_margin(model: LoadedModel, frame: pd.DataFrame, k: int) -> np.ndarray:
    """The model's margin over its first `k` trees, by the framework's own iteration range."""
    native_input = model.backend.native_input(model.native, model.prepare(frame), model.schema)
    return TRUNCATION[model.framework][0](model.native, native_input, k)


def truncated(model: LoadedModel, k: int) -> LoadedModel:
    """A copy of the model holding only its first `k` trees (the parent is not changed)."""
    total = _trees(model)
    if not 1 <= k <= total:
        raise ValidationError(f"{model.key} has {total} trees; --trees must be between 1 and "
                              f"{total}, got {k}")
    return replace(model, version=f"{model.version}[:{k}]",
                   native=TRUNCATION[model.framework][1](model.native, k))


def prune_model(registry: ModelRegistry, ref: str, trees: int, version: str,
                con: duckdb.DuckDBPyConnection | None = None) -> Manifest:
    """Register the first `trees` trees of model `ref` as `<name>@<version>`, a candidate
    whose manifest names its `parent`, `trees` and `parent_sha256`; through the registry's
    normal register (format check and probe included). With `con`, its holdout ROC AUC and
    PR AUC are measured on the matured holdout after the parent's training window."""
    parent = registry.resolve(ref)
    model = registry.load(parent)
    small = truncated(model, trees)
    artifact = model.backend.dump(small.native, parent.artifact)
    metrics = _holdout_metrics(con, parent, small) if con is not None else None
    return registry.register(
        artifact, name=parent.name, version=version, framework_name=parent.framework,
        artifact_name=parent.artifact, schema=parent.feature_schema,
        training_window=parent.training_window, seed=parent.seed, metrics=metrics,
        extra={"parent": parent.key, "trees": trees, "parent_sha256": parent.sha256})


def _holdout_metrics(con: duckdb.DuckDBPyConnection, parent: Manifest,
                     model: LoadedModel) -> dict[str, float] | None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    try:
        data = _holdout(con, [parent], [model], FrontierSettings(holdout_rows=10**9))
    except ValidationError:
        return None  # no matured labels yet: the metrics stay unknown
    y, p = data["is_fraud"].to_numpy(dtype=int), model.predict_proba(model.prepare(data))
    return {"roc_auc": round(float(roc_auc_score(y, p)), 6),
            "pr_auc": round(float(average_precision_score(y, p)), 6),
            "holdout_rows": len(y), "holdout_fraud": int(y.sum())}


# --------------------------------------------------------------------------- the frontier


@dataclass(frozen=True)
class FrontierSettings:
    sla_p99_ms: float = 10.0  # judged on the calibrated p99
    tolerance: float = 0.005  # ROC AUC a pruned model may lose against the full one
    maturity_days: int = 30
    holdout_rows: int = 20_000
    timing_calls: int = 200
    steps: int = 12
    seed: int = 7


@dataclass(frozen=True)
class FrontierPoint:
    trees: int
    roc_auc: float
    p99_ms: float  # measured here
    p99_calibrated_ms: float  # on the reference machine: what the SLA is judged on
    meets_sla: bool


@dataclass(frozen=True)
class ModelFrontier:
    model_id: str
    framework: str
    sha256: str
    total_trees: int
    points: tuple[FrontierPoint, ...]
    smallest_within: int  # fewest trees within the tolerance of the full model's ROC AUC

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([dataclasses.asdict(p) for p in self.points]).assign(
            model=self.model_id)


@dataclass(frozen=True)
class PruningFrontier:
    models: tuple[ModelFrontier, ...]
    settings: FrontierSettings
    calibration: Calibration
    holdout_rows: int
    holdout_fraud: int
    created_at: str
    stages: tuple[str, ...] = field(default=(), compare=False)

    def frame(self) -> pd.DataFrame:
        return pd.concat([m.frame() for m in self.models], ignore_index=True)


def tree_grid(total: int, steps: int) -> list[int]:
    fractions = np.linspace(0, 1, steps + 1)[1:]
    return sorted({max(1, int(np.ceil(total * f))) for f in fractions} | {total})


def _holdout(con: duckdb.DuckDBPyConnection, manifests: Sequence[Manifest],
             models: Sequence[LoadedModel], settings: FrontierSettings) -> pd.DataFrame:
    """A seeded sample of the matured holdout after every candidate's training window, with
    labels and the features every model needs."""
    newest = newest_label_time(con)
    if newest is None:
        raise ValidationError("No labels in the workspace: nothing to measure ROC AUC on")
    ends = [to_utc(m.training_window.get("end")) for m in manifests
            if str(m.training_window.get("end") or "").strip()]
    train_end = max(ends) if ends else None
    pool = candidate_rows(con, [m.key for m in manifests], train_end, newest, None)
    pool["scored"] = True  # truncated models are scored here, not read from the lake
    rules = cmp.HoldoutRules(as_of=newest, train_end=train_end,
                             maturity_days=settings.maturity_days)
    rows = pool[cmp.select_holdout(pool, rules).mask]
    if rows.empty or rows["is_fraud"].nunique() < 2:
        raise ValidationError("The matured holdout holds too few labelled rows of both kinds "
                              "to measure ROC AUC; lower the maturity or wait for labels")
    rows = rows.sample(n=min(settings.holdout_rows, len(rows)), random_state=settings.seed)
    names = list(dict.fromkeys(n for m in models for n in m.schema.names))
    features = feature_rows(con, rows["transaction_id"].tolist(), names)
    return features.merge(rows[["transaction_id", "is_fraud"]], on="transaction_id")


def _model_frontier(model: LoadedModel, sha256: str, data: pd.DataFrame, timing: pd.DataFrame,
                    calibration: Calibration, settings: FrontierSettings,
                    say: Callable[[str], None]) -> ModelFrontier:
    from sklearn.metrics import roc_auc_score

    total = _trees(model)
    y = data["is_fraud"].to_numpy(dtype=int)
    backend = model.backend
    native_input = backend.native_input(model.native, model.prepare(data), model.schema)
    one_row = [backend.native_input(model.native, model.prepare(timing.iloc[[i]]), model.schema)
               for i in range(len(timing))]  # built once, timed against every truncation
    margin = TRUNCATION[model.framework][0]
    points = []
    for k in tree_grid(total, settings.steps):
        auc = float(roc_auc_score(y, sigmoid(margin(model.native, native_input, k))))
        small = truncated(model, k).native
        p99 = single_row_p99(lambda x, small=small: backend.margin(small, x), one_row,
                             settings.timing_calls)
        scaled = calibration.scaled(p99)
        points.append(FrontierPoint(k, auc, p99, scaled, scaled <= settings.sla_p99_ms))
        say(f"{model.key}: {k} trees, ROC AUC {auc:.4f}, p99 {p99:.3f} ms")
    full = points[-1].roc_auc
    within = [p.trees for p in points if p.roc_auc >= full - settings.tolerance]
    return ModelFrontier(model.key, model.framework, sha256, total, tuple(points), min(within))


def frontier(con: duckdb.DuckDBPyConnection, manifests: Sequence[Manifest],
             models: Sequence[LoadedModel], settings: FrontierSettings, *,
             progress: Callable[[str], None] | None = None) -> PruningFrontier:
    """For each model: ROC AUC on the matured holdout and calibrated p99 latency for the
    first k trees over a grid of k, and the smallest k within `tolerance` of the full AUC."""
    say = progress or (lambda _msg: None)
    say("calibrating: timing the reference workload")
    before = calibrate()
    say("reading the matured holdout")
    data = _holdout(con, manifests, models, settings)
    timing = data.sample(n=min(50, len(data)), random_state=settings.seed)
    out = [_model_frontier(m, mf.sha256, data, timing, before, settings, say)
           for m, mf in zip(models, manifests, strict=True)]
    calibration = before.combined(calibrate())
    if calibration.factor != before.factor:  # judge with the calibration of the whole run
        out = [replace(f, points=tuple(
            replace(p, p99_calibrated_ms=calibration.scaled(p.p99_ms),
                    meets_sla=calibration.scaled(p.p99_ms) <= settings.sla_p99_ms)
            for p in f.points)) for f in out]
    return PruningFrontier(tuple(out), settings, calibration, len(data),
                           int(data["is_fraud"].sum()),
                           datetime.now(UTC).isoformat(timespec="seconds"))


def _to_dict(f: PruningFrontier) -> dict[str, Any]:
    return dataclasses.asdict(f)


def _from_dict(d: dict[str, Any]) -> PruningFrontier:
    models = tuple(ModelFrontier(**{**m, "points": tuple(FrontierPoint(**p) for p in m["points"])})
                   for m in d["models"])
    return PruningFrontier(models, FrontierSettings(**d["settings"]),
                           Calibration(**d["calibration"]), d["holdout_rows"],
                           d["holdout_fraud"], d["created_at"], tuple(d.get("stages", ())))


def frontier_path(workspace: str | Path, manifests: Sequence[Manifest], data_version: str,
                  settings: FrontierSettings) -> Path:
    return report_cache.cache_path(workspace, "frontier", *(m.sha256 for m in manifests),
                                   data_version, dataclasses.astuple(settings))


def stored_frontier(workspace: str | Path, manifests: Sequence[Manifest], data_version: str,
                    settings: FrontierSettings) -> PruningFrontier | None:
    """The frontier computed earlier for these models, data and settings, or None."""
    data = report_cache.read_report(frontier_path(workspace, manifests, data_version, settings))
    try:
        return _from_dict(data) if data is not None else None
    except (KeyError, TypeError):
        return None


def cached_frontier(con: duckdb.DuckDBPyConnection, workspace: str | Path,
                    manifests: Sequence[Manifest], models: Sequence[LoadedModel],
                    data_version: str, settings: FrontierSettings, *,
                    progress: Callable[[str], None] | None = None) -> PruningFrontier:
    """The stored frontier, or compute and store it (the job `fraudlens models frontier`
    runs; the page reads what it stored)."""
    found = stored_frontier(workspace, manifests, data_version, settings)
    if found is not None:
        return found
    result = frontier(con, manifests, models, settings, progress=progress)
    report_cache.write_report(frontier_path(workspace, manifests, data_version, settings),
                              _to_dict(result))
    return result
