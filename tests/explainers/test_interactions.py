"""Interaction matrices and dependence data on seeded samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from catboost import Pool

from explainers.backends import explain
from explainers.explanation import ExplainError
from explainers.importance import sample_positions
from explainers.interactions import (
    dependence_data,
    interaction_values,
    strongest_interaction,
)
from explainers.model import LoadedModel, catboost_frame


def full_interactions(model: LoadedModel, frame: pd.DataFrame) -> np.ndarray:
    """Every pair's SHAP interaction values from the framework, for comparison."""
    if model.framework == "xgboost":
        data = xgb.DMatrix(frame, enable_categorical=True)
        return model.native.predict(data, pred_interactions=True)
    pool = Pool(catboost_frame(frame, model.schema), cat_features=model.schema.categorical)
    return model.native.get_feature_importance(pool, type="ShapInteractionValues")


def test_interaction_matrix_matches_the_full_tensor_on_the_sample(
        model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0]
    matrix = interaction_values(model, df, top_k=3, sample=150, seed=5)
    frame = model.prepare(df).frame.iloc[sample_positions(len(df), 150, seed=5)]
    full = np.abs(full_interactions(model, frame)).mean(axis=0)
    names = model.schema.names
    assert matrix.shape == (3, 3)
    for a in matrix.index:
        for b in matrix.columns:
            expected = 0.0 if a == b else full[names.index(a), names.index(b)]
            assert matrix.loc[a, b] == pytest.approx(expected, abs=1e-6)
    np.testing.assert_allclose(matrix.to_numpy(), matrix.to_numpy().T)


def test_interaction_features_are_the_samples_most_important(
        model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0]
    matrix = interaction_values(model, df, top_k=4, sample=200, seed=2)
    sample = df.iloc[sample_positions(len(df), 200, seed=2)]
    strength = np.abs(explain(model, sample).values).mean(axis=0)
    order = [model.schema.names[i] for i in np.argsort(-strength, kind="stable")[:4]]
    assert list(matrix.index) == order
    again = interaction_values(model, df, top_k=4, sample=200, seed=2)
    pd.testing.assert_frame_equal(matrix, again)


def test_device_and_channel_interact_in_xgboost(xgb_model: LoadedModel,
                                                holdout: tuple) -> None:
    matrix = interaction_values(xgb_model, holdout[0], top_k=6, sample=300, seed=1)
    strongest = strongest_interaction(matrix).set_index("feature")
    assert strongest.loc["channel", "partner"] == "is_new_device"


def test_strongest_interaction_ignores_the_diagonal_and_breaks_ties_by_order() -> None:
    names = pd.Index(["a", "b", "c"], name="feature")
    matrix = pd.DataFrame([[9.0, 0.2, 0.2], [0.2, 9.0, 0.5], [0.2, 0.5, 9.0]],
                          index=names, columns=names.rename("partner"))
    out = strongest_interaction(matrix)
    assert out["partner"].tolist() == ["b", "c", "b"]
    assert out["mean_abs_interaction"].tolist() == [0.2, 0.5, 0.5]


def test_dependence_data_labels_categories_and_samples_with_seed(
        cb_model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0]
    expl = explain(cb_model, df, row_ids=df["transaction_id"])
    points = dependence_data(expl, "country", color_by="amount_vs_30d_avg", sample=100, seed=4)
    assert list(points.columns) == ["row", "row_id", "value", "shap", "color"]
    assert len(points) == 100
    assert set(points["value"]) <= {"US", "GB", "DE", "FR", "NG", "missing"}
    assert "missing" in set(dependence_data(expl, "country", sample=None, seed=0)["value"])
    rows = points["row"].to_numpy()
    np.testing.assert_array_equal(points["shap"], expl.column("country")[rows])
    np.testing.assert_array_equal(points["row_id"], df["transaction_id"].to_numpy()[rows])
    np.testing.assert_array_equal(points["color"], expl.data["amount_vs_30d_avg"].to_numpy()[rows])
    same = dependence_data(expl, "country", color_by="amount_vs_30d_avg", sample=100, seed=4)
    pd.testing.assert_frame_equal(points, same)


def test_dependence_data_refuses_unknown_features(xgb_model: LoadedModel, holdout: tuple) -> None:
    expl = explain(xgb_model, holdout[0].iloc[:10])
    with pytest.raises(ExplainError, match="Unknown feature"):
        dependence_data(expl, "nope", seed=0)
    with pytest.raises(ExplainError, match="top_k"):
        interaction_values(xgb_model, holdout[0], top_k=0, seed=0)
