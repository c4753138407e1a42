"""Charts (app/charts.py): valid Vega-Lite, axes in the analyst's units, seeded data shaping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.services import case as cases
from app.views import charts
from explainers.explanation import Explanation
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount_usd", "dtype": "float", "unit": "USD", "description": "Amount"},
    {"name": "txn_count_1h", "dtype": "int", "unit": "count", "description": "Txns in 1 h"},
    {"name": "country", "dtype": "category", "categories": ["US", "GB", "DE"],
     "description": "KYC country"},
]})


def _steps() -> pd.DataFrame:
    names = ("amount_usd", "txn_count_1h", "country")
    data = pd.DataFrame({"amount_usd": [1234.5], "txn_count_1h": [7.0],
                         "country": pd.Categorical(["GB"], categories=["US", "GB", "DE"])})
    expl = Explanation(np.array([[2.0, 0.7, -0.3]]), -4.0, names, data)
    return cases.waterfall_steps(cases.CaseExplanation("m@1", "T1", expl, "store"), SCHEMA, 2)


def _layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def _rows(spec: dict) -> list[dict]:
    return spec["data"]["values"]


def test_waterfall_is_valid_vega_lite_in_log_odds_with_the_probability_at_the_end():
    spec = charts.waterfall_chart(_steps()).to_dict()  # validates against the schema
    bars = next(layer for layer in _layers(spec) if layer["mark"]["type"] == "bar")
    assert "log-odds" in bars["encoding"]["x"]["title"]
    assert bars["encoding"]["y"]["sort"] == {"field": "order", "order": "ascending"}
    rows = sorted(_rows(spec), key=lambda r: r["order"])
    assert [r["label"] for r in rows] == [
        "Base value (average case)", "amount_usd = $1,234.50", "txn_count_1h = 7",
        "1 other feature", "Model score"]
    assert rows[-1]["text"] == "-1.60 → 16.8%"  # margin -4 + 2 + 0.7 - 0.3 = -1.6
    assert charts.waterfall_chart(_steps()).to_dict(validate=False) == spec
    template = charts.waterfall_chart(_steps()).template_dict()
    assert "data" not in template and "datasets" not in template  # rows are the only data


def test_importance_bars_put_the_largest_first():
    frame = pd.DataFrame({"feature": ["a", "b", "c"], "mean_abs_shap": [0.1, 0.5, 0.3]})
    spec = charts.importance_chart(frame, "mean_abs_shap", "Mean |SHAP| (log-odds)").to_dict()
    assert [r["feature"] for r in sorted(_rows(spec), key=lambda r: r["order"])] == [
        "b", "c", "a"]
    assert spec["encoding"]["x"]["title"] == "Mean |SHAP| (log-odds)"


def test_beeswarm_data_normalises_numbers_and_leaves_categories_uncoloured():
    ids = [f"T{i}" for i in range(6)]
    shap = pd.DataFrame({"transaction_id": ids, "amount_usd": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                         "country": [0.0, 0.1, -0.1, 0.2, 0.0, 0.3]})
    values = pd.DataFrame({"transaction_id": ids[::-1],
                           "amount_usd": [60.0, 50.0, 40.0, np.nan, 20.0, 10.0],
                           "country": ["US", "GB", None, "DE", "US", "GB"]})
    long = charts.beeswarm_data(shap, values, SCHEMA, ["amount_usd", "country"], seed=3)
    amount = long[long["feature"] == "amount_usd"].set_index("shap")
    assert amount.loc[0.1, "value_norm"] == pytest.approx(0.0)  # T0 has the lowest amount
    assert amount.loc[0.6, "value_norm"] == pytest.approx(1.0)  # T5 the highest
    assert np.isnan(amount.loc[0.3, "value_norm"]) and amount.loc[0.3, "value"] == "missing"
    country = long[long["feature"] == "country"]
    assert country["value_norm"].isna().all()
    assert set(country["value"]) == {"US", "GB", "DE", "missing"}
    again = charts.beeswarm_data(shap, values, SCHEMA, ["amount_usd", "country"], seed=3)
    pd.testing.assert_frame_equal(long, again)
    assert long["jitter"].abs().max() <= 0.42
    charts.beeswarm_chart(long).to_dict()


def test_dependence_and_timeline_and_coverage_charts_validate():
    dep = pd.DataFrame({"value": ["US", "GB", "US"], "shap": [0.1, -0.2, 0.3],
                        "color": [1.0, 2.0, 3.0]})
    charts.dependence_chart(dep, "country", "amount_usd", True, False).to_dict()
    tl = pd.DataFrame({"transaction_id": ["T1", "T2"],
                       "event_time": pd.to_datetime(["2026-10-01", "2026-10-02"]),
                       "amount_usd": [12.5, 0.0], "score": [0.1, np.nan],
                       "outcome": ["legit", "unlabelled"], "is_case": [False, True]})
    spec = charts.timeline_chart(tl).to_dict()
    y = spec["layer"][0]["encoding"]["y"]
    assert y["title"] == "Amount (USD)" and y["axis"]["format"] == "$,.0f"
    assert _rows(spec)[0]["event_time"].endswith("+00:00")  # UTC instants, shown as UTC
    weekly = pd.DataFrame({"week": pd.to_datetime(["2026-10-05"]), "transactions": [10],
                           "labelled": [4], "share": [0.4]})
    charts.label_coverage_chart(weekly).to_dict()
