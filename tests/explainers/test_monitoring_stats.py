"""Monitoring statistics pinned against scikit-learn and numpy on small seeded data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from explainers import monitoring_stats as ms


def _rows(n: int = 600, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.08).astype(float)
    score = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1).round(3)  # rounding makes ties
    return score, y


def test_binned_metrics_equal_scikit_learn_with_one_bin_per_score():
    score, y = _rows()
    week = ms.BinnedWeek.from_rows(score, y)
    got = ms.binned_metrics(week.rows, week.fraud, week.legit, k=50)
    assert got["roc_auc"][0] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert got["pr_auc"][0] == pytest.approx(average_precision_score(y, score), abs=1e-12)


def test_recall_and_precision_at_k_match_a_sort_without_ties():
    rng = np.random.default_rng(5)
    score, y = rng.random(400), (rng.random(400) < 0.1).astype(float)
    label = y.copy()
    label[rng.random(400) < 0.3] = np.nan  # a third not labelled yet
    week = ms.BinnedWeek.from_rows(score, label)
    got = ms.binned_metrics(week.rows, week.fraud, week.legit, k=40)
    top = np.argsort(-score)[:40]
    known = ~np.isnan(label)
    assert got["recall_at_k"][0] == pytest.approx(
        np.nansum(label[top] == 1) / np.sum(label[known] == 1))
    assert got["precision_at_k"][0] == pytest.approx(
        np.sum(label[top] == 1) / np.sum(known[top]))


def test_a_week_without_fraud_or_labels_is_not_measurable():
    none = ms.BinnedWeek(np.array([5.0, 5.0]), np.zeros(2), np.zeros(2))
    out = ms.bootstrap_week(none, 3, n_resamples=20, seed=1)
    assert all(not m.measurable and math.isnan(m.low) for m in out)
    legit_only = ms.BinnedWeek(np.array([5.0, 5.0]), np.zeros(2), np.array([5.0, 5.0]))
    roc = ms.bootstrap_week(legit_only, 3, n_resamples=20, seed=1)[0]
    assert roc.metric == "roc_auc" and not roc.measurable


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    score, y = _rows(2000)
    week = ms.BinnedWeek.from_rows(score, y)
    a = ms.bootstrap_week(week, 100, n_resamples=200, seed=7)
    b = ms.bootstrap_week(week, 100, n_resamples=200, seed=7)
    assert a == b
    for m in a:
        assert m.low <= m.estimate <= m.high
    roc = a[0]
    assert 0.01 < roc.high - roc.low < 0.2


def test_psi_matches_the_formula_and_floors_empty_bins():
    ref, cur = np.array([50, 30, 20]), np.array([20, 30, 50])
    r, c = ref / ref.sum(), cur / cur.sum()
    assert ms.psi(ref, cur) == pytest.approx(np.sum((c - r) * np.log(c / r)))
    assert ms.psi(ref, ref) == 0.0
    assert math.isfinite(ms.psi(np.array([10, 0]), np.array([5, 5])))
    assert math.isnan(ms.psi(np.array([0, 0]), np.array([1, 1])))


def test_label_maturity_gives_the_share_of_fraud_labels_known_by_age():
    m = ms.label_maturity(np.array([2.0, 4.0, 10.0, 20.0]), 42)
    assert list(m.known_share(np.array([1.0, 4.0, 15.0, 30.0]))) == [0.0, 0.5, 0.75, 1.0]
    assert m.completeness(np.array([4.0, 30.0]), np.array([100, 100])) == pytest.approx(0.75)


def test_expected_final_counts_the_fraud_still_to_come():
    expected, recall = ms.expected_final_recall(10, 5, 0.5, reference_recall=0.8)
    assert expected == pytest.approx(20)
    assert recall == pytest.approx((5 + 10 * 0.8) / 20)
    assert all(math.isnan(x) for x in ms.expected_final_recall(3, 1, math.nan, 0.8))


def test_a_week_without_scored_rows_has_no_metrics_instead_of_failing():
    empty = np.zeros(0)
    got = ms.binned_metrics(empty, empty, empty, k=10)
    assert set(got) == {"roc_auc", "pr_auc", "recall_at_k", "precision_at_k"}
    assert all(v.shape == (1,) and np.isnan(v[0]) for v in got.values())
    boot = ms.binned_metrics(np.zeros((5, 0)), np.zeros((5, 0)), np.zeros((5, 0)), k=10)
    assert all(v.shape == (5,) and np.isnan(v).all() for v in boot.values())
