"""Classifier statistics at a threshold, pinned against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_score,
    roc_auc_score,
    roc_curve,
)

from explainers import classifier_stats as cs
from explainers.errors import ValidationError


def _data(n: int = 4000, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.04).astype(int)
    score = np.round(1 / (1 + np.exp(-(2 * y + rng.normal(size=n) - 3))), 3)  # ties
    amount = np.round(rng.lognormal(4, 1, n), 2)
    return y, score, amount


def test_roc_points_equal_sklearn_roc_curve():
    y, s, _ = _data()
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    got = cs.roc_points(cs.threshold_table(y, s))
    np.testing.assert_allclose(got["fpr"], fpr)
    np.testing.assert_allclose(got["tpr"], tpr)
    np.testing.assert_allclose(got["threshold"].iloc[1:], thr[1:])


def test_pr_points_equal_sklearn_precision_recall_curve():
    y, s, _ = _data()
    precision, recall, thr = precision_recall_curve(y, s, drop_intermediate=False)
    got = cs.pr_points(cs.threshold_table(y, s))
    # sklearn: lowest threshold first and a final (recall 0, precision 1) point
    np.testing.assert_allclose(got["precision"], precision[:-1][::-1])
    np.testing.assert_allclose(got["recall"], recall[:-1][::-1])
    np.testing.assert_allclose(got["threshold"], thr[::-1])


def test_aucs_equal_sklearn():
    y, s, a = _data()
    stats = cs.classifier_stats("m", y, s, a)
    assert stats.roc_auc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert stats.pr_auc == pytest.approx(average_precision_score(y, s), abs=1e-12)


@pytest.mark.parametrize("threshold", [0.0, 0.05, 0.1234, 0.3, 0.9, 1.0])
def test_confusion_at_a_threshold_equals_sklearn_in_counts_and_usd(threshold: float):
    y, s, a = _data()
    flag = (s >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, flag, labels=[0, 1]).ravel()
    direct = cs.confusion_at(y, s, threshold, a)
    tabled = cs.classifier_stats("m", y, s, a).confusion(threshold)
    for c in (direct, tabled):
        assert (c.tp, c.fp, c.tn, c.fn) == (tp, fp, tn, fn)
        assert c.tp_usd == pytest.approx(a[(flag == 1) & (y == 1)].sum())
        assert c.fn_usd == pytest.approx(a[(flag == 0) & (y == 1)].sum())
        assert c.fp_usd == pytest.approx(a[(flag == 1) & (y == 0)].sum())
    if tp + fp:
        assert direct.precision == pytest.approx(precision_score(y, flag))


def test_deciles_cumulative_precision_equals_precision_of_the_top_rows():
    y, s, a = _data()
    d = cs.decile_table(y, s, a)
    order = np.argsort(-s, kind="mergesort")
    assert d["rows"].sum() == len(y) and len(d) == 10
    top = np.zeros(len(y), dtype=int)
    top[order[:d["rows"].iloc[:3].sum()]] = 1
    assert d["cumulative_precision"].iloc[2] == pytest.approx(precision_score(y, top))
    assert d["lift"].iloc[0] == pytest.approx(d["precision"].iloc[0] / y.mean())
    assert d["cumulative_recall"].iloc[-1] == pytest.approx(1.0)


def test_a_grid_keeps_every_count_exact_at_its_thresholds():
    rng = np.random.default_rng(3)
    y = (rng.random(20_000) < 0.05).astype(int)
    s = rng.random(20_000)
    table = cs.threshold_table(y, s, max_points=300)
    assert len(table) <= 301
    for t in table["threshold"].iloc[1::50]:
        c = cs.confusion_from_table(table, t)
        assert (c.tp, c.fp) == (int(((s >= t) & (y == 1)).sum()), int(((s >= t) & (y == 0)).sum()))


def test_bad_inputs_are_refused():
    with pytest.raises(ValidationError):
        cs.threshold_table(np.array([0, 2]), np.array([0.1, 0.2]))
    with pytest.raises(ValidationError):
        cs.threshold_table(np.array([]), np.array([]))
