"""`fraudlens demo`: build a whole workspace (world, two candidates, scores, SHAP) in one go.

It is built in a sibling folder and moved into place at the end, so a failure leaves no
half-built workspace behind.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from data_access.warehouse import import_frames
from data_access.workspace import Workspace, sync_models
from explainers.errors import FraudLensError
from jobs import demo_world, train
from jobs.demo_experiment import EXPERIMENT, plant_experiment
from jobs.explain import fill_store
from jobs.scoring import score_transactions

DEMO_MODELS = (("fraud_xgb", "xgboost"), ("fraud_catboost", "catboost"))


def _say(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:5.1f}s] {msg}", file=sys.stderr, flush=True)


def labelled_frame(world: demo_world.World) -> pd.DataFrame:
    """Matured transactions with `is_fraud`: labels known as of the snapshot, and old enough
    that legitimate labels have arrived too (otherwise recent known labels are mostly fraud)."""
    labels = world.labels[["transaction_id", "is_fraud"]]
    frame = world.transactions.merge(labels, on="transaction_id", how="inner")
    mature_before = pd.Timestamp(demo_world.DEMO_END) - pd.Timedelta(days=train.MATURITY_DAYS)
    return frame[frame["event_time"] < mature_before]


def build_demo(workspace: str | os.PathLike[str], *, rows: int = 100_000, seed: int = 7,
               explain: bool = True, explain_sample: int | None = None
               ) -> Workspace:
    target = Path(workspace)
    if (target / "lake").exists():
        raise FraudLensError(f"{target} already holds a lake; choose another --workspace "
                             "or remove it first")
    if target.exists() and any(target.iterdir()):
        raise FraudLensError(f"{target} exists and is not empty; choose an empty folder")
    building = target.with_name(f".{target.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    t0 = time.perf_counter()
    try:
        ws = Workspace(building)
        _say(f"generating {rows:,} transactions (seed {seed})", t0)
        world = demo_world.generate_world(rows=rows, seed=seed)
        lake = ws.lake(create=True)
        try:
            import_frames(lake, world.transactions, world.labels, source="demo world")
            truth = pa.Table.from_pandas(world.ground_truth, preserve_index=False)
            lake.publish("ground_truth_typologies/demo.parquet", truth)
            schema = demo_world_schema()
            split = train.time_split(labelled_frame(world))
            _say(f"training on {len(split.train):,} rows before {split.cutoff:%Y-%m-%d}, "
                 f"holdout {len(split.holdout):,} rows", t0)
            trainers = {"xgboost": train.train_xgboost, "catboost": train.train_catboost}
            for name, fw in DEMO_MODELS:
                trained = trainers[fw](split, schema, seed)
                _say(f"{name}: holdout ROC AUC {trained.metrics['roc_auc']:.3f}, "
                     f"PR AUC {trained.metrics['pr_auc']:.3f}", t0)
                artifact = train_artifact(trained)
                ws.registry.register(
                    artifact, name=name, version="1", framework_name=fw,
                    artifact_name=trained.artifact_name, schema=schema,
                    training_window=trained.training_window, seed=seed,
                    metrics=trained.metrics, extra={"params": trained.params})
            sync_models(lake, ws.registry)
            for manifest in ws.registry.list():
                model = ws.registry.load(manifest)
                n = score_transactions(lake, model)
                _say(f"scored {n:,} rows with {model.key}", t0)
                if explain:
                    sample = explain_sample if explain_sample and explain_sample < rows else None
                    n = fill_store(lake, model, sample=sample, seed=seed)
                    _say(f"stored SHAP values for {n:,} rows of {model.key}", t0)
            units = plant_experiment(lake, ws.registry, world, seed)
            _say(f"planted experiment {EXPERIMENT}: {units:,} accounts in two arms", t0)
        finally:
            lake.close()
        if target.exists():
            target.rmdir()
        os.replace(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    _say(f"demo workspace ready at {target}", t0)
    return Workspace(target)


def demo_world_schema():
    from explainers.schema import FeatureSchema

    return FeatureSchema.from_dict(demo_world.DEMO_FEATURE_SCHEMA)


def train_artifact(trained: train.TrainedModel) -> bytes:
    from explainers.model import framework

    return framework(trained.framework).dump(trained.native, trained.artifact_name)
