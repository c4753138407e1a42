"""A schema whose category levels differ from the model's (order, or a level the model never
saw) still scores and explains exactly, in the model's own codes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from explainers.backends import explain
from explainers.model import LoadedModel
from explainers.schema import FeatureSchema


@pytest.fixture(scope="module")
def model_trained_on_b_then_a() -> LoadedModel:
    rng = np.random.default_rng(5)
    n = 2_000
    frame = pd.DataFrame({"c": pd.Categorical(rng.choice(["b", "a"], n), categories=["b", "a"]),
                          "x": rng.normal(size=n)})
    y = ((frame["c"] == "b") & (frame["x"] > 0)) | (rng.random(n) < 0.05)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "seed": 1},
                        xgb.DMatrix(frame, label=y, enable_categorical=True), 20)
    loaded = xgb.Booster()
    loaded.load_model(bytearray(booster.save_raw("ubj")))
    schema = FeatureSchema.from_dict({"target": "is_fraud", "features": [
        {"name": "c", "dtype": "category", "categories": ["a", "b", "c"], "source": "static"},
        {"name": "x", "dtype": "float", "source": "batch"}]})
    return LoadedModel("ext", "1", "xgboost", schema, loaded)


def test_a_level_only_the_schema_knows_is_missing_and_flagged(model_trained_on_b_then_a):
    model = model_trained_on_b_then_a
    rows = pd.DataFrame({"c": ["a", "b", "c", None], "x": [1.0, 1.0, 1.0, 1.0]})
    x = model.prepare(rows)
    assert list(x.frame["c"].cat.categories) == ["b", "a"]  # the model's own order
    assert x.flagged.tolist() == [False, False, True, False]
    p = model.predict_proba(x)
    assert p[1] > 0.5 > p[0]
    missing = model.predict_proba(model.prepare(rows.assign(c=[None] * 4)))
    assert p[2] == pytest.approx(missing[2], abs=1e-7)  # "c" scores as a missing value


@pytest.mark.parametrize("backend", ["native", "auto"])
def test_explanations_add_up_in_the_models_codes(model_trained_on_b_then_a, backend):
    model = model_trained_on_b_then_a
    rows = pd.DataFrame({"c": ["a", "b", "c", "b"], "x": [1.0, -1.0, 0.5, 2.0]})
    expl = explain(model, rows, backend=backend)
    margin = model.margin(model.prepare(rows))
    np.testing.assert_allclose(expl.base_value + expl.values.sum(axis=1), margin, atol=1e-5)
    native = explain(model, rows, backend="native")
    np.testing.assert_allclose(expl.values, native.values, atol=1e-5)
