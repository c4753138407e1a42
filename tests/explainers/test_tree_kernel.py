"""The fast Tree SHAP kernel: exact against a brute-force oracle, XGBoost and shap."""

from __future__ import annotations

import json
import math
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import pytest
import shap
import xgboost as xgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explainers.model import LoadedModel
from explainers.tree_kernel import prepare_kernel

ORACLE = 1e-9  # float64 kernel against the float64 oracle
XGB = 1e-5  # XGBoost computes in float32


def train(seed: int, *, numeric: int = 3, categorical: int = 0, depth: int = 3, trees: int = 5,
          rows: int = 200, nan_rate: float = 0.0, onehot: bool = False,
          params: dict[str, Any] | None = None) -> tuple[xgb.Booster, pd.DataFrame]:
    """A seeded XGBoost model on random numeric and pandas-categorical columns."""
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    signal = rng.normal(size=rows)
    for i in range(numeric):
        values = rng.normal(size=rows).astype(np.float32).astype(np.float64)
        signal += rng.normal() * values + 0.5 * (values > 0.3) * signal
        values[rng.random(rows) < nan_rate] = np.nan
        cols[f"x{i}"] = values
    for i in range(categorical):
        levels = [f"c{i}_{j}" for j in range(int(rng.integers(2, 7)))]
        codes = rng.integers(0, len(levels), rows)
        signal += rng.normal(size=len(levels))[codes]
        codes[rng.random(rows) < nan_rate] = -1
        cols[f"cat{i}"] = pd.Categorical.from_codes(codes, categories=levels)
    frame = pd.DataFrame(cols)
    y = (signal > np.median(signal)).astype(int)
    base = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed,
            "nthread": 1, "max_cat_to_onehot": 64 if onehot else 1, "min_child_weight": 0.1}
    booster = xgb.train({**base, **(params or {})},
                        xgb.DMatrix(frame, label=y, enable_categorical=True), trees)
    return booster, frame


def xgb_contribs(booster: xgb.Booster, frame: pd.DataFrame, **kwargs: bool) -> np.ndarray:
    dmatrix = xgb.DMatrix(frame, enable_categorical=True)
    return np.asarray(booster.predict(dmatrix, **kwargs), dtype=np.float64)


def margin(booster: xgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    dmatrix = xgb.DMatrix(frame, enable_categorical=True)
    return np.asarray(booster.predict(dmatrix, output_margin=True), dtype=np.float64)


# ---- brute-force oracle over XGBoost's own JSON trees --------------------------------------

def codes(frame: pd.DataFrame) -> np.ndarray:
    """Rows as XGBoost reads them: category codes, missing as NaN."""
    out = np.empty(frame.shape)
    for j, (_, col) in enumerate(frame.items()):
        if isinstance(col.dtype, pd.CategoricalDtype):
            c = col.cat.codes.to_numpy()
            out[:, j] = np.where(c < 0, np.nan, c)
        else:
            out[:, j] = col.to_numpy(dtype=np.float64)
    return out


def goes_left(tree: dict[str, Any], node: int, value: float) -> bool:
    if np.isnan(value):
        return bool(tree["default_left"][node])
    if tree["split_type"][node] == 1:
        k = tree["categories_nodes"].index(node)
        start = tree["categories_segments"][k]
        chosen = tree["categories"][start:start + tree["categories_sizes"][k]]
        return int(value) not in chosen  # categories in the set go right
    return bool(np.float32(value) < np.float32(tree["split_conditions"][node]))


def expected(tree: dict[str, Any], row: np.ndarray, known: frozenset[int], node: int = 0) -> float:
    """E[tree | features in `known` fixed to row], unknown splits weighted by cover."""
    left, right = tree["left_children"][node], tree["right_children"][node]
    if left == -1:
        return float(np.float32(tree["split_conditions"][node]))
    feature = tree["split_indices"][node]
    if feature in known:
        return expected(tree, row, known, left if goes_left(tree, node, row[feature]) else right)
    cover = [float(np.float32(c)) for c in tree["sum_hessian"]]
    return (cover[left] * expected(tree, row, known, left)
            + cover[right] * expected(tree, row, known, right)) / cover[node]


def worth(booster: xgb.Booster, row: np.ndarray) -> dict[frozenset[int], float]:
    trees = json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]
    everyone = range(len(row))
    return {frozenset(s): sum(expected(t, row, frozenset(s)) for t in trees)
            for k in range(len(row) + 1) for s in combinations(everyone, k)}


def oracle_shap(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    m = x.shape[1]
    out = np.zeros_like(x)
    for r, row in enumerate(x):
        v = worth(booster, row)
        for s, value in v.items():
            if len(s) == m:
                continue
            weight = math.factorial(len(s)) * math.factorial(m - len(s) - 1) / math.factorial(m)
            for i in set(range(m)) - s:
                out[r, i] += weight * (v[s | {i}] - value)
    return out


def oracle_interactions(booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
    """Shapley interaction index / 2 off the diagonal, phi_i minus its row on it (shap's)."""
    m = x.shape[1]
    out = np.zeros((len(x), m, m))
    phi = oracle_shap(booster, x)
    for r, row in enumerate(x):
        v = worth(booster, row)
        for i, j in combinations(range(m), 2):
            total = 0.0
            for s, value in v.items():
                if i in s or j in s:
                    continue
                weight = (math.factorial(len(s)) * math.factorial(m - len(s) - 2)
                          / math.factorial(m - 1))
                total += weight * (v[s | {i, j}] - v[s | {i}] - v[s | {j}] + value)
            out[r, i, j] = out[r, j, i] = total / 2.0
        for i in range(m):
            out[r, i, i] = phi[r, i] - out[r, i].sum()
    return out


# ---- exactness ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"numeric": 4, "depth": 4, "trees": 6},
    {"numeric": 3, "depth": 5, "trees": 4, "nan_rate": 0.3},
    {"numeric": 2, "categorical": 2, "depth": 4, "trees": 5, "nan_rate": 0.2},
    {"numeric": 1, "categorical": 2, "depth": 3, "trees": 4, "onehot": True},
    {"numeric": 1, "depth": 6, "trees": 3},  # one feature: every split repeats it
])
def test_kernel_equals_the_brute_force_oracle(kwargs: dict[str, Any]) -> None:
    booster, frame = train(11, **kwargs)
    kernel = prepare_kernel(booster)
    values, bias = kernel.contributions(frame.iloc[:10])
    x = codes(frame.iloc[:10])
    assert np.abs(values - oracle_shap(booster, x)).max() <= ORACLE
    empty = worth(booster, x[0])[frozenset()]
    assert bias[0] == pytest.approx(kernel.forest.base_margin + empty, abs=ORACLE)
    reference = xgb_contribs(booster, frame.iloc[:10], pred_contribs=True)
    assert np.abs(bias - reference[:, -1]).max() <= XGB


def test_interactions_equal_the_oracle_and_xgboost() -> None:
    booster, frame = train(5, numeric=3, categorical=1, depth=4, trees=6, nan_rate=0.2)
    kernel = prepare_kernel(booster)
    phi = kernel.interactions(frame.iloc[:8])
    m = frame.shape[1]
    assert np.abs(phi[:, :m, :m] - oracle_interactions(booster, codes(frame.iloc[:8]))).max() \
        <= ORACLE
    reference = xgb_contribs(booster, frame, pred_interactions=True)
    assert np.abs(kernel.interactions(frame) - reference).max() <= XGB
    values, _ = kernel.contributions(frame)
    np.testing.assert_allclose(kernel.interactions(frame)[:, :m, :].sum(axis=2), values,
                               atol=1e-12)


def test_fixture_model_matches_pred_contribs_interactions_and_margin(
        xgb_model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    frame = xgb_model.prepare(holdout[0]).frame
    assert frame["country"].isna().any() and frame["amount_vs_30d_avg"].isna().any()
    kernel = prepare_kernel(xgb_model.native)
    values, bias = kernel.contributions(frame)
    reference = xgb_contribs(xgb_model.native, frame, pred_contribs=True)
    assert np.abs(values - reference[:, :-1]).max() <= XGB
    assert np.abs(bias - reference[:, -1]).max() <= XGB
    assert np.abs(bias + values.sum(axis=1) - margin(xgb_model.native, frame)).max() <= XGB
    interactions = kernel.interactions(frame.iloc[:100])
    expected_phi = xgb_contribs(xgb_model.native, frame.iloc[:100], pred_interactions=True)
    assert np.abs(interactions - expected_phi).max() <= XGB


def test_numeric_model_matches_shaps_own_float64_algorithm(
        numeric_xgb_model: LoadedModel) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 5))
    x[rng.random(200) < 0.2, 0] = np.nan
    explainer = shap.TreeExplainer(numeric_xgb_model.native)
    explainer.model.model_type = "internal"  # shap's C++ Tree SHAP instead of pred_contribs
    expected_values = explainer.shap_values(x, check_additivity=False)
    values, bias = prepare_kernel(numeric_xgb_model.native).contributions(x)
    assert np.abs(values - expected_values).max() <= 1e-6
    # (shap's own expected_value misreads XGBoost 3's base_score; pred_contribs is the check)
    reference = xgb_contribs(numeric_xgb_model.native,
                             pd.DataFrame(x, columns=numeric_xgb_model.schema.names),
                             pred_contribs=True)
    assert np.abs(bias - reference[:, -1]).max() <= XGB


def test_lone_rows_blocks_and_threads_agree_bit_for_bit() -> None:
    booster, frame = train(2, numeric=4, categorical=1, depth=5, trees=20, rows=700,
                           nan_rate=0.1)
    kernel = prepare_kernel(booster)
    batch, _ = kernel.contributions(frame, threads=-1)
    single, _ = kernel.contributions(frame, threads=1)
    np.testing.assert_array_equal(batch, single)
    for i in (0, 299, 699):
        one, _ = kernel.contributions(frame.iloc[[i]], threads=1)
        np.testing.assert_allclose(one[0], batch[i], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(kernel.interactions(frame.iloc[:40], threads=1),
                                  kernel.interactions(frame.iloc[:40], threads=-1))


def test_array_input_and_reordered_category_levels_give_xgboosts_answer() -> None:
    booster, frame = train(8, numeric=2, categorical=2, depth=4, trees=8, nan_rate=0.1)
    kernel = prepare_kernel(booster)
    values, _ = kernel.contributions(frame)
    array_values, _ = kernel.contributions(codes(frame))
    np.testing.assert_array_equal(values, array_values)
    # XGBoost >= 3 re-codes categories by level name; so must the kernel
    shuffled = frame.assign(cat0=frame["cat0"].cat.reorder_categories(
        frame["cat0"].cat.categories[::-1]))
    reordered, _ = kernel.contributions(shuffled)
    np.testing.assert_allclose(reordered, values, atol=1e-12)
    reference = xgb_contribs(booster, shuffled, pred_contribs=True)
    assert np.abs(reordered - reference[:, :-1]).max() <= XGB


@pytest.mark.parametrize("params", [
    {"objective": "binary:logitraw"},
    {"objective": "reg:logistic"},
    {"objective": "reg:squarederror"},
    {"base_score": 0.2},
    {"booster": "dart", "rate_drop": 0.3, "skip_drop": 0.0},
    {"num_parallel_tree": 3, "subsample": 0.7, "colsample_bynode": 0.7},
])
def test_other_single_output_objectives_and_boosters(params: dict[str, Any]) -> None:
    booster, frame = train(3, numeric=3, categorical=1, depth=4, trees=8, nan_rate=0.1,
                           params=params)
    values, bias = prepare_kernel(booster).contributions(frame)
    reference = xgb_contribs(booster, frame, pred_contribs=True)
    assert np.abs(values - reference[:, :-1]).max() <= XGB
    assert np.abs(bias - reference[:, -1]).max() <= XGB
    assert np.abs(bias + values.sum(axis=1) - margin(booster, frame)).max() <= XGB


def test_depth_ten_model() -> None:
    booster, frame = train(9, numeric=6, categorical=1, depth=10, trees=4, rows=3000,
                           nan_rate=0.05, params={"min_child_weight": 0.0, "eta": 0.5})
    kernel = prepare_kernel(booster)
    assert kernel.forest.leaf_d.max() >= 7
    values, bias = kernel.contributions(frame)
    reference = xgb_contribs(booster, frame, pred_contribs=True)
    assert np.abs(values - reference[:, :-1]).max() <= XGB
    assert np.abs(bias + values.sum(axis=1) - margin(booster, frame)).max() <= XGB


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(numeric=st.integers(1, 4), categorical=st.integers(0, 2), depth=st.integers(1, 10),
       trees=st.one_of(st.integers(1, 12), st.sampled_from([100, 500])),
       nan_rate=st.sampled_from([0.0, 0.1, 0.5]), onehot=st.booleans(),
       seed=st.integers(0, 2**16))
def test_random_models_match_xgboost_and_add_up(numeric: int, categorical: int, depth: int,
                                                trees: int, nan_rate: float, onehot: bool,
                                                seed: int) -> None:
    booster, frame = train(seed, numeric=numeric, categorical=categorical, depth=depth,
                           trees=trees, rows=150, nan_rate=nan_rate, onehot=onehot)
    kernel = prepare_kernel(booster)
    values, bias = kernel.contributions(frame)
    reference = xgb_contribs(booster, frame, pred_contribs=True)
    # float32 error in XGBoost's own sums grows with the number of trees
    tolerance = XGB * max(1.0, trees / 50)
    assert np.abs(values - reference[:, :-1]).max() <= tolerance
    assert np.abs(bias - reference[:, -1]).max() <= tolerance
    assert np.abs(bias + values.sum(axis=1) - margin(booster, frame)).max() <= tolerance
    if trees <= 12 and numeric + categorical <= 4:
        rows = frame.iloc[:3]
        assert np.abs(values[:3] - oracle_shap(booster, codes(rows))).max() <= ORACLE
