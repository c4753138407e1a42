"""SHAP backends: exact against shap.TreeExplainer and a brute-force oracle, additive, robust."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import shap
import xgboost as xgb
from catboost import Pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explainers.backends import BACKENDS, catboost_shap_mode, explain
from explainers.explanation import ExplainError
from explainers.model import LoadedModel, catboost_frame
from explainers.schema import FeatureSchema

EXACT = 1e-5


def shap_tree_explainer(model: LoadedModel, df: pd.DataFrame) -> tuple[np.ndarray, float]:
    """shap.TreeExplainer called directly, given the input it can take for each framework."""
    frame = model.prepare(df).frame
    if model.framework == "xgboost":
        data = xgb.DMatrix(frame, enable_categorical=True)
    else:
        data = Pool(catboost_frame(frame, model.schema), cat_features=model.schema.categorical)
    explainer = shap.TreeExplainer(model.native)
    values = explainer.shap_values(data)
    return np.asarray(values, dtype=np.float64), float(np.ravel(explainer.expected_value)[0])


def test_native_matches_shap_tree_explainer_with_categoricals_and_missing(
        model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df, _ = holdout
    assert df["country"].isna().any() and df["amount_vs_30d_avg"].isna().any()
    expl = explain(model, df)
    values, base = shap_tree_explainer(model, df)
    assert np.abs(expl.values - values).max() <= EXACT
    assert abs(expl.base_value - base) <= EXACT
    assert np.abs(expl.column("country")).max() > 0.05


def test_reference_backend_matches_native(model: LoadedModel,
                                          holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0].iloc[:200]
    native, reference = explain(model, df), explain(model, df, backend="reference")
    assert np.abs(native.values - reference.values).max() <= EXACT
    assert abs(native.base_value - reference.base_value) <= EXACT


def test_shap_values_add_up_to_the_model_margin(model: LoadedModel,
                                                holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0]
    expl = explain(model, df)
    margin = model.margin(model.prepare(df))
    assert np.abs(expl.margin() - margin).max() <= 1e-4
    assert expl.values.dtype == np.float64 and expl.values.shape == (len(df), 6)
    assert list(expl.data.columns) == model.schema.names


def test_xgboost_numeric_matches_shaps_own_tree_shap(numeric_xgb_model: LoadedModel) -> None:
    # shap.TreeExplainer hands XGBoost and CatBoost models to the framework's own Tree SHAP
    # (pred_contribs / ShapValues). For an all-numeric XGBoost model shap's own C++ algorithm
    # over its own tree parser is an independent check; forcing model_type reaches it.
    rng = np.random.default_rng(3)
    df = pd.DataFrame(rng.normal(size=(300, 5)), columns=numeric_xgb_model.schema.names)
    df.loc[rng.random(300) < 0.2, "x0"] = np.nan
    expl = explain(numeric_xgb_model, df)
    explainer = shap.TreeExplainer(numeric_xgb_model.native)
    explainer.model.model_type = "internal"
    values = explainer.shap_values(df.to_numpy(), check_additivity=False)
    assert np.abs(expl.values - values).max() <= EXACT


def test_shap_cannot_take_xgboost_categorical_splits_itself(xgb_model: LoadedModel,
                                                            holdout: tuple) -> None:
    # Why the reference backend hands shap a DMatrix: shap 0.51 builds a DMatrix without
    # enable_categorical, and its own algorithm refuses XGBoost categorical splits.
    frame = xgb_model.prepare(holdout[0].iloc[:20]).frame
    with pytest.raises(ValueError, match="enable_categorical"):
        shap.TreeExplainer(xgb_model.native).shap_values(frame)
    with pytest.raises(NotImplementedError, match="Categorical split"):
        shap.TreeExplainer(xgb_model.native, data=np.zeros((5, 6)),
                           feature_perturbation="interventional").shap_values(np.zeros((2, 6)))


def test_nan_inf_and_unseen_level_in_one_row_are_explained_and_flagged(
        model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0].iloc[:4].copy()
    df.loc[df.index[0], ["amount_vs_30d_avg", "minutes_since_login", "country"]] = \
        [np.inf, np.nan, "ZZ"]
    df.loc[df.index[1], "country"] = None
    df.loc[df.index[1], "amount_vs_30d_avg"] = np.nan
    df.loc[df.index[1], "minutes_since_login"] = np.nan
    df.loc[df.index[1], ["amount_usd", "is_new_device", "channel"]] = \
        df.loc[df.index[0], ["amount_usd", "is_new_device", "channel"]].to_numpy()
    expl = explain(model, df, row_ids=df["transaction_id"])
    assert np.isfinite(expl.values).all()
    assert expl.flagged.tolist() == [True, False, False, False]
    expl.check_additivity(model.margin(model.prepare(df)))
    # inf and an unseen level are explained as missing: row 0 equals its all-missing twin
    np.testing.assert_allclose(expl.values[0], expl.values[1], atol=1e-12)
    assert expl.row(0).row_ids.tolist() == [df["transaction_id"].iloc[0]]


def test_catboost_modes_agree_and_auto_follows_the_leaf_rule(
        cb_model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0].iloc[:40]
    direct = explain(cb_model, df, mode="direct")
    precalc = explain(cb_model, df, mode="precalc")
    assert np.abs(direct.values - precalc.values).max() <= 1e-9
    leaves = math.ceil(np.mean(cb_model.native.get_tree_leaf_counts()))  # <= 16 at depth 4
    assert 4 < leaves <= 16
    assert catboost_shap_mode(cb_model.native, 1) == "NoPreCalc"
    assert catboost_shap_mode(cb_model.native, leaves - 1) == "NoPreCalc"
    assert catboost_shap_mode(cb_model.native, leaves) == "UsePreCalc"
    assert catboost_shap_mode(cb_model.native, 50_000) == "UsePreCalc"


def test_single_case_path_agrees_with_the_batch_path(
        model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    # one row runs single-threaded (and CatBoost direct); 100 rows use every thread (precalc)
    df = holdout[0].iloc[:100]
    batch = explain(model, df)
    for i in (0, 37, 99):
        one = explain(model, df.iloc[[i]])
        np.testing.assert_allclose(one.values[0], batch.values[i], atol=1e-6)
        assert one.base_value == pytest.approx(batch.base_value, abs=1e-6)


def test_model_input_and_frame_give_the_same_explanation(
        xgb_model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0].iloc[:50]
    from_frame = explain(xgb_model, df)
    from_input = explain(xgb_model, xgb_model.prepare(df))
    np.testing.assert_array_equal(from_frame.values, from_input.values)


@pytest.mark.parametrize("kwargs, message", [
    ({"backend": "lime"}, "native, reference"),
    ({"mode": "precalc"}, "auto, direct"),
    ({"backend": "reference", "mode": "direct"}, "auto"),
])
def test_unknown_backend_or_mode_is_refused(xgb_model: LoadedModel, holdout: tuple,
                                            kwargs: dict, message: str) -> None:
    with pytest.raises(ExplainError, match=message):
        explain(xgb_model, holdout[0].iloc[:2], **kwargs)


def test_every_framework_has_native_and_reference_and_xgboost_has_the_fast_kernel() -> None:
    assert set(BACKENDS) == {(b, f) for b in ("native", "reference")
                             for f in ("xgboost", "catboost")} | {("fast", "xgboost")}


def test_misshapen_or_empty_input_is_refused(xgb_model: LoadedModel, holdout: tuple) -> None:
    prepared = xgb_model.prepare(holdout[0].iloc[:3])
    wrong = type(prepared)(prepared.frame[xgb_model.schema.names[::-1]], prepared.flagged)
    with pytest.raises(ExplainError, match="schema"):
        explain(xgb_model, wrong)
    with pytest.raises(ExplainError, match="no rows"):
        explain(xgb_model, holdout[0].iloc[:0])
    with pytest.raises(ExplainError, match="ndarray"):
        explain(xgb_model, np.zeros((2, 6)))  # type: ignore[arg-type]


def brute_force_shap(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Shapley values by enumerating feature subsets over XGBoost's own JSON trees."""
    doc = json.loads(booster.save_raw("json"))
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    n_features = x.shape[1]

    def expected(tree: dict, row: np.ndarray, known: frozenset, node: int = 0) -> float:
        left, right = tree["left_children"][node], tree["right_children"][node]
        if left == -1:
            return tree["base_weights"][node]
        feature = tree["split_indices"][node]
        if feature in known:
            value = row[feature]
            if np.isnan(value):
                go_left = bool(tree["default_left"][node])
            else:
                go_left = np.float32(value) < np.float32(tree["split_conditions"][node])
            return expected(tree, row, known, left if go_left else right)
        cover = tree["sum_hessian"]
        return (cover[left] * expected(tree, row, known, left)
                + cover[right] * expected(tree, row, known, right)) / cover[node]

    out = np.zeros_like(x, dtype=np.float64)
    everyone = range(n_features)
    for r, row in enumerate(x):
        worth = {frozenset(s): sum(expected(t, row, frozenset(s)) for t in trees)
                 for k in range(n_features + 1) for s in combinations(everyone, k)}
        for i in everyone:
            for s, v in worth.items():
                if i not in s:
                    weight = (math.factorial(len(s)) * math.factorial(n_features - len(s) - 1)
                              / math.factorial(n_features))
                    out[r, i] += weight * (worth[s | {i}] - v)
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n_features=st.integers(1, 4), depth=st.integers(1, 4), trees=st.integers(1, 8),
       nan_rate=st.sampled_from([0.0, 0.1, 0.4]), seed=st.integers(0, 2 ** 16))
def test_random_xgboost_models_are_exact_and_additive(
        train_xgb: Callable[..., LoadedModel], n_features: int, depth: int, trees: int,
        nan_rate: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    schema = FeatureSchema.from_dict({"target": "y", "features": [
        {"name": f"f{i}", "dtype": "float"} for i in range(n_features)]})
    raw = rng.normal(size=(160, n_features)).astype(np.float32).astype(np.float64)
    raw[rng.random(raw.shape) < nan_rate] = np.nan
    df = pd.DataFrame(raw, columns=schema.names)
    signal = np.nan_to_num(raw) @ rng.normal(size=n_features) + rng.normal(size=160)
    model = train_xgb(schema, df, (signal > 0).astype(int), trees=trees, depth=depth,
                          seed=seed)
    native = explain(model, df)
    reference = explain(model, df, backend="reference")
    assert np.abs(native.values - reference.values).max() <= EXACT
    assert np.abs(native.margin() - model.margin(model.prepare(df))).max() <= 1e-4
    oracle = brute_force_shap(model.native, raw[:12])
    assert np.abs(native.values[:12] - oracle).max() <= EXACT
