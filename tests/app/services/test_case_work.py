"""Case statuses for the queue and analyst outcomes kept apart from chargeback labels."""

from __future__ import annotations

import pandas as pd

from app.services import case_work


def test_status_column_and_filter() -> None:
    rows = pd.DataFrame({"transaction_id": ["T1", "T2", "T3"], "score": [0.9, 0.8, 0.7]})
    shown = case_work.with_status(rows, {"T1": "decided", "T3": "assigned"})
    assert list(shown.columns) == ["transaction_id", "status", "score"]
    assert list(shown["status"]) == ["decided", "unworked", "assigned"]
    assert list(case_work.filter_status(shown, ["unworked", "assigned"])["transaction_id"]) == [
        "T2", "T3"]
    assert len(case_work.filter_status(shown, [])) == 3


def test_analyst_outcomes_are_a_separate_column_from_chargebacks() -> None:
    latest = pd.DataFrame({"transaction_id": ["T1", "T2", "T3"],
                           "outcome": ["confirmed_fraud", "needs_info", "legitimate"],
                           "typology": ["card testing", "", ""]})
    labels = case_work.analyst_outcomes(latest)
    assert labels == {"T1": "fraud · card testing", "T3": "legit"}
    similar = pd.DataFrame({"transaction_id": ["T1", "T2", "T3"],
                            "outcome": ["legit", "fraud", "unlabelled"], "distance": [1, 2, 3]})
    out = case_work.with_analyst_outcome(similar, labels)
    assert list(out.columns) == ["transaction_id", "outcome", "analyst_outcome", "distance"]
    assert list(out["outcome"]) == ["legit", "fraud", "unlabelled"]  # chargebacks untouched
    assert list(out["analyst_outcome"]) == ["fraud · card testing", "—", "legit"]


def test_findings_count_analyst_outcomes_apart() -> None:
    members = pd.DataFrame({"finding_id": ["F1", "F1", "F1", "F2"],
                            "transaction_id": ["T1", "T2", "T3", "T4"]})
    counts = case_work.finding_outcomes(members, {"T1": "fraud · card testing", "T2": "legit",
                                                  "T4": "fraud"})
    assert counts == {"F1": (1, 1), "F2": (1, 0)}
