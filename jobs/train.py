"""Train the XGBoost and CatBoost candidates on a time-based split, seeded, native categoricals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from explainers.model import catboost_frame
from explainers.schema import FeatureSchema

# Legitimate labels mature about 30 days after the event; fraud labels 2-40 days. Rows newer
# than this are left out of training and holdout so known labels are not fraud-enriched.
MATURITY_DAYS = 35


@dataclass(frozen=True)
class Split:
    """Training rows come strictly before holdout rows in event time."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    cutoff: pd.Timestamp


@dataclass(frozen=True)
class TrainedModel:
    framework: str
    native: object
    artifact_name: str
    metrics: dict[str, float]
    training_window: dict[str, str]
    params: dict[str, object]


def time_split(labelled: pd.DataFrame, holdout_fraction: float = 0.3) -> Split:
    """Split labelled rows at an event-time cutoff: the newest `holdout_fraction` is holdout."""
    times = labelled["event_time"].sort_values()
    cutoff = times.iloc[int(len(times) * (1 - holdout_fraction))]
    train = labelled[labelled["event_time"] < cutoff]
    holdout = labelled[labelled["event_time"] >= cutoff]
    return Split(train, holdout, cutoff)


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"roc_auc": round(float(roc_auc_score(y, p)), 6),
            "pr_auc": round(float(average_precision_score(y, p)), 6),
            "holdout_rows": len(y), "holdout_fraud": int(np.sum(y))}


def _window(split: Split) -> dict[str, str]:
    return {"start": split.train["event_time"].min().isoformat(),
            "end": split.train["event_time"].max().isoformat(),
            "holdout_start": split.holdout["event_time"].min().isoformat(),
            "holdout_end": split.holdout["event_time"].max().isoformat()}


def train_xgboost(split: Split, schema: FeatureSchema, seed: int) -> TrainedModel:
    import xgboost as xgb

    params = {"objective": "binary:logistic", "eval_metric": "aucpr", "tree_method": "hist",
              "max_depth": 4, "eta": 0.15, "subsample": 0.8, "colsample_bytree": 0.8,
              "min_child_weight": 2, "max_cat_to_onehot": 1, "seed": seed, "nthread": 2}
    rounds = 150  # TreeSHAP costs trees x leaves x depth^2 per row: keep the store fillable
    xt = schema.model_input(split.train).frame
    xh = schema.model_input(split.holdout).frame
    dtrain = xgb.DMatrix(xt, label=split.train[schema.target], enable_categorical=True)
    booster = xgb.train(params, dtrain, num_boost_round=rounds)
    p = booster.predict(xgb.DMatrix(xh, enable_categorical=True))
    return TrainedModel("xgboost", booster, "model.ubj",
                        _metrics(split.holdout[schema.target].to_numpy(), p), _window(split),
                        {**params, "num_boost_round": rounds})


def train_catboost(split: Split, schema: FeatureSchema, seed: int) -> TrainedModel:
    from catboost import CatBoostClassifier, Pool

    params = {"iterations": 200, "depth": 6, "learning_rate": 0.12, "random_seed": seed,
              "thread_count": 2, "verbose": 0, "allow_writing_files": False,
              "loss_function": "Logloss"}
    xt = catboost_frame(schema.model_input(split.train).frame, schema)
    xh = catboost_frame(schema.model_input(split.holdout).frame, schema)
    model = CatBoostClassifier(**params)
    model.fit(Pool(xt, split.train[schema.target].to_numpy(), cat_features=schema.categorical))
    p = model.predict_proba(Pool(xh, cat_features=schema.categorical))[:, 1]
    return TrainedModel("catboost", model, "model.cbm",
                        _metrics(split.holdout[schema.target].to_numpy(), p), _window(split),
                        params)
