"""Interaction and dependence views as tables, computed on seeded samples (never all rows).

Interaction strength between features i and j is mean |phi_ij| over the sample, where phi_ij is
the SHAP interaction value (half of the pair's joint effect, shap's convention). Main effects
are left out (diagonal 0): they belong to `mean_abs_shap`.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from explainers.backends import KERNELS, catboost_shap_mode, model_input_for
from explainers.explanation import ExplainError, Explanation
from explainers.importance import sample_positions
from explainers.model import LoadedModel
from explainers.schema import ModelInput
from explainers.tree_kernel import KernelUnsupported

__all__ = ["MISSING_LABEL", "dependence_data", "interaction_values", "strongest_interaction"]

MISSING_LABEL = "missing"

# (native model, native input, n features, top_k) -> (chosen feature positions, k x k mean |phi|)
TopInteractions = Callable[[Any, Any, int, int], tuple[np.ndarray, np.ndarray]]


def _top(main: np.ndarray, top_k: int) -> np.ndarray:
    strength = np.abs(main).mean(axis=0)
    return np.argsort(-strength, kind="stable")[:top_k]


def _xgboost_top(native: Any, dmatrix: Any, n_features: int,
                 top_k: int) -> tuple[np.ndarray, np.ndarray]:
    phi = np.asarray(native.predict(dmatrix, pred_interactions=True), dtype=np.float64)
    top = _top(phi[:, :n_features, :].sum(axis=2), top_k)
    return top, np.abs(phi[:, top][:, :, top]).mean(axis=0)


def _catboost_top(native: Any, pool: Any, n_features: int,
                  top_k: int) -> tuple[np.ndarray, np.ndarray]:
    # CatBoost computes one pair per call when given interaction_indices, so only the top-k
    # features' pairs are paid for instead of the full (F+1)^2 tensor.
    shap = native.get_feature_importance(pool, type="ShapValues", shap_calc_type="Regular",
                                         shap_mode=catboost_shap_mode(native, pool.num_row()))
    top = _top(np.asarray(shap)[:, :n_features], top_k)
    matrix = np.zeros((len(top), len(top)))
    for a, b in combinations(range(len(top)), 2):
        pair = native.get_feature_importance(pool, type="ShapInteractionValues",
                                             interaction_indices=[int(top[a]), int(top[b])])
        matrix[a, b] = matrix[b, a] = float(np.abs(np.asarray(pair)[:, 0, 1]).mean())
    return top, matrix


INTERACTIONS: dict[str, TopInteractions] = {"xgboost": _xgboost_top, "catboost": _catboost_top}


def _xgboost_fast_top(model: LoadedModel, inputs: ModelInput, n_features: int,
                      top_k: int) -> tuple[np.ndarray, np.ndarray]:
    phi = KERNELS.kernel(model.native).interactions(inputs.frame)
    top = _top(phi[:, :n_features, :].sum(axis=2), top_k)
    return top, np.abs(phi[:, top][:, :, top]).mean(axis=0)


# Frameworks with FraudLens's own exact kernel, tried before the framework's own interactions.
FAST_INTERACTIONS: dict[str, Callable[[LoadedModel, ModelInput, int, int],
                                      tuple[np.ndarray, np.ndarray]]] = {
    "xgboost": _xgboost_fast_top}


def _top_interactions(model: LoadedModel, subset: ModelInput, n_features: int,
                      top_k: int) -> tuple[np.ndarray, np.ndarray]:
    fast = FAST_INTERACTIONS.get(model.framework)
    if fast is not None:
        try:
            return fast(model, subset, n_features, top_k)
        except KernelUnsupported:
            pass  # the framework's own interactions explain what the kernel cannot
    native_input = model.backend.native_input(model.native, subset, model.schema)
    return INTERACTIONS[model.framework](model.native, native_input, n_features, top_k)


def interaction_values(model: LoadedModel, x: ModelInput | pd.DataFrame, *, top_k: int = 5,
                       sample: int = 500, seed: int) -> pd.DataFrame:
    """Mean |SHAP interaction| between the top-k features (by mean |SHAP|) on a seeded sample.

    A symmetric k x k frame indexed and columned by feature, most important first.
    """
    if top_k < 1:
        raise ExplainError(f"top_k must be at least 1, got {top_k}")
    inputs = model_input_for(model, x)
    positions = sample_positions(len(inputs.frame), sample, seed)
    if not len(positions):
        raise ExplainError("There are no rows to compute interactions on")
    subset = ModelInput(inputs.frame.iloc[positions], inputs.flagged[positions])
    names = model.schema.names
    top, matrix = _top_interactions(model, subset, len(names), min(top_k, len(names)))
    matrix = (matrix + matrix.T) / 2.0  # XGBoost's float32 phi_ij and phi_ji differ in the last bit
    np.fill_diagonal(matrix, 0.0)
    labels = pd.Index([names[i] for i in top], name="feature")
    return pd.DataFrame(matrix, index=labels, columns=labels.rename("partner"))


def strongest_interaction(matrix: pd.DataFrame) -> pd.DataFrame:
    """Each feature's strongest partner in an interaction matrix (ties go to the earlier one)."""
    values = matrix.to_numpy(dtype=np.float64, copy=True)
    np.fill_diagonal(values, -np.inf)
    rows = []
    for i, feature in enumerate(matrix.index):
        j = int(np.argmax(values[i])) if len(values) > 1 else -1
        rows.append({"feature": feature,
                     "partner": matrix.columns[j] if j >= 0 else None,
                     "mean_abs_interaction": float(values[i, j]) if j >= 0 else 0.0})
    return pd.DataFrame(rows, columns=["feature", "partner", "mean_abs_interaction"])


def display_values(column: pd.Series) -> pd.Series:
    """Values as analysts read them: categorical levels as labels, missing levels 'missing'."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.astype(object).where(column.notna(), MISSING_LABEL).astype(str)
    return column


def dependence_data(expl: Explanation, feature: str, *, color_by: str | None = None,
                    sample: int | None = 5000, seed: int) -> pd.DataFrame:
    """Points of a dependence plot on a seeded sample: row, value, shap and optional colour.

    `row` is the position in `expl` (plus `row_id` when known); categorical values and colours
    are level labels.
    """
    j = expl.feature_index(feature)
    positions = sample_positions(len(expl), sample, seed)
    out = pd.DataFrame({"row": positions})
    if expl.row_ids is not None:
        out["row_id"] = expl.row_ids[positions]
    out["value"] = display_values(expl.data.iloc[positions, j]).to_numpy()
    out["shap"] = expl.values[positions, j]
    if color_by is not None:
        c = expl.feature_index(color_by)
        out["color"] = display_values(expl.data.iloc[positions, c]).to_numpy()
    return out
