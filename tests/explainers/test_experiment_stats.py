"""Experiment statistics: per-arm metrics against scikit-learn, intervals clustered by account,
the sample-ratio check against scipy, and the bootstrap correlation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare
from sklearn.metrics import average_precision_score, roc_auc_score

from explainers import experiment_stats as xs
from explainers.errors import ValidationError


def _arm(name: str, accounts: np.ndarray, seed: int, threshold: float = 0.5,
         shift: float = 0.0) -> xs.ArmRows:
    rng = np.random.default_rng(seed)
    n = len(accounts)
    y = (rng.random(n) < 0.05).astype(int)
    score = 1 / (1 + np.exp(-(2.5 * y + rng.normal(size=n) - 2 + shift)))
    return xs.ArmRows(name, f"m_{name}", threshold, accounts, y, score,
                      np.round(rng.lognormal(4, 1, n), 2))


def _experiment(rows_per_account: int = 5, accounts: int = 400):
    acc = np.repeat(np.arange(accounts), rows_per_account)
    control = _arm("control", acc[acc % 2 == 0], 1)
    treatment = _arm("treatment", acc[acc % 2 == 1], 2, shift=1.5)
    return control, treatment


def test_point_metrics_match_sklearn_and_the_definitions():
    control, _ = _experiment()
    m = xs.point_metrics(control, days=10, review_cost=5.0)
    y, s, a, flag = control.y, control.score, control.amount, control.flagged
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, s))
    assert m["recall_at_threshold"] == pytest.approx((flag & (y == 1)).sum() / y.sum())
    assert m["fraud_loss_usd"] == pytest.approx(a[(y == 1) & ~flag].sum())
    assert m["fraud_prevented_usd"] == pytest.approx(a[(y == 1) & flag].sum())
    assert m["chargebacks"] == ((y == 1) & ~flag).sum()
    assert m["reviews_per_day"] == pytest.approx(flag.sum() / 10)
    assert m["review_cost_per_day"] == pytest.approx(flag.sum() / 10 * 5.0)
    assert m["fraud_loss_per_1k"] == pytest.approx(a[(y == 1) & ~flag].sum() * 1000 / len(y))
    legit_accounts = np.unique(control.account[y == 0])
    blocked = np.unique(control.account[(y == 0) & flag])
    assert m["friction_rate"] == pytest.approx(len(blocked) / len(legit_accounts))


def test_differences_are_paired_and_intervals_cover_the_estimate():
    control, treatment = _experiment()
    stats = xs.arm_statistics([control, treatment], control="control", n_accounts=400, days=10,
                              n_resamples=100, seed=3)
    for metric in xs.DIFFERENCE_METRICS:
        d = stats.get("treatment", metric, "control")
        a, b = stats.get("treatment", metric), stats.get("control", metric)
        assert d.estimate == pytest.approx(a.estimate - b.estimate)
        assert d.low <= d.high
    # the treatment flags more (its scores are shifted up): more reviews, with certainty
    assert stats.get("treatment", "reviews_per_1k", "control").low > 0
    assert set(stats.frame()["metric"]) >= set(xs.BUSINESS_METRICS)


def test_intervals_resample_accounts_not_transactions():
    """Copying every account's rows tenfold adds no information: with account clusters the
    interval stays as wide (a transaction bootstrap would shrink it about threefold)."""
    one = _experiment(rows_per_account=1, accounts=2000)
    ten = tuple(xs.ArmRows(a.arm, a.model, a.threshold, np.repeat(a.account, 10),
                           np.repeat(a.y, 10), np.repeat(a.score, 10), np.repeat(a.amount, 10))
                for a in one)

    def width(arms) -> float:
        s = xs.arm_statistics(list(arms), control="control", n_accounts=2000, days=10,
                              n_resamples=200, seed=5)
        d = s.get("treatment", "reviews_per_1k", "control")
        return d.high - d.low

    assert width(ten) == pytest.approx(width(one), rel=0.15)


def test_srm_matches_scipy_and_flags_a_broken_split():
    ok = xs.srm_check({"control": 5010, "treatment": 4990})
    stat, p = chisquare([5010, 4990], [5000, 5000])
    assert (ok.chi2, ok.p_value) == (pytest.approx(stat), pytest.approx(p))
    assert not ok.mismatch
    broken = xs.srm_check({"control": 5300, "treatment": 4700})
    assert broken.mismatch
    weighted = xs.srm_check({"a": 900, "b": 100}, {"a": 0.9, "b": 0.1})
    assert not weighted.mismatch


def test_bootstrap_correlation_matches_numpy_and_needs_three_points():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = -2 * x + rng.normal(size=30)
    c = xs.bootstrap_correlation(x, y, x_name="a", y_name="b", n_resamples=300, seed=1)
    assert c.estimate == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert c.low <= c.estimate <= c.high < 0
    assert np.isnan(xs.bootstrap_correlation(x[:2], y[:2], x_name="a", y_name="b").estimate)


def test_a_control_that_is_not_an_arm_is_refused():
    control, treatment = _experiment()
    with pytest.raises(ValidationError, match="control arm"):
        xs.arm_statistics([control, treatment], control="nope", n_accounts=400, days=10)
