"""The case service (app/services/case.py) and its queries (data_access/case_queries.py)
against the demo warehouse, without any UI."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from app.services import case as cases
from data_access import case_queries
from data_access.lake import model_key
from data_access.workspace import Workspace
from explainers.explanation import Explanation
from explainers.frames import explain_frame
from explainers.model import LoadedModel, sigmoid
from explainers.schema import FeatureSchema

XGB, CATBOOST = "fraud_xgb@1", "fraud_catboost@1"


@pytest.fixture(scope="module")
def ws(demo_workspace: Path) -> Workspace:
    return Workspace.at(demo_workspace)


@pytest.fixture(scope="module")
def con(ws: Workspace):
    con = ws.reader()
    yield con
    con.close()


@pytest.fixture(scope="module")
def xgb(ws: Workspace) -> LoadedModel:
    return ws.registry.load(XGB)


@pytest.fixture(scope="module")
def top_case(con) -> str:
    """The transaction the XGBoost model scores highest."""
    return con.execute("SELECT transaction_id FROM scores WHERE model_id = ? "
                       "ORDER BY score DESC, transaction_id LIMIT 1", [XGB]).fetchone()[0]


def test_clean_id_accepts_ids_and_refuses_injection_and_blanks():
    assert cases.clean_id("  T000000668 ") == "T000000668"
    assert cases.clean_id("A0000380") == "A0000380"
    assert cases.clean_id("' OR 1=1--") is None
    assert cases.clean_id("") is None
    assert cases.clean_id(None) is None
    assert cases.clean_id("x" * 65) is None


def test_case_link_is_the_deep_link_query():
    assert cases.case_link("T000000668", XGB) == "?txn=T000000668&model=fraud_xgb@1"
    assert cases.case_link("T1") == "?txn=T1"


def test_resolve_model_prefers_exact_id_then_champion_then_newest():
    ids = ["fraud_xgb@1", "fraud_xgb@2", "fraud_catboost@1"]
    assert cases.resolve_model("fraud_xgb@1", ids) == "fraud_xgb@1"
    assert cases.resolve_model("fraud_xgb", ids) == "fraud_xgb@2"
    assert cases.resolve_model("fraud_xgb", ids, champions=["fraud_xgb@1"]) == "fraud_xgb@1"
    assert cases.resolve_model("nope", ids) is None
    assert cases.resolve_model(None, ids) is None


def test_queue_filter_values_are_parameters_not_sql():
    f = case_queries.QueueFilter(XGB, countries=("' OR 1=1--",), min_amount=10.0)
    sql, params = case_queries.queue_sql(f, {"country", "amount_usd", "txn_type"})
    assert "OR 1=1" not in sql
    assert "' OR 1=1--" in params and 10.0 in params
    assert params[-1] == 200  # the limit


def test_queue_lists_highest_scores_in_band_dates_and_countries(con):
    f = case_queries.QueueFilter(XGB, since=date(2026, 10, 1), until=date(2026, 10, 31),
                          min_score=0.2, max_score=0.95, countries=("US", "GB"), limit=50)
    q = case_queries.fetch_queue(con, f)
    assert 0 < len(q) <= 50
    assert q["score"].is_monotonic_decreasing
    assert q["score"].between(0.2, 0.95).all()
    assert set(q["country"]) <= {"US", "GB"}
    times = pd.to_datetime(q["event_time"])
    assert times.min() >= pd.Timestamp("2026-10-01") and times.max() < pd.Timestamp("2026-11-01")
    assert set(q["outcome"]) <= {"fraud", "legit", "unlabelled"}
    assert not {"account_id", "email", "ip_address", "card_number"} & set(q.columns)


def test_case_scores_rank_every_model_among_all_scored(con, top_case: str):
    got = case_queries.case_scores(con, top_case).set_index("model_id")
    assert set(got.index) == {XGB, CATBOOST}
    assert got.loc[XGB, "rank"] == 1
    all_scores = con.execute("SELECT model_id, score FROM scores").df()
    cb = all_scores[all_scores["model_id"] == CATBOOST]["score"]
    expected = int((cb > got.loc[CATBOOST, "score"]).sum()) + 1
    assert got.loc[CATBOOST, "rank"] == expected
    assert got.loc[CATBOOST, "top_share"] == pytest.approx(expected / len(cb))


def test_unknown_transaction_has_no_row_and_no_scores(con):
    assert case_queries.transaction_row(con, "T999999999").empty
    assert case_queries.case_scores(con, "T999999999").empty


def test_stored_explanation_is_the_engines_explanation(con, xgb, top_case: str):
    row = case_queries.transaction_row(con, top_case)
    case = cases.case_explanation(con, xgb, row)
    engine = explain_frame(xgb, row)
    assert case.source == "store"
    np.testing.assert_allclose(case.values, engine.values[0], atol=1e-6)
    assert case.top_feature() == engine.feature_names[int(np.argmax(np.abs(engine.values[0])))]
    score = con.execute("SELECT score FROM scores WHERE model_id = ? AND transaction_id = ?",
                        [XGB, top_case]).fetchone()[0]
    assert case.probability == pytest.approx(score, abs=1e-6)


def test_case_missing_from_store_is_computed_on_demand(workspace_copy: Path, top_case: str,
                                                       edit_lake_rows):
    ws = Workspace.at(workspace_copy)
    assert edit_lake_rows(workspace_copy, f"shap/model={model_key(XGB)}", top_case,
                          lambda frame, mask: frame[~mask]) == 1
    con = ws.reader()
    model = ws.registry.load(XGB)
    row = case_queries.transaction_row(con, top_case)
    case = cases.case_explanation(con, model, row)
    assert case.source == "computed on demand"
    np.testing.assert_allclose(case.margin, model.margin(model.prepare(row))[0], atol=1e-5)


def _synthetic_case(values: list[float], base: float = -3.0) -> cases.CaseExplanation:
    names = tuple(f"f{i}" for i in range(len(values)))
    data = pd.DataFrame([[float(i) for i in range(len(values))]], columns=list(names))
    expl = Explanation(np.array([values]), base, names, data, row_ids=np.array(["T1"]))
    return cases.CaseExplanation("m@1", "T1", expl, "store")


def test_waterfall_orders_by_size_groups_the_rest_and_ends_at_the_score():
    case = _synthetic_case([0.1, -2.0, 0.5, 1.5, -0.05, 0.2])
    steps = cases.waterfall_steps(case, top_n=3)
    assert list(steps["kind"]) == ["base", "feature", "feature", "feature", "other", "final"]
    assert list(steps["feature"][1:4]) == ["f1", "f3", "f2"]
    assert steps["label"].iloc[4] == "3 other features"
    assert steps["contribution"].iloc[4] == pytest.approx(0.1 - 0.05 + 0.2)
    np.testing.assert_allclose(steps["start"].iloc[1:5], steps["end"].iloc[0:4])
    margin = -3.0 + 0.1 - 2.0 + 0.5 + 1.5 - 0.05 + 0.2
    assert steps["end"].iloc[-1] == pytest.approx(margin)
    assert steps["probability"].iloc[-1] == pytest.approx(sigmoid(np.array([margin]))[0])


def test_waterfall_labels_show_values_in_analyst_units(con, xgb, top_case: str):
    row = case_queries.transaction_row(con, top_case)
    steps = cases.waterfall_steps(cases.case_explanation(con, xgb, row), xgb.schema, top_n=22)
    labels = dict(zip(steps["feature"], steps["label"], strict=True))
    amount = float(row["amount_usd"].iloc[0])
    assert labels["amount_usd"] == f"amount_usd = ${amount:,.2f}"
    assert labels["new_device"] in {"new_device = yes", "new_device = no"}
    assert labels["country"] == f"country = {row['country'].iloc[0]}"


def test_reasons_point_both_ways_in_plain_words(con, xgb, top_case: str):
    case = cases.case_explanation(con, xgb, case_queries.transaction_row(con, top_case))
    reasons = cases.case_reasons(case, xgb.schema, top_n=5)
    assert 0 < len(reasons.towards_fraud) <= 5
    assert all(r.shap > 0 for r in reasons.towards_fraud)
    assert all(r.shap < 0 for r in reasons.towards_legit)
    assert reasons.towards_fraud[0].feature == case.feature_names[int(np.argmax(case.values))]
    assert "log-odds" in reasons.towards_fraud[0].text


def test_similar_cases_exclude_the_case_and_come_nearest_first():
    values = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.5, 0.5], [10.0, 10.0]])
    pool = cases.NeighbourPool("m@1", ("a", "b"), np.array(["T1", "T2", "T3", "T4", "T5"],
                                                          dtype=object),
                               values, np.array([1, 0, 1, 0, 1]),
                               np.array(pd.date_range("2026-10-01", periods=5)))
    names = ("a", "b")
    expl = Explanation(np.array([[0.0, 0.0]]), -2.0, names, pd.DataFrame({"a": [1.0],
                                                                           "b": [2.0]}))
    case = cases.CaseExplanation("m@1", "T1", expl, "store")
    got = cases.nearest_labelled(case, pool, k=3)
    assert list(got["transaction_id"]) == ["T4", "T2", "T3"]
    assert list(got["outcome"]) == ["legit", "legit", "fraud"]
    np.testing.assert_allclose(got["distance"], [np.sqrt(0.5), 1.0, 3.0])


def test_neighbour_pool_holds_only_labelled_stored_cases(con):
    pool = cases.neighbour_pool(con, XGB, size=500, seed=7)
    assert pool is not None and len(pool) == 500
    labelled = set(con.execute("SELECT transaction_id FROM labels").df()["transaction_id"])
    assert set(pool.transaction_ids) <= labelled
    again = cases.neighbour_pool(con, XGB, size=500, seed=7)
    assert list(again.transaction_ids) == list(pool.transaction_ids)


def test_account_timeline_marks_the_case_and_hides_pii(con, top_case: str):
    tl = case_queries.account_timeline(con, top_case, XGB)
    assert tl["is_case"].sum() == 1
    assert tl.loc[tl["is_case"], "transaction_id"].iloc[0] == top_case
    assert pd.to_datetime(tl["event_time"]).is_monotonic_increasing
    assert not {"account_id", "email", "ip_address"} & set(tl.columns)


def test_account_timeline_is_the_account_join(con):
    """The three targeted reads give exactly what one join over the whole lake gives, for
    busy and quiet accounts, an unknown id and a model without scores."""
    extra = case_queries._list_select(con)
    busiest = con.execute(
        "SELECT any_value(transaction_id) FROM transactions GROUP BY account_id "
        "ORDER BY count(*) DESC, any_value(transaction_id) LIMIT 3").df().iloc[:, 0].tolist()
    quiet = con.execute("SELECT transaction_id FROM transactions ORDER BY transaction_id "
                        "LIMIT 2").df()["transaction_id"].tolist()
    for txn in [*busiest, *quiet, "T999999999"]:
        for model_id in (XGB, CATBOOST, "nobody@1"):
            got = case_queries.account_timeline(con, txn, model_id, days=10, limit=7)
            want = case_queries._with_outcome(con.execute(
                "WITH c AS (SELECT account_id, event_time FROM transactions "
                "WHERE transaction_id = ?) "
                f"SELECT t.transaction_id, t.event_time{extra}, sc.score, l.is_fraud, "
                "t.transaction_id = ? AS is_case FROM transactions t JOIN c "
                "ON t.account_id = c.account_id AND t.event_time BETWEEN "
                "c.event_time - to_days(10) AND c.event_time + to_days(10) "
                "LEFT JOIN scores sc ON sc.transaction_id = t.transaction_id "
                "AND sc.model_id = ? LEFT JOIN labels l ON l.transaction_id = t.transaction_id "
                "ORDER BY t.event_time, t.transaction_id LIMIT 7",
                [txn, txn, model_id]).df())
            assert list(got.columns) == list(want.columns)
            pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert len(case_queries.account_timeline(con, busiest[0], XGB, days=400, limit=7)) == 7


def test_a_cached_ranking_ranks_as_counting_does(con, top_case: str):
    rankings = {m: case_queries.score_ranking(con, m) for m in (XGB, CATBOOST)}
    ids = [top_case, *con.execute("SELECT transaction_id FROM scores "
                                  "USING SAMPLE reservoir(20 ROWS) REPEATABLE (7)"
                                  ).df()["transaction_id"]]
    for txn in ids:
        got = case_queries.case_scores(con, txn, rankings.__getitem__)
        for row in got.itertuples():
            higher, scored = con.execute(
                "SELECT count(*) FILTER (WHERE score > ?), count(*) FROM scores "
                "WHERE model_id = ?", [row.score, row.model_id]).fetchone()
            assert (row.rank, row.scored) == (higher + 1, scored)
        pd.testing.assert_frame_equal(got, case_queries.case_scores(con, txn))
    tied = rankings[XGB].ascending
    assert case_queries.ScoreRanking(np.array([0.1, 0.5, 0.5, 0.9]), 5).rank(0.5) == 2
    assert rankings[XGB].rank(float(tied[-1])) == 1


def test_detail_rows_show_usd_and_utc_and_skip_features(con, xgb, top_case: str):
    row = case_queries.transaction_row(con, top_case)
    details = dict(cases.detail_rows(row, xgb.schema).itertuples(index=False))
    assert details["amount usd"].startswith("$")
    assert details["event time"].endswith("UTC")
    assert "account age days" not in details
    assert next(iter(details)) == "transaction id"


def test_missing_store_means_no_neighbours(tmp_path: Path):
    con = duckdb.connect(str(tmp_path / "empty.duckdb"))
    con.execute("CREATE TABLE x (a INT)")
    assert cases.neighbour_pool(con, XGB) is None
    schema = FeatureSchema.from_dict({"target": "y", "features": [
        {"name": "a", "dtype": "float"}]})
    row = pd.DataFrame({"transaction_id": ["T1"], "a": [1.0]})
    assert cases.stored_case_explanation(con, XGB, schema, row) is None
    con.close()
