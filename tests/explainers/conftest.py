"""Small seeded fraud-like data and models (XGBoost and CatBoost) shared by explainer tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from explainers.model import FRAMEWORKS, LoadedModel, catboost_frame
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({
    "target": "is_fraud",
    "features": [
        {"name": "amount_vs_30d_avg", "dtype": "float", "source": "batch", "unit": "x",
         "description": "Amount relative to the account's 30-day average"},
        {"name": "amount_usd", "dtype": "float", "source": "stream", "unit": "USD",
         "description": "Transaction amount"},
        {"name": "minutes_since_login", "dtype": "float", "source": "stream",
         "unit": "minutes", "description": "Time since the last login"},
        {"name": "is_new_device", "dtype": "bool", "source": "stream",
         "description": "First transaction from this device"},
        {"name": "country", "dtype": "category", "source": "static",
         "categories": ["US", "GB", "DE", "FR", "NG"], "description": "KYC country"},
        {"name": "channel", "dtype": "category", "source": "stream",
         "categories": ["web", "app", "api"], "description": "Channel"},
    ],
})

NUMERIC_SCHEMA = FeatureSchema.from_dict({
    "target": "is_fraud",
    "features": [{"name": f"x{i}", "dtype": "float"} for i in range(5)],
})


def make_transactions(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Transactions whose fraud label depends on amount ratio, device, country and channel."""
    rng = np.random.default_rng(seed)
    ratio = rng.lognormal(0.0, 0.8, n)
    amount = rng.lognormal(4.0, 1.2, n).round(2)
    minutes = rng.exponential(300.0, n)
    new_device = rng.random(n) < 0.2
    country = rng.choice(np.array(["US", "GB", "DE", "FR", "NG"], dtype=object), n,
                         p=[0.4, 0.2, 0.15, 0.15, 0.1])
    channel = rng.choice(np.array(["web", "app", "api"], dtype=object), n)
    logit = (1.2 * np.log(ratio) + 1.5 * new_device + 1.0 * (country == "NG")
             + 0.8 * (channel == "api") * new_device - 0.002 * minutes - 1.5)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(int)
    ratio[rng.random(n) < 0.1] = np.nan
    country[rng.random(n) < 0.08] = None
    df = pd.DataFrame({"transaction_id": np.arange(n) + 1000 * seed, "amount_vs_30d_avg": ratio,
                       "amount_usd": amount, "minutes_since_login": minutes,
                       "is_new_device": new_device, "country": country, "channel": channel})
    return df, y


def train_xgboost(schema: FeatureSchema, df: pd.DataFrame, y: np.ndarray, *, trees: int = 40,
                  depth: int = 4, seed: int = 0) -> LoadedModel:
    """A seeded XGBoost model, round-tripped through its artifact bytes like the registry does."""
    import xgboost as xgb

    x = schema.model_input(df)
    dtrain = xgb.DMatrix(x.frame, label=y, enable_categorical=True)
    params = {"objective": "binary:logistic", "max_depth": depth, "eta": 0.3, "seed": seed,
              "nthread": 1, "max_cat_to_onehot": 1}
    booster = xgb.train(params, dtrain, num_boost_round=trees)
    fw = FRAMEWORKS["xgboost"]
    return LoadedModel("fraud-xgb", "1", "xgboost", schema,
                       fw.load(fw.dump(booster, "model.ubj")))


def train_catboost(schema: FeatureSchema, df: pd.DataFrame, y: np.ndarray, *, trees: int = 40,
                   depth: int = 4, seed: int = 0) -> LoadedModel:
    """A seeded CatBoost model, round-tripped through its .cbm bytes like the registry does."""
    from catboost import CatBoostClassifier

    x = schema.model_input(df)
    model = CatBoostClassifier(iterations=trees, depth=depth, random_seed=seed, thread_count=1,
                               verbose=0, allow_writing_files=False)
    model.fit(catboost_frame(x.frame, schema), y, cat_features=schema.categorical)
    fw = FRAMEWORKS["catboost"]
    return LoadedModel("fraud-cb", "1", "catboost", schema,
                       fw.load(fw.dump(model, "model.cbm")))


@pytest.fixture(scope="session")
def schema() -> FeatureSchema:
    return SCHEMA


@pytest.fixture(scope="session")
def train_data() -> tuple[pd.DataFrame, np.ndarray]:
    return make_transactions(2000, seed=0)


@pytest.fixture(scope="session")
def holdout() -> tuple[pd.DataFrame, np.ndarray]:
    return make_transactions(600, seed=1)


@pytest.fixture(scope="session")
def xgb_model(train_data: tuple[pd.DataFrame, np.ndarray]) -> LoadedModel:
    return train_xgboost(SCHEMA, *train_data)


@pytest.fixture(scope="session")
def cb_model(train_data: tuple[pd.DataFrame, np.ndarray]) -> LoadedModel:
    return train_catboost(SCHEMA, *train_data)


@pytest.fixture(scope="session", params=["xgboost", "catboost"])
def model(request: pytest.FixtureRequest) -> LoadedModel:
    return request.getfixturevalue("xgb_model" if request.param == "xgboost" else "cb_model")


@pytest.fixture(scope="session")
def train_xgb() -> Callable[..., LoadedModel]:
    """The XGBoost trainer, for tests that build their own small models."""
    return train_xgboost


@pytest.fixture(scope="session")
def numeric_xgb_model() -> LoadedModel:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(rng.normal(size=(2000, 5)), columns=NUMERIC_SCHEMA.names)
    df.loc[rng.random(2000) < 0.1, "x0"] = np.nan
    y = ((df["x0"].fillna(0) + df["x1"] * df["x2"] + rng.normal(size=2000)) > 0.5).astype(int)
    return train_xgboost(NUMERIC_SCHEMA, df, y.to_numpy())
