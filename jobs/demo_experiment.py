"""A planted experiment for the demo world: after the training window, half the accounts
(chosen from their ids with the seed) get the challenger at its cost-optimal threshold, the
other half keep the reference at its own. Both models score every transaction, so the
generator knows each account's outcome under either arm: the true effect (challenger − control
over the whole population, on the rows a report can judge) is stored in
`ground_truth_experiments/`, which no page, model or export reads.

The assignments go through the same import path as `fraudlens import assignments`.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.assignments import import_assignments
from data_access.lake import Lake, model_key
from data_access.registry import ModelRegistry
from explainers import experiment_stats as xs
from explainers import review_cost
from explainers.timeutil import to_utc
from jobs.demo_world import DEMO_END, World

__all__ = ["CONTROL", "EXPERIMENT", "MATURITY_DAYS", "TREATMENT", "plant_experiment"]

EXPERIMENT = "challenger_rollout"
CONTROL, TREATMENT = "fraud_xgb@1", "fraud_catboost@1"
MATURITY_DAYS = 30  # the report's default: the truth is taken on the rows it judges
REVIEW_COST = 5.0


def _arm_of(accounts: pd.Series, seed: int) -> np.ndarray:
    """True for the treatment half: the first byte of sha256(seed:account) is odd."""
    return np.array([hashlib.sha256(f"{seed}:{a}".encode()).digest()[0] % 2 == 1
                     for a in accounts], dtype=bool)


def _threshold(model_id: str, frame: pd.DataFrame, score: np.ndarray, start: pd.Timestamp,
               end: pd.Timestamp) -> float:
    """The cost-minimising threshold on the model's own holdout window."""
    on = ((frame["event_time"] >= start) & (frame["event_time"] <= end)
          & frame["is_fraud"].notna()).to_numpy()
    part = frame[on]
    choice = review_cost.choose_threshold(
        model_id, score[on], part["is_fraud"].to_numpy(int), part["amount_usd"].to_numpy(float),
        part["event_time"].dt.floor("D").to_numpy(), review_cost.CostModel(REVIEW_COST))
    return float(choice.threshold)


def _truth(frame: pd.DataFrame, scores: dict[str, np.ndarray], thresholds: dict[str, float],
           population: np.ndarray) -> pd.DataFrame:
    part = frame[population]
    accounts = pd.factorize(part["account_id"])[0]
    days = int(part["event_time"].dt.floor("D").nunique())
    values = {}
    for model, arm in ((CONTROL, "control"), (TREATMENT, "treatment")):
        rows = xs.ArmRows(arm, model, thresholds[model], accounts,
                          part["is_fraud"].to_numpy(int), scores[model][population],
                          part["amount_usd"].to_numpy(float))
        values[arm] = xs.point_metrics(rows, days, REVIEW_COST)
    return pd.DataFrame({"experiment": EXPERIMENT, "metric": list(xs.DIFFERENCE_METRICS),
                         "control": [values["control"][m] for m in xs.DIFFERENCE_METRICS],
                         "treatment": [values["treatment"][m] for m in xs.DIFFERENCE_METRICS],
                         "true_effect": [values["treatment"][m] - values["control"][m]
                                         for m in xs.DIFFERENCE_METRICS]})


def plant_experiment(lake: Lake, registry: ModelRegistry, world: World, seed: int) -> int:
    """Import the experiment's assignments and store its true effect; returns the units."""
    manifests = {m.key: m for m in registry.list()}
    frame = world.transactions[["transaction_id", "account_id", "event_time", "amount_usd"]]
    frame = frame.merge(world.labels[["transaction_id", "is_fraud"]], on="transaction_id",
                        how="left")
    scores, thresholds = {}, {}
    for key in (CONTROL, TREATMENT):
        model = registry.load(key)
        scores[key] = model.predict_proba(model.prepare(world.transactions))
        window = manifests[key].training_window
        thresholds[key] = _threshold(key, frame, scores[key], to_utc(window["holdout_start"]),
                                     to_utc(window["holdout_end"]))
    start = max(to_utc(m.training_window["end"]) for m in manifests.values()).ceil("D")
    end = pd.Timestamp(DEMO_END)
    in_window = ((frame["event_time"] >= start) & (frame["event_time"] < end)).to_numpy()
    accounts = pd.Series(frame.loc[in_window, "account_id"].unique()).sort_values()
    treated = _arm_of(accounts, seed)
    assignments = pd.DataFrame({
        "experiment": EXPERIMENT, "unit_id": accounts.to_numpy(), "unit_type": "account",
        "arm": np.where(treated, "treatment", "control"),
        "model": np.where(treated, TREATMENT, CONTROL),
        "threshold": np.where(treated, thresholds[TREATMENT], thresholds[CONTROL]),
        "start": start, "end": end})
    import_assignments(lake, assignments, list(manifests), source="demo experiment")
    as_of = to_utc(world.labels["label_time"].max())
    population = (in_window & (frame["event_time"] <= as_of - pd.Timedelta(days=MATURITY_DAYS))
                  .to_numpy() & frame["is_fraud"].notna().to_numpy())
    truth = _truth(frame, scores, thresholds, population)
    lake.publish(f"ground_truth_experiments/{model_key(EXPERIMENT)}.parquet",
                 pa.Table.from_pandas(truth, preserve_index=False))
    return len(accounts)
