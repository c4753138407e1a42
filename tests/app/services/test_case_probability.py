"""The case read as changes in fraud probability, and reasons without double negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.services import case as cases
from app.views import charts
from explainers.explanation import Explanation
from explainers.model import sigmoid
from explainers.reason_codes import FeatureCatalog, reason_codes
from explainers.schema import FeatureSchema
from jobs.demo_world.vocabulary import DEMO_FEATURE_SCHEMA

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount_usd", "dtype": "float", "unit": "USD", "description": "Amount"},
    {"name": "new_device", "dtype": "bool", "description": "The device is new to this account"},
    {"name": "txn_count_1h", "dtype": "int", "unit": "count", "description": "Txns in 1 h"},
]})


def _case(new_device: bool = True) -> cases.CaseExplanation:
    names = ("amount_usd", "new_device", "txn_count_1h")
    data = pd.DataFrame({"amount_usd": [1234.5], "new_device": [new_device],
                         "txn_count_1h": [7.0]})
    expl = Explanation(np.array([[2.0, 0.9 if new_device else -0.4, -0.3]]), -4.0, names, data)
    return cases.CaseExplanation("m@1", "T1", expl, "store")


def test_probability_changes_add_up_to_the_case_minus_the_base() -> None:
    case = _case()
    moves = cases.probability_changes(case)
    p_case, p_base = sigmoid(np.array([case.margin]))[0], sigmoid(np.array([-4.0]))[0]
    assert sum(moves.values()) == pytest.approx(p_case - p_base)
    assert list(moves) == ["amount_usd", "new_device", "txn_count_1h"]  # waterfall order
    steps = cases.waterfall_steps(case, SCHEMA, top_n=1)
    middle = steps[steps["kind"].isin(["feature", "other"])]
    assert middle["probability_change"].sum() == pytest.approx(p_case - p_base)
    assert middle["probability_change"].iloc[0] == pytest.approx(moves["amount_usd"])


def test_probability_waterfall_is_valid_vega_lite_with_a_percent_axis() -> None:
    steps = cases.waterfall_steps(_case(), SCHEMA, top_n=2)
    spec = charts.waterfall_chart(steps, "probability").to_dict()
    bars = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "bar")
    assert bars["encoding"]["x"]["field"] == "p_start"
    assert "probability" in bars["encoding"]["x"]["title"]
    texts = [r["text"] for r in sorted(spec["data"]["values"], key=lambda r: r["order"])]
    assert texts[1].endswith(" pp") and texts[-1].endswith("%")


@pytest.mark.parametrize("value, expected, absent", [
    (True, "**The device is new to this account**", ": yes"),
    (False, "**Not the case that the device is new to this account**", ": no"),
])
def test_yes_no_reasons_read_as_one_statement(value: bool, expected: str, absent: str) -> None:
    case = _case(value)
    reason = next(r for r in [*cases.case_reasons(case, SCHEMA).towards_fraud,
                              *cases.case_reasons(case, SCHEMA).towards_legit]
                  if r.feature == "new_device")
    text = cases.reason_text(reason, SCHEMA, 0.123)
    assert text.startswith(expected) and absent not in text and "+12.3 pp" in text
    plain = reason_codes(case.explanation, FeatureCatalog.from_schema(SCHEMA), top_n=3,
                         direction="fraud" if value else "legit")
    sentence = next(r.text for r in plain if r.feature == "new_device")
    assert absent not in sentence and "never" not in sentence


def test_demo_schema_states_yes_no_features_positively() -> None:
    flags = [f["description"] for f in DEMO_FEATURE_SCHEMA["features"] if f["dtype"] == "bool"]
    assert flags and not any("never" in d.lower() for d in flags)
