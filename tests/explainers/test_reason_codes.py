"""Reason codes in plain words from the feature catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explainers.backends import explain
from explainers.explanation import ExplainError, Explanation
from explainers.model import LoadedModel
from explainers.reason_codes import FeatureCatalog, format_value, reason_codes
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount_vs_30d_avg", "dtype": "float", "unit": "x",
     "description": "Amount relative to the account's 30-day average"},
    {"name": "amount_usd", "dtype": "float", "unit": "USD", "description": "Transaction amount"},
    {"name": "minutes_since_login", "dtype": "float", "unit": "minutes",
     "description": "Time since the last login"},
    {"name": "is_new_device", "dtype": "bool", "description": "First transaction from this device"},
    {"name": "country", "dtype": "category", "categories": ["US", "NG"],
     "description": "KYC country"},
    {"name": "txn_count_1h", "dtype": "int", "unit": "count",
     "description": "Transactions in the last hour"},
]})


def one_row(shap: list[float], values: dict) -> Explanation:
    frame = SCHEMA.model_input(pd.DataFrame({k: [v] for k, v in values.items()})).frame
    return Explanation(np.array([shap]), -3.0, tuple(SCHEMA.names), frame)


ROW = {"amount_vs_30d_avg": 8.3, "amount_usd": 1234.0, "minutes_since_login": 12.0,
       "is_new_device": True, "country": "NG", "txn_count_1h": 5}


def test_fraud_reasons_are_positive_only_largest_first_in_plain_words() -> None:
    codes = reason_codes(one_row([1.21, 0.4, -0.7, 0.9, 0.05, 0.0], ROW),
                         FeatureCatalog.from_schema(SCHEMA), top_n=3)
    assert [c.text for c in codes] == [
        "Amount relative to the account's 30-day average: 8.3x (+1.21 log-odds)",
        "First transaction from this device (+0.90 log-odds)",  # a yes reads as the statement
        "Transaction amount: $1,234.00 (+0.40 log-odds)",
    ]
    assert [c.feature for c in codes] == ["amount_vs_30d_avg", "is_new_device", "amount_usd"]
    assert codes[0].value == 8.3 and codes[1].value is True and codes[0].shap == 1.21


def test_legit_reasons_are_the_negative_ones() -> None:
    codes = reason_codes(one_row([1.21, 0.4, -0.7, 0.9, -0.05, 0.0], ROW),
                         FeatureCatalog.from_schema(SCHEMA), direction="legit")
    assert [c.text for c in codes] == ["Time since the last login: 12 minutes (-0.70 log-odds)",
                                       "KYC country: NG (-0.05 log-odds)"]


def test_missing_unseen_counts_and_uncatalogued_features_read_plainly() -> None:
    row = dict(ROW, amount_vs_30d_avg=float("inf"), country="ZZ", is_new_device=False)
    codes = reason_codes(one_row([0.6, 0.1, 0.2, 0.3, 0.5, 0.4], row),
                         FeatureCatalog.from_schema(SCHEMA), top_n=10)
    texts = {c.feature: c.text for c in codes}
    assert texts["amount_vs_30d_avg"] == (
        "Amount relative to the account's 30-day average: missing (+0.60 log-odds)")
    assert texts["country"] == "KYC country: missing (+0.50 log-odds)"
    assert texts["txn_count_1h"] == "Transactions in the last hour: 5 (+0.40 log-odds)"
    assert texts["is_new_device"] == (  # a no reads as its negation, never "…: no"
        "Not the case that first transaction from this device (+0.30 log-odds)")
    assert {c.feature: c.value for c in codes}["country"] is None
    empty = FeatureCatalog(())
    bare = reason_codes(one_row([0.6, 0.1, 0.2, 0.3, 0.5, 0.4], ROW), empty, top_n=2)
    assert [c.text for c in bare] == ["amount_vs_30d_avg = 8.3 (+0.60 log-odds)",
                                      "country = NG (+0.50 log-odds)"]


@pytest.mark.parametrize("value, unit, dtype, text", [
    (1234.0, "USD", "float", "$1,234.00"),
    (-5.5, "USD", "float", "-$5.50"),
    (99.0, "EUR", "float", "€99.00"),
    (10.0, "CHF", "float", "10.00 CHF"),
    (1.0, "minutes", "float", "1 minute"),
    (3.0, "days", "int", "3 days"),
    (0.25, "%", "float", "0.25%"),
    (1500000.0, None, "float", "1,500,000"),
    (0.0042, None, "float", "0.0042"),
    (0.0, None, "bool", "no"),
    (None, "USD", "float", "missing"),
    ("NG", None, "category", "NG"),
])
def test_values_are_formatted_by_unit_and_type(value: object, unit: str | None, dtype: str,
                                               text: str) -> None:
    assert format_value(value, unit, dtype) == text  # type: ignore[arg-type]


def test_reason_codes_for_a_real_model_row(cb_model: LoadedModel, holdout: tuple) -> None:
    df = holdout[0]
    expl = explain(cb_model, df)
    i = int(np.argmax(expl.margin()))
    codes = reason_codes(expl.row(i), FeatureCatalog.from_schema(cb_model.schema))
    assert codes and all(c.shap > 0 for c in codes)
    assert [c.shap for c in codes] == sorted((c.shap for c in codes), reverse=True)
    assert len(codes) == min(5, int((expl.values[i] > 0).sum()))


def test_reason_codes_refuse_many_rows_and_unknown_direction() -> None:
    expl = one_row([0.1] * 6, ROW)
    catalog = FeatureCatalog.from_schema(SCHEMA)
    with pytest.raises(ExplainError, match="one row"):
        reason_codes(expl[[0, 0]], catalog)
    with pytest.raises(ExplainError, match="fraud, legit"):
        reason_codes(expl, catalog, direction="up")
