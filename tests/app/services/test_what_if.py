"""What-if on a case: the edited value is checked against the schema, every model re-scores
the edited row, and nothing reaches the lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.services import what_if
from data_access.workspace import Workspace
from explainers.errors import ValidationError


def _lake_files(workspace: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in (workspace / "lake").rglob("*") if p.is_file()}


def test_what_if_rescores_with_every_model_and_writes_nothing(demo_workspace: Path) -> None:
    ws = Workspace(demo_workspace)
    models = [ws.registry.load(m.key) for m in ws.registry.list()]
    con = ws.reader()
    try:
        row = con.execute("SELECT t.* FROM transactions t JOIN scores s USING (transaction_id) "
                          "WHERE s.model_id = 'fraud_xgb@1' ORDER BY s.score DESC, "
                          "t.transaction_id LIMIT 1").df()
    finally:
        con.close()
    before_files = _lake_files(demo_workspace)
    schema = models[0].schema
    feature = schema.feature("account_age_days")
    results = what_if.what_if(models, row, feature, 900.0)
    assert {r.model_id for r in results} == {m.key for m in models} and len(results) == 2
    for r in results:
        assert r.uses_feature
        assert r.after.probability != pytest.approx(r.before.probability)
        assert r.after.feature_values()["account_age_days"] == 900.0
        assert abs(r.before.margin - (r.before.base_value + r.before.values.sum())) < 1e-4
    assert str(row["account_age_days"].iloc[0]) != "900.0"  # the caller's row is untouched
    assert _lake_files(demo_workspace) == before_files


def test_values_outside_the_schema_are_refused() -> None:
    from explainers.schema import Feature

    country = Feature("country", "category", categories=("US", "GB"))
    count = Feature("txn_count_1h", "int")
    flag = Feature("new_device", "bool")
    assert what_if.checked_value(country, "GB") == "GB"
    assert what_if.checked_value(count, 3.0) == 3
    with pytest.raises(ValidationError, match="one of US, GB"):
        what_if.checked_value(country, "XX")
    with pytest.raises(ValidationError, match="whole number"):
        what_if.checked_value(count, 2.5)
    with pytest.raises(ValidationError, match="yes/no"):
        what_if.checked_value(flag, "maybe")
    with pytest.raises(ValidationError, match="finite"):
        what_if.checked_value(Feature("amount_usd", "float"), float("inf"))
