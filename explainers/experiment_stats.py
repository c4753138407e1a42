"""Treatment against control: model and business metrics per arm, differences between arms
with bootstrap intervals clustered by account, a sample-ratio-mismatch check, and the
correlation of model metrics with business metrics.

Pure computation: numpy/pandas in, frozen dataclasses out. A resample draws accounts with
replacement (`comparison_stats.resample_weights` over accounts), and every row of an account
carries its account's count, so transactions of one customer move together; every arm sees
the same resamples, so differences are paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explainers.comparison_stats import resample_weights, weighted_metrics
from explainers.errors import ValidationError

__all__ = [
    "BUSINESS_METRICS",
    "DIFFERENCE_METRICS",
    "MODEL_METRICS",
    "ArmRows",
    "Correlation",
    "ExperimentStats",
    "MetricInterval",
    "SrmCheck",
    "arm_statistics",
    "bootstrap_correlation",
    "business_metrics",
    "metric_label",
    "point_metrics",
    "srm_check",
]

MODEL_METRICS = ("roc_auc", "pr_auc", "recall_at_threshold")
BUSINESS_METRICS = ("transactions", "accounts", "fraud_loss_usd", "fraud_prevented_usd",
                    "friction_rate", "reviews_per_day", "review_cost_per_day", "chargebacks",
                    "fraud_loss_per_1k", "fraud_prevented_per_1k", "reviews_per_1k",
                    "chargebacks_per_1k")
# Differences are taken on measures that do not grow with an arm's size.
DIFFERENCE_METRICS = ("roc_auc", "pr_auc", "recall_at_threshold", "friction_rate",
                      "fraud_loss_per_1k", "fraud_prevented_per_1k", "reviews_per_1k",
                      "chargebacks_per_1k")
_LABELS = {
    "roc_auc": "ROC AUC", "pr_auc": "PR AUC",
    "recall_at_threshold": "Recall at the arm's threshold",
    "transactions": "Transactions (matured, labelled)", "accounts": "Accounts",
    "fraud_loss_usd": "Fraud loss (USD, confirmed fraud let through)",
    "fraud_prevented_usd": "Fraud prevented (USD)",
    "friction_rate": "Legitimate customers blocked (friction rate)",
    "reviews_per_day": "Reviews per day", "review_cost_per_day": "Review cost per day (USD)",
    "chargebacks": "Chargebacks (fraud let through)",
    "fraud_loss_per_1k": "Fraud loss per 1,000 transactions (USD)",
    "fraud_prevented_per_1k": "Fraud prevented per 1,000 transactions (USD)",
    "reviews_per_1k": "Reviews per 1,000 transactions",
    "chargebacks_per_1k": "Chargebacks per 1,000 transactions",
}
# per-account sums the business metrics are built from
_SUMS = ("txn", "fraud_missed_usd", "fraud_caught_usd", "flagged", "chargebacks", "has_legit",
         "customer_blocked")


def metric_label(name: str) -> str:
    return _LABELS.get(name, name)


@dataclass(frozen=True, eq=False)
class ArmRows:
    """One arm's matured, labelled rows: account code (0..accounts-1 across the experiment),
    label, score, amount; flagged when score >= threshold."""

    arm: str
    model: str
    threshold: float
    account: np.ndarray
    y: np.ndarray
    score: np.ndarray
    amount: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.y)
        if not (len(self.account) == len(self.score) == len(self.amount) == n):
            raise ValidationError(f"Arm {self.arm}: columns of different lengths")

    @property
    def flagged(self) -> np.ndarray:
        return np.asarray(self.score, float) >= self.threshold


@dataclass(frozen=True)
class MetricInterval:
    """One metric for one arm, or the difference `arm − versus`, with its 95% interval."""

    metric: str
    arm: str
    estimate: float
    low: float
    high: float
    versus: str = ""


@dataclass(frozen=True)
class SrmCheck:
    """Chi-square test of the units seen per arm against the intended split."""

    observed: tuple[tuple[str, int], ...]
    expected_share: tuple[tuple[str, float], ...]
    chi2: float
    p_value: float
    alpha: float = 0.001

    @property
    def mismatch(self) -> bool:
        return bool(self.p_value < self.alpha)


@dataclass(frozen=True)
class Correlation:
    """Pearson correlation of two weekly measures with a bootstrap interval over weeks."""

    x: str
    y: str
    points: int
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class ExperimentStats:
    """Per-arm metrics and differences against the control arm."""

    control: str
    estimates: tuple[MetricInterval, ...]
    n_resamples: int
    seed: int
    days: int

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"arm": e.arm, "versus": e.versus, "metric": e.metric,
                              "label": metric_label(e.metric), "estimate": e.estimate,
                              "ci_low": e.low, "ci_high": e.high} for e in self.estimates],
                            columns=["arm", "versus", "metric", "label", "estimate", "ci_low",
                                     "ci_high"])

    def get(self, arm: str, metric: str, versus: str = "") -> MetricInterval:
        for e in self.estimates:
            if e.arm == arm and e.metric == metric and e.versus == versus:
                return e
        raise KeyError((arm, metric, versus))


def _account_sums(rows: ArmRows, n_accounts: int) -> np.ndarray:
    """accounts x len(_SUMS) sums over the arm's rows."""
    y = np.asarray(rows.y, dtype=np.float64)
    amount = np.nan_to_num(np.asarray(rows.amount, dtype=np.float64))
    flag = rows.flagged
    acc = np.asarray(rows.account, dtype=np.int64)

    def per(values: np.ndarray) -> np.ndarray:
        return np.bincount(acc, weights=values, minlength=n_accounts)

    legit_blocked = per((1 - y) * flag)
    n_legit = per(1 - y)
    return np.column_stack([
        per(np.ones(len(y))), per(amount * y * ~flag), per(amount * y * flag), per(flag * 1.0),
        per(y * ~flag), (n_legit > 0) * 1.0, (legit_blocked > 0) * 1.0])


def business_metrics(sums: np.ndarray, days: int, review_cost: float) -> dict[str, np.ndarray]:
    """Business metrics from summed account aggregates (resamples x len(_SUMS), or one row)."""
    s = np.atleast_2d(sums)
    col = {name: s[:, i] for i, name in enumerate(_SUMS)}
    txn = col["txn"]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_k = np.where(txn > 0, 1000.0 / txn, np.nan)
        reviews_per_day = col["flagged"] / days if days else np.full(len(txn), np.nan)
        return {
            "transactions": txn, "fraud_loss_usd": col["fraud_missed_usd"],
            "fraud_prevented_usd": col["fraud_caught_usd"],
            "friction_rate": np.where(col["has_legit"] > 0,
                                      col["customer_blocked"] / col["has_legit"], np.nan),
            "reviews_per_day": reviews_per_day,
            "review_cost_per_day": reviews_per_day * review_cost,
            "chargebacks": col["chargebacks"],
            "fraud_loss_per_1k": col["fraud_missed_usd"] * per_k,
            "fraud_prevented_per_1k": col["fraud_caught_usd"] * per_k,
            "reviews_per_1k": col["flagged"] * per_k,
            "chargebacks_per_1k": col["chargebacks"] * per_k}


def _model_draws(rows: ArmRows, weights: np.ndarray) -> dict[str, np.ndarray]:
    """ROC AUC, PR AUC and recall at the threshold for each resample (weights: resamples x
    accounts), computed on row weights taken from the rows' accounts."""
    acc = np.asarray(rows.account, dtype=np.int64)
    y = np.asarray(rows.y, dtype=np.float64)
    out = {m: np.empty(len(weights)) for m in MODEL_METRICS}
    block = max(1, 4_000_000 // max(len(y), 1))
    none = np.zeros(len(y), dtype=bool)
    for start in range(0, len(weights), block):
        w = weights[start:start + block][:, acc]
        got = weighted_metrics(y, rows.score, w, none)
        out["roc_auc"][start:start + block] = got["roc_auc"]
        out["pr_auc"][start:start + block] = got["pr_auc"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out["recall_at_threshold"][start:start + block] = (
                (w * (y * rows.flagged)).sum(axis=1) / (w * y).sum(axis=1))
    return out


def _point_model(rows: ArmRows) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(rows.y, dtype=int)
    both = 0 < y.sum() < len(y)
    return {"roc_auc": float(roc_auc_score(y, rows.score)) if both else np.nan,
            "pr_auc": float(average_precision_score(y, rows.score)) if y.any() else np.nan,
            "recall_at_threshold": float((rows.flagged & (y == 1)).sum() / y.sum())
            if y.any() else np.nan}


def point_metrics(rows: ArmRows, days: int, review_cost: float = 5.0) -> dict[str, float]:
    """Every model and business metric of one arm's rows, without intervals (the generator
    of a planted experiment uses it on each potential outcome)."""
    n_accounts = int(np.max(rows.account)) + 1 if len(rows.account) else 0
    sums = _account_sums(rows, n_accounts)
    return {**{k: float(v[0]) for k, v in
               business_metrics(sums.sum(axis=0), days, review_cost).items()},
            **_point_model(rows), "accounts": float((sums[:, 0] > 0).sum())}


def _interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    ok = draws[np.isfinite(draws)]
    if len(ok) < 2:
        return np.nan, np.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(ok, [tail, 100 - tail])
    return float(low), float(high)


def arm_statistics(arms: Sequence[ArmRows], *, control: str, n_accounts: int, days: int,
                   review_cost: float = 5.0, n_resamples: int = 200,
                   seed: int = 7) -> ExperimentStats:
    """Every arm's metrics with account-clustered 95% intervals, and each other arm's paired
    difference to `control` on `DIFFERENCE_METRICS`. Arms without rows are left out."""
    names = [a.arm for a in arms]
    if control not in names:
        raise ValidationError(f"The control arm {control!r} is not among {', '.join(names)}")
    if n_resamples < 2:
        raise ValidationError(f"Bootstrap resamples must be at least 2, got {n_resamples}")
    weights = resample_weights(n_accounts, n_resamples, seed)
    point, draws = {}, {}
    for arm in arms:
        if len(arm.y) == 0:
            continue
        sums = _account_sums(arm, n_accounts)
        point[arm.arm] = point_metrics(arm, days, review_cost)
        draws[arm.arm] = {**business_metrics(weights @ sums, days, review_cost),
                          **_model_draws(arm, weights),
                          "accounts": (weights * (sums[:, 0] > 0)).sum(axis=1)}
    estimates = []
    for arm in names:
        if arm not in point:
            continue
        for metric in (*MODEL_METRICS, *BUSINESS_METRICS):
            low, high = _interval(draws[arm][metric])
            estimates.append(MetricInterval(metric, arm, point[arm][metric], low, high))
    for arm in names:
        if arm == control or arm not in point or control not in point:
            continue
        for metric in DIFFERENCE_METRICS:
            low, high = _interval(draws[arm][metric] - draws[control][metric])
            estimates.append(MetricInterval(metric, arm, point[arm][metric]
                                            - point[control][metric], low, high, control))
    return ExperimentStats(control, tuple(estimates), n_resamples, seed, days)


def srm_check(observed: Mapping[str, int], intended: Mapping[str, float] | None = None,
              alpha: float = 0.001) -> SrmCheck:
    """Chi-square goodness of fit of units per arm to the intended shares (default: equal).
    A p-value below `alpha` is a sample-ratio mismatch: the assignment or the logging broke."""
    from scipy.stats import chisquare

    arms = list(observed)
    if len(arms) < 2:
        raise ValidationError("A sample-ratio check needs two or more arms")
    shares = np.array([(intended or {}).get(a, 1.0) for a in arms], dtype=float)
    shares = shares / shares.sum()
    counts = np.array([observed[a] for a in arms], dtype=float)
    total = counts.sum()
    if total == 0:
        return SrmCheck(tuple((a, 0) for a in arms), tuple(zip(arms, shares.tolist(), strict=True)),
                        np.nan, np.nan, alpha)
    stat, p = chisquare(counts, shares * total)
    return SrmCheck(tuple((a, int(c)) for a, c in zip(arms, counts, strict=True)),
                    tuple((a, float(s)) for a, s in zip(arms, shares, strict=True)),
                    float(stat), float(p), alpha)


def bootstrap_correlation(x: np.ndarray, y: np.ndarray, *, x_name: str, y_name: str,
                          n_resamples: int = 1000, seed: int = 7) -> Correlation:
    """Pearson correlation of paired points (e.g. one per experiment, arm and week) with a
    percentile interval from resampling the points; NaN with fewer than three points."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if n < 3 or np.std(x) == 0 or np.std(y) == 0:
        return Correlation(x_name, y_name, n, np.nan, np.nan, np.nan)
    estimate = float(np.corrcoef(x, y)[0, 1])
    draws = np.empty(n_resamples)
    for i in range(n_resamples):
        idx = np.random.default_rng([seed, i]).integers(0, n, size=n)
        xs, ys = x[idx], y[idx]
        draws[i] = np.corrcoef(xs, ys)[0, 1] if np.std(xs) > 0 and np.std(ys) > 0 else np.nan
    low, high = _interval(draws)
    return Correlation(x_name, y_name, n, estimate, low, high)
