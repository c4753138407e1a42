"""Global importance tables: mean |SHAP|, gain and permutation AUC drop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explainers.backends import explain
from explainers.explanation import ExplainError, Explanation
from explainers.importance import (
    gain_importance,
    mean_abs_shap,
    permutation_importance,
    sample_positions,
)
from explainers.model import LoadedModel


def test_mean_abs_shap_ranks_by_mean_absolute_value() -> None:
    data = pd.DataFrame({"a": [0.0, 0.0, 0.0], "b": [0.0, 0.0, 0.0], "c": [0.0, 0.0, 0.0]})
    expl = Explanation(np.array([[1.0, -3.0, 0.5], [-1.0, 3.0, 0.5], [1.0, -3.0, -0.5]]),
                       0.0, ("a", "b", "c"), data)
    table = mean_abs_shap(expl)
    assert table["feature"].tolist() == ["b", "a", "c"]
    assert table["rank"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(table["mean_abs_shap"], [3.0, 1.0, 0.5])
    np.testing.assert_allclose(table["mean_shap"], [-1.0, 1 / 3, 1 / 6])


def test_mean_abs_shap_of_a_cohort_uses_only_its_rows(
        xgb_model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0]
    expl = explain(xgb_model, df)
    cohort = expl[(df["country"] == "NG").to_numpy()]
    table = mean_abs_shap(cohort).set_index("feature")
    expected = np.abs(expl.values[(df["country"] == "NG").to_numpy()]).mean(axis=0)
    np.testing.assert_allclose(table.loc[list(expl.feature_names), "mean_abs_shap"], expected)
    assert table.loc["country", "rank"] <= 3


def test_gain_importance_is_normalised_and_ranked(model: LoadedModel) -> None:
    table = gain_importance(model)
    assert set(table["feature"]) == set(model.schema.names)
    assert table["gain"].sum() == pytest.approx(1.0)
    assert table["gain"].is_monotonic_decreasing
    assert table["feature"].iloc[0] in {"amount_vs_30d_avg", "is_new_device", "minutes_since_login"}


def test_permutation_importance_finds_the_signal_and_is_seeded(
        model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df, y = holdout
    first = permutation_importance(model, df, y, n_repeats=2, seed=11, sample=400)
    again = permutation_importance(model, df, y, n_repeats=2, seed=11, sample=400)
    pd.testing.assert_frame_equal(first.table, again.table)
    assert first.n_rows == 400 and 0.6 < first.baseline_auc < 1.0
    drops = first.table.set_index("feature")["auc_drop"]
    assert drops["is_new_device"] > 0.03 and drops["amount_vs_30d_avg"] > 0.03
    assert abs(drops["amount_usd"]) < 0.03  # the label never looks at the amount
    assert first.table["rank"].tolist() == list(range(1, 7))


def test_permutation_importance_needs_both_classes(xgb_model: LoadedModel,
                                                    holdout: tuple) -> None:
    df, _ = holdout
    with pytest.raises(ExplainError, match="both"):
        permutation_importance(xgb_model, df, np.zeros(len(df)), seed=0)
    with pytest.raises(ExplainError, match="labels"):
        permutation_importance(xgb_model, df, np.zeros(3), seed=0)


def test_sample_positions_are_seeded_sorted_and_unique() -> None:
    a, b = sample_positions(1000, 50, seed=3), sample_positions(1000, 50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 50 and (np.diff(a) > 0).all()
    assert not np.array_equal(a, sample_positions(1000, 50, seed=4))
    np.testing.assert_array_equal(sample_positions(10, 50, seed=3), np.arange(10))
