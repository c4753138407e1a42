"""Global feature importance as tables: mean |SHAP|, the model's own gain, permutation AUC drop.

Each takes rows in and gives a frame out; a cohort is whatever rows (or sliced Explanation)
the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from explainers.backends import model_input_for
from explainers.explanation import ExplainError, Explanation
from explainers.model import LoadedModel
from explainers.schema import ModelInput

__all__ = ["PermutationImportance", "gain_importance", "mean_abs_shap", "permutation_importance",
           "ranked", "sample_positions"]


def sample_positions(n_rows: int, sample: int | None, seed: int) -> np.ndarray:
    """Sorted row positions of a seeded sample without replacement (all rows when small)."""
    if sample is None or n_rows <= sample:
        return np.arange(n_rows)
    if sample < 1:
        raise ExplainError(f"Sample size must be at least 1, got {sample}")
    return np.sort(np.random.default_rng(seed).choice(n_rows, size=sample, replace=False))


def ranked(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sort by a score, largest first (ties keep schema order), and number the ranks from 1."""
    out = frame.sort_values(by, ascending=False, kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def mean_abs_shap(expl: Explanation) -> pd.DataFrame:
    """Features by mean |SHAP| (global importance), with mean signed SHAP and rank."""
    if not len(expl):
        raise ExplainError("Cannot rank features on an empty explanation")
    frame = pd.DataFrame({"feature": list(expl.feature_names),
                          "mean_abs_shap": np.abs(expl.values).mean(axis=0),
                          "mean_shap": expl.values.mean(axis=0)})
    return ranked(frame, "mean_abs_shap")


def gain_importance(model: LoadedModel) -> pd.DataFrame:
    """The framework's own split-gain importance, normalised to sum to 1, with rank."""
    gains = model.backend.gain_importance(model.native, model.schema)
    frame = pd.DataFrame({"feature": model.schema.names,
                          "gain": [float(gains.get(n, 0.0)) for n in model.schema.names]})
    return ranked(frame, "gain")


@dataclass(frozen=True, eq=False)
class PermutationImportance:
    """ROC AUC lost when each feature is shuffled, on a seeded sample of labelled rows."""

    baseline_auc: float
    table: pd.DataFrame  # feature, auc_drop (mean over repeats), auc_drop_std, rank
    n_rows: int
    n_repeats: int
    seed: int


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def permutation_importance(model: LoadedModel, df: pd.DataFrame | ModelInput, y: np.ndarray, *,
                           n_repeats: int = 3, seed: int, sample: int | None = 5000
                           ) -> PermutationImportance:
    """Drop in ROC AUC per feature when its column is shuffled within the model's input."""
    inputs = model_input_for(model, df)
    labels = np.asarray(y).reshape(-1)
    if len(labels) != len(inputs.frame):
        raise ExplainError(f"{len(labels)} labels for {len(inputs.frame)} rows; they must match")
    if n_repeats < 1:
        raise ExplainError(f"n_repeats must be at least 1, got {n_repeats}")
    positions = sample_positions(len(labels), sample, seed)
    frame = inputs.frame.iloc[positions].reset_index(drop=True)
    labels = labels[positions]
    if len(np.unique(labels)) != 2:
        raise ExplainError("Permutation importance needs both fraud and non-fraud labels "
                           "in the sample")
    flagged = inputs.flagged[positions]
    baseline = _auc(labels, model.margin(ModelInput(frame, flagged)))
    rng = np.random.default_rng(seed)
    drops = np.empty((len(frame.columns), n_repeats))
    for j, name in enumerate(frame.columns):
        column = frame[name]
        for r in range(n_repeats):
            shuffled = frame.copy()
            # set_axis keeps the dtype, so categoricals stay Categorical with their levels
            shuffled[name] = column.iloc[rng.permutation(len(frame))].set_axis(frame.index)
            drops[j, r] = baseline - _auc(labels, model.margin(ModelInput(shuffled, flagged)))
    table = pd.DataFrame({"feature": list(frame.columns), "auc_drop": drops.mean(axis=1),
                          "auc_drop_std": drops.std(axis=1)})
    return PermutationImportance(baseline, ranked(table, "auc_drop"), len(frame), n_repeats, seed)
