"""The fast kernel behind explain() and interaction_values(): chosen by "auto", refused models
fall back to native with a note, tables cached per model."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from explainers import backends, interactions
from explainers.backends import backend_note, explain, resolve_backend
from explainers.explanation import ExplainError
from explainers.interactions import interaction_values
from explainers.model import FRAMEWORKS, LoadedModel
from explainers.schema import FeatureSchema
from explainers.tree_kernel import KernelCache, KernelUnsupported, prepare_kernel

SCHEMA = FeatureSchema.from_dict({"target": "y", "features": [
    {"name": f"x{i}", "dtype": "float"} for i in range(4)]})


def numeric(seed: int = 0, rows: int = 300) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(rows, 4)), columns=SCHEMA.names)
    df.loc[rng.random(rows) < 0.1, "x0"] = np.nan
    return df, (df["x1"] + df["x2"] * df["x3"] > 0).to_numpy().astype(int)


def booster(params: dict[str, Any], trees: int = 5, label: np.ndarray | None = None) -> xgb.Booster:
    df, y = numeric()
    return xgb.train({"max_depth": 3, "nthread": 1, **params},
                     xgb.DMatrix(df, label=y if label is None else label), trees)


def loaded(native: xgb.Booster) -> LoadedModel:
    fw = FRAMEWORKS["xgboost"]
    return LoadedModel("m", "1", "xgboost", SCHEMA, fw.load(fw.dump(native, "model.ubj")))


@pytest.mark.parametrize("params, label, reason", [
    ({"objective": "multi:softprob", "num_class": 3}, np.arange(300) % 3, "multi-class"),
    ({"objective": "binary:logistic", "booster": "gblinear"}, None, "gblinear"),
    ({"objective": "count:poisson"}, None, "objective count:poisson"),
    ({"objective": "reg:squarederror", "multi_strategy": "multi_output_tree",
      "tree_method": "hist"}, np.stack([np.arange(300), -np.arange(300)], axis=1),
     "multi-class or multi-output"),
])
def test_models_the_kernel_cannot_explain_exactly_are_refused(
        params: dict[str, Any], label: np.ndarray | None, reason: str) -> None:
    with pytest.raises(KernelUnsupported, match=reason):
        prepare_kernel(booster(params, label=label))


def test_tables_over_the_budget_are_refused(xgb_model: LoadedModel) -> None:
    with pytest.raises(KernelUnsupported, match="budget") as raised:
        prepare_kernel(xgb_model.native, budget_bytes=1024)
    assert "MB" in raised.value.reason
    kernel = prepare_kernel(xgb_model.native, budget_bytes=int(1.01 * 2**20))
    assert kernel.nbytes > 0
    with pytest.raises(KernelUnsupported, match="interaction tables"):
        prepare_kernel(xgb_model.native, budget_bytes=kernel.tables.nbytes + 8).pair_tables()


def test_levels_unseen_in_training_are_refused(xgb_model: LoadedModel, holdout: tuple) -> None:
    frame = xgb_model.prepare(holdout[0].iloc[:5]).frame
    wider = frame.assign(country=frame["country"].cat.add_categories(["XX"]))
    with pytest.raises(KernelUnsupported, match="unseen in training"):
        prepare_kernel(xgb_model.native).contributions(wider)


def test_auto_uses_the_kernel_and_agrees_with_native(
        xgb_model: LoadedModel, holdout: tuple[pd.DataFrame, np.ndarray]) -> None:
    df = holdout[0]
    assert resolve_backend(xgb_model, "auto") == "fast" and backend_note(xgb_model) is None
    auto, native = explain(xgb_model, df), explain(xgb_model, df, backend="native")
    fast = explain(xgb_model, df, backend="fast", mode="direct")
    np.testing.assert_array_equal(auto.values, fast.values)
    assert np.abs(auto.values - native.values).max() <= 1e-5
    assert auto.base_value == pytest.approx(native.base_value, abs=1e-5)
    for i in (0, 5):  # one row runs alone on one thread
        one = explain(xgb_model, df.iloc[[i]])
        np.testing.assert_allclose(one.values[0], auto.values[i], atol=1e-12)


def test_auto_falls_back_to_native_with_a_note() -> None:
    model = loaded(booster({"objective": "count:poisson"}))
    df, _ = numeric(1, rows=40)
    assert "count:poisson" in (backend_note(model) or "")
    assert resolve_backend(model, "auto") == "native"
    auto = explain(model, df)
    np.testing.assert_array_equal(auto.values, explain(model, df, backend="native").values)
    with pytest.raises(ExplainError, match="fast kernel cannot explain m@1: objective"):
        explain(model, df, backend="fast")


def test_over_budget_model_falls_back_in_explain_and_interactions(
        monkeypatch: pytest.MonkeyPatch, xgb_model: LoadedModel, holdout: tuple) -> None:
    df = holdout[0].iloc[:150]
    fast = interaction_values(xgb_model, df, top_k=3, sample=100, seed=1)
    monkeypatch.setattr(backends, "KERNELS", KernelCache(budget_bytes=1024))
    monkeypatch.setattr(interactions, "KERNELS", backends.KERNELS)
    assert "budget" in (backend_note(xgb_model) or "")
    expl = explain(xgb_model, df)
    native = explain(xgb_model, df, backend="native")
    np.testing.assert_array_equal(expl.values, native.values)
    slow = interaction_values(xgb_model, df, top_k=3, sample=100, seed=1)
    assert list(slow.index) == list(fast.index)
    np.testing.assert_allclose(slow.to_numpy(), fast.to_numpy(), atol=1e-6)


def test_catboost_keeps_native(cb_model: LoadedModel, holdout: tuple) -> None:
    assert resolve_backend(cb_model, "auto") == "native" and backend_note(cb_model) is None
    with pytest.raises(ExplainError, match="No 'fast' SHAP backend for catboost"):
        explain(cb_model, holdout[0].iloc[:2], backend="fast")


def test_cache_builds_each_model_once_and_checks_identity(
        monkeypatch: pytest.MonkeyPatch, numeric_xgb_model: LoadedModel) -> None:
    import explainers.tree_kernel as tk

    built: list[Any] = []
    real: Callable[..., Any] = tk.prepare_kernel

    def counting(native: Any, budget_bytes: int) -> Any:
        built.append(native)
        return real(native, budget_bytes)

    monkeypatch.setattr(tk, "prepare_kernel", counting)
    cache = KernelCache(size=1)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(
        cache.kernel(numeric_xgb_model.native))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1 and all(r is results[0] for r in results)
    twin = loaded(booster({"objective": "binary:logistic"})).native
    assert cache.kernel(twin) is not results[0]
    assert cache.kernel(numeric_xgb_model.native) is not results[0]  # size 1: evicted
    assert len(built) == 3


def test_concurrent_explanations_agree(xgb_model: LoadedModel, holdout: tuple) -> None:
    df = holdout[0].iloc[:300]
    expected = explain(xgb_model, df).values
    out: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: out.append(explain(xgb_model, df).values))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(out) == 3 and all(np.array_equal(o, expected) for o in out)
