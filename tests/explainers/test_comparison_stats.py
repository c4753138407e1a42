"""Comparison metrics, bootstrap, holdout rules, cost model, importance and latency."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score, roc_curve

from explainers import comparison_stats as cmp
from explainers import review_cost
from explainers.latency import Sla, measure_latency

UTC = "UTC"


def _data(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, two correlated scores (rounded, so there are ties) and a day per row."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    signal = y * 1.5 + rng.normal(size=n)
    a = np.round(1 / (1 + np.exp(-(signal - 3))), 3)
    b = np.round(1 / (1 + np.exp(-(signal + 0.5 * rng.normal(size=n) - 3))), 3)
    day = np.repeat(np.arange(n // 100), 100)[:n]
    return y, a, b, day


def _recall_at(y: np.ndarray, s: np.ndarray, f: float, w: np.ndarray | None = None) -> float:
    fpr, tpr, _ = roc_curve(y, s, sample_weight=w)
    return float(tpr[fpr <= f].max())


def test_point_metrics_equal_sklearn() -> None:
    y, a, _, day = _data()
    reviewed = cmp.daily_top_k(a, day, 10)
    got = cmp.point_metrics(y, a, reviewed)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, a), abs=1e-12)
    assert got["brier"] == pytest.approx(brier_score_loss(y, a), abs=1e-12)
    for f in cmp.RECALL_FPRS:
        assert got[f"recall_at_fpr_{f:g}"] == pytest.approx(_recall_at(y, a, f), abs=1e-12)
    assert got["precision_at_k"] == pytest.approx(y[reviewed].mean())
    assert reviewed.sum() == 10 * len(np.unique(day))


@pytest.mark.parametrize("resample", [0, 1, 2])
def test_vectorised_bootstrap_metrics_equal_sklearn_on_the_resampled_rows(resample: int) -> None:
    y, a, _, day = _data(n=1500, seed=3)
    reviewed = cmp.daily_top_k(a, day, 5)
    w = cmp.resample_weights(len(y), 3, seed=11)
    got = cmp.weighted_metrics(y, a, w, reviewed)
    idx = np.repeat(np.arange(len(y)), w[resample].astype(int))  # the resample as rows
    yy, aa = y[idx], a[idx]
    assert got["roc_auc"][resample] == pytest.approx(roc_auc_score(yy, aa), abs=1e-10)
    assert got["pr_auc"][resample] == pytest.approx(average_precision_score(yy, aa), abs=1e-10)
    assert got["brier"][resample] == pytest.approx(brier_score_loss(yy, aa), abs=1e-10)
    for f in cmp.RECALL_FPRS:
        assert got[f"recall_at_fpr_{f:g}"][resample] == pytest.approx(_recall_at(yy, aa, f),
                                                                      abs=1e-10)
    assert got["precision_at_k"][resample] == pytest.approx(y[idx][reviewed[idx]].mean())


def test_resample_is_the_same_whatever_block_draws_it() -> None:
    whole = cmp.resample_weights(500, 10, seed=5)
    part = cmp.resample_weights(500, 10, seed=5, start=4, stop=7)
    np.testing.assert_array_equal(whole[4:7], part)
    assert (whole.sum(axis=1) == 500).all()


def test_bootstrap_is_reproducible_with_its_seed() -> None:
    y, a, b, day = _data()
    run = lambda seed: cmp.bootstrap_metrics(  # noqa: E731
        y, {"A": a, "B": b}, day, capacity=10, n_resamples=40, seed=seed)
    first, again, other = run(7), run(7), run(8)
    assert first.frame().equals(again.frame())
    ci = first.get("A", "roc_auc")
    assert ci.low < ci.estimate < ci.high
    assert (ci.low, ci.high) != (other.get("A", "roc_auc").low, other.get("A", "roc_auc").high)
    assert first.get("A", "roc_auc").estimate == other.get("A", "roc_auc").estimate


def test_paired_difference_uses_the_same_resamples() -> None:
    y, a, b, day = _data()
    same = cmp.bootstrap_metrics(y, {"A": a, "A2": a.copy()}, day, capacity=10, n_resamples=30)
    diff = same.get("A2", "roc_auc", versus="A")
    assert (diff.estimate, diff.low, diff.high) == (0.0, 0.0, 0.0)
    res = cmp.bootstrap_metrics(y, {"A": a, "B": b}, day, capacity=10, n_resamples=30)
    d = res.get("B", "pr_auc", versus="A")
    assert d.estimate == pytest.approx(average_precision_score(y, b)
                                       - average_precision_score(y, a))
    frame = res.frame()
    assert set(frame["versus"]) == {"", "A"}
    assert len(frame) == 3 * len(cmp.metric_names())


def test_daily_top_k_takes_each_days_highest_scores() -> None:
    score = np.array([0.9, 0.1, 0.5, 0.8, 0.7, 0.2])
    day = np.array([1, 1, 1, 2, 2, 2])
    assert cmp.daily_top_k(score, day, 2).tolist() == [True, False, True, True, True, False]


def _rows(events: list[str], labels: list[str | None], scored: list[bool] | None = None
          ) -> pd.DataFrame:
    return pd.DataFrame({"event_time": pd.to_datetime(events, utc=True),
                         "label_time": pd.to_datetime(labels, utc=True),
                         "scored": scored or [True] * len(events)})


def test_immature_labels_are_excluded_and_counted() -> None:
    as_of = pd.Timestamp("2026-03-31 00:00", tz=UTC)
    rules = cmp.HoldoutRules(as_of=as_of, train_end=pd.Timestamp("2026-01-31", tz=UTC),
                             maturity_days=30, min_week_coverage=0.5)
    rows = _rows(
        ["2026-01-15", "2026-02-10", "2026-02-11", "2026-02-12", "2026-03-05", "2026-03-20",
         "2026-02-13"],
        # every row is labelled, the two March rows quickly (fraud arrives first)
        ["2026-02-01", "2026-03-01", "2026-03-02", "2026-04-15", "2026-03-07", "2026-03-22",
         "2026-03-03"],
        [True, True, True, True, True, True, False])
    sel = cmp.select_holdout(rows, rules)
    assert sel.mask.tolist() == [False, True, True, False, False, False, False]
    counts = {e.reason.split(" (")[0]: e.rows for e in sel.exclusions}
    assert counts["inside a candidate's training window"] == 1
    assert counts["not scored by every candidate"] == 1
    assert counts["labels immature"] == 2  # newer than as_of - 30 days, though labelled
    assert counts["no label known as of 2026-03-31 00:00 UTC"] == 1  # label after as_of
    assert sum(e.rows for e in sel.exclusions) + sel.rows == len(rows)
    assert rules.mature_until == pd.Timestamp("2026-03-01", tz=UTC)


def test_weeks_with_low_label_coverage_are_left_out() -> None:
    rules = cmp.HoldoutRules(as_of=pd.Timestamp("2026-06-30", tz=UTC), train_end=None,
                             maturity_days=30, min_week_coverage=0.75)
    # week of Mon 2026-05-04: 4 of 4 labelled; week of Mon 2026-05-11: 1 of 2 labelled
    rows = _rows(["2026-05-04", "2026-05-05", "2026-05-06", "2026-05-07", "2026-05-11",
                  "2026-05-12"],
                 ["2026-05-20", "2026-05-20", "2026-05-20", "2026-05-20", "2026-05-20", None])
    sel = cmp.select_holdout(rows, rules)
    assert sel.mask.tolist() == [True, True, True, True, False, False]
    frame = sel.exclusion_frame().set_index("reason")["rows"]
    assert frame["in a week with label coverage below 75%"] == 1
    assert frame.filter(like="no label").iloc[0] == 1


def test_cost_model_picks_the_cheapest_threshold_under_capacity() -> None:
    score = np.array([0.9, 0.8, 0.3, 0.95, 0.2, 0.1])
    y = np.array([1, 0, 1, 0, 1, 0])
    amount = np.array([100.0, 50.0, 400.0, 10.0, 30.0, 5.0])
    day = np.array([1, 1, 1, 2, 2, 2])
    cost = review_cost.CostModel(review_cost=20.0, capacity=2)
    curve = review_cost.cost_curve(score, y, amount, day, cost).set_index("threshold")
    # nothing flagged: every fraud missed
    assert curve.loc[np.inf, "total_cost_usd"] == 530.0
    # >= 0.3: day 1 reviews 0.9, 0.8 (capacity 2; 0.3 overflows), day 2 reviews 0.95
    row = curve.loc[0.3]
    assert (row["flagged"], row["reviewed"], row["fraud_caught"]) == (4, 3, 1)
    assert row["total_cost_usd"] == pytest.approx(3 * 20 + 400 + 30)
    best = review_cost.choose_threshold("m", score, y, amount, day, cost)
    assert best.total_cost_usd == curve["total_cost_usd"].min()
    # >= 0.9 reviews one case a day and catches the $100 fraud: 2 x 20 + 430 beats 0.2's
    # 4 x 20 + 400 and 0.3's 490
    assert (best.threshold, best.total_cost_usd) == (0.9, 470.0)
    assert best.days == 2 and best.cost_per_day_usd == best.total_cost_usd / 2


def test_calibration_table_matches_sklearn() -> None:
    y, a, _, _ = _data()
    table = cmp.calibration_table(y, a, "A")
    observed, predicted = calibration_curve(y, a, n_bins=10)
    np.testing.assert_allclose(table["observed_rate"], observed)
    np.testing.assert_allclose(table["mean_predicted"], predicted)
    assert table["rows"].sum() == len(y)


def test_period_metrics_are_sklearns_per_week() -> None:
    y, a, b, _ = _data(n=1400)
    t = pd.Series(pd.date_range("2026-05-04", periods=1400, freq="h", tz=UTC))
    weekly = cmp.period_metrics(y, {"A": a, "B": b}, t, "W")
    first = weekly[(weekly["model"] == "B")].iloc[0]
    in_week = (t < pd.Timestamp("2026-05-11", tz=UTC)).to_numpy()
    assert first["roc_auc"] == pytest.approx(roc_auc_score(y[in_week], b[in_week]))
    assert first["rows"] == in_week.sum()
    assert weekly["period_start"].nunique() == 9


def test_importance_comparison_finds_rank_shifts_and_flipped_directions() -> None:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"f1": rng.normal(size=500), "f2": rng.normal(size=500),
                      "f3": rng.normal(size=500), "f4": rng.normal(size=500)})
    shap_a = np.column_stack([2 * x.f1, 1 * x.f2, 0.5 * x.f3, 0.1 * x.f4])
    shap_b = np.column_stack([2 * x.f1, -0.4 * x.f2, 0.6 * x.f3, 1.5 * x.f4])
    names = list(x.columns)
    a = cmp.attribution_summary(shap_a, x, names, names)
    b = cmp.attribution_summary(shap_b, x, names, names)
    assert a.set_index("feature").loc["f2", "direction"] == 1.0
    assert b.set_index("feature").loc["f2", "direction"] == -1.0
    c = cmp.compare_importance(a, b, reference_id="A", challenger_id="B", rows=500)
    expected = spearmanr(a.set_index("feature").loc[names, "mean_abs_shap"],
                         b.set_index("feature").loc[names, "mean_abs_shap"]).statistic
    assert c.spearman == pytest.approx(expected)
    top = c.most_different(2)
    assert top["feature"].tolist() == ["f2", "f4"]  # the flip first, then the biggest move
    assert top["rank_shift"].tolist() == [2, 2]


def test_disagreements_are_one_sided_flags_largest_amount_first() -> None:
    cases = pd.DataFrame({
        "transaction_id": ["t1", "t2", "t3", "t4"],
        "event_time": pd.date_range("2026-01-01", periods=4, tz=UTC),
        "amount_usd": [10.0, 500.0, 80.0, 999.0], "is_fraud": [1.0, np.nan, 0.0, 1.0],
        "score_A": [0.9, 0.2, 0.7, 0.95], "score_B": [0.1, 0.8, 0.6, 0.9]})
    d = review_cost.disagreements(cases, "A", "B", {"A": 0.65, "B": 0.5})
    assert d["transaction_id"].tolist() == ["t2", "t1"]
    assert d["flagged_by"].tolist() == ["B", "A"]
    assert np.isnan(d["is_fraud"].iloc[0])


def test_latency_measures_the_model_and_its_structure(cb_model, holdout) -> None:
    frame, _ = holdout
    m = measure_latency(cb_model, frame, size_bytes=1234, single_row_calls=30, warmup=2,
                        batch_rows=500, batch_repeats=1)
    assert m.model_id == cb_model.key and m.single_row_calls == 30
    assert 0 < m.p50_ms <= m.p99_ms and m.prep_p50_ms >= m.p50_ms
    assert m.rows_per_s > 0 and m.size_bytes == 1234
    assert (m.trees, m.max_depth) == (40, 4)
    assert m.meets(Sla(p99_ms=1e9)) and not m.meets(Sla(p99_ms=0.0))
    assert m.failures(Sla(p99_ms=0.0))[0].startswith("p99")
