"""Comparing model candidates on one matured holdout: metrics with paired bootstrap intervals,
weekly stability and importance ranks (costs and disagreements: `explainers.review_cost`).

Pure computation: numpy/pandas in, frozen dataclasses and tidy frames out. Point estimates are
scikit-learn's; the bootstrap recomputes the same metrics vectorised over resample weights
(a resample is a row of counts, so a weighted metric equals the metric on the resampled rows),
and every model sees the same resamples, so differences are paired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explainers.errors import ValidationError

__all__ = [
    "RECALL_FPRS",
    "Exclusion",
    "HoldoutRules",
    "HoldoutSelection",
    "ImportanceComparison",
    "MetricEstimate",
    "MetricsResult",
    "attribution_summary",
    "bootstrap_metrics",
    "calibration_table",
    "compare_importance",
    "daily_top_k",
    "metric_label",
    "metric_names",
    "period_metrics",
    "point_metrics",
    "resample_weights",
    "select_holdout",
    "week_start",
    "weighted_metrics",
]

RECALL_FPRS = (0.005, 0.01, 0.02)
# The rows x resamples handled at once: bounds memory (~8 bytes each, a few arrays).
_BLOCK_CELLS = 4_000_000


# --------------------------------------------------------------------------- holdout


@dataclass(frozen=True)
class HoldoutRules:
    """What makes a labelled row fit to judge a model on."""

    as_of: pd.Timestamp  # labels known at this instant (label_time <= as_of) count
    train_end: pd.Timestamp | None  # newest training row of any candidate; None: unknown
    maturity_days: int = 30  # rows newer than as_of - maturity have immature labels
    min_week_coverage: float = 0.95  # weeks with fewer labelled rows than this are dropped

    @property
    def mature_until(self) -> pd.Timestamp:
        return self.as_of - pd.Timedelta(days=self.maturity_days)


@dataclass(frozen=True)
class Exclusion:
    """Rows left out of the holdout for one reason."""

    reason: str
    rows: int


@dataclass(frozen=True)
class HoldoutSelection:
    """Which rows form the holdout (`mask`), and how many were left out and why, each row
    counted once under its first reason."""

    mask: np.ndarray
    exclusions: tuple[Exclusion, ...]
    rules: HoldoutRules

    @property
    def rows(self) -> int:
        return int(self.mask.sum())

    def exclusion_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"reason": [e.reason for e in self.exclusions],
                             "rows": [e.rows for e in self.exclusions]})


def week_start(times: pd.Series) -> pd.Series:
    """Monday 00:00 UTC of each timestamp's week."""
    t = pd.to_datetime(times, utc=True)
    return (t - pd.to_timedelta(t.dt.day_of_week, unit="D")).dt.floor("D")


def select_holdout(rows: pd.DataFrame, rules: HoldoutRules) -> HoldoutSelection:
    """The matured holdout among `rows` (event_time, label_time (NaT: none), scored (bool: every
    candidate scored it)). Reasons, in the order a row is charged to: in a training window,
    not scored by every candidate, labels immature (event after as_of − maturity), no label
    known as of as_of, in a week whose label coverage is below the threshold."""
    event = pd.to_datetime(rows["event_time"], utc=True)
    label_time = pd.to_datetime(rows["label_time"], utc=True)
    n = len(rows)
    left = np.ones(n, dtype=bool)
    exclusions: list[Exclusion] = []

    def drop(reason: str, hit: np.ndarray) -> None:
        charged = left & hit
        exclusions.append(Exclusion(reason, int(charged.sum())))
        left[charged] = False

    if rules.train_end is not None:
        drop("inside a candidate's training window",
             (event <= rules.train_end).to_numpy())
    drop("not scored by every candidate", ~rows["scored"].to_numpy(dtype=bool))
    drop(f"labels immature (event after {rules.mature_until:%Y-%m-%d %H:%M} UTC, i.e. "
         f"within {rules.maturity_days} days of the as-of time)",
         (event > rules.mature_until).to_numpy())
    known = (label_time.notna() & (label_time <= rules.as_of)).to_numpy()
    week = week_start(event)
    coverage = pd.Series(known[left]).groupby(week[left].to_numpy()).mean()
    drop(f"no label known as of {rules.as_of:%Y-%m-%d %H:%M} UTC", ~known)
    low = coverage[coverage < rules.min_week_coverage].index
    drop(f"in a week with label coverage below {rules.min_week_coverage:.0%}",
         week.isin(low).to_numpy())
    return HoldoutSelection(left, tuple(exclusions), rules)


# --------------------------------------------------------------------------- metrics


def metric_names() -> tuple[str, ...]:
    return ("roc_auc", "pr_auc", *(f"recall_at_fpr_{f:g}" for f in RECALL_FPRS),
            "precision_at_k", "brier")


def metric_label(name: str, capacity: int | None = None) -> str:
    """How a metric is named on screen and in reports."""
    if name.startswith("recall_at_fpr_"):
        return f"Recall at {float(name.rsplit('_', 1)[1]):.1%} false-positive rate"
    labels = {"roc_auc": "ROC AUC", "pr_auc": "PR AUC (average precision)",
              "precision_at_k": (f"Precision in the top {capacity} per day" if capacity
                                 else "Precision at daily capacity"),
              "brier": "Brier score (lower is better)"}
    return labels.get(name, name)


def daily_top_k(score: np.ndarray, day: np.ndarray, k: int) -> np.ndarray:
    """Rows a team reviewing `k` cases a day would see: each day's `k` highest scores (ties
    broken by row order)."""
    if k < 1:
        raise ValidationError(f"Daily review capacity must be at least 1, got {k}")
    frame = pd.DataFrame({"day": np.asarray(day), "neg": -np.asarray(score, dtype=float)})
    order = frame.sort_values(["day", "neg"], kind="mergesort").index.to_numpy()
    position = frame.loc[order].groupby("day", sort=False).cumcount().to_numpy()
    out = np.zeros(len(frame), dtype=bool)
    out[order] = position < k
    return out


def point_metrics(y: np.ndarray, score: np.ndarray, reviewed: np.ndarray) -> dict[str, float]:
    """Every metric of `metric_names()` from scikit-learn, on all rows."""
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        roc_auc_score,
        roc_curve,
    )

    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    both = 0 < y.sum() < len(y)
    out = {"roc_auc": float(roc_auc_score(y, score)) if both else np.nan,
           "pr_auc": float(average_precision_score(y, score)) if y.any() else np.nan}
    if both:
        fpr, tpr, _ = roc_curve(y, score)
    for f in RECALL_FPRS:
        out[f"recall_at_fpr_{f:g}"] = float(tpr[fpr <= f].max()) if both else np.nan
    out["precision_at_k"] = float(y[reviewed].mean()) if reviewed.any() else np.nan
    out["brier"] = float(brier_score_loss(y, score))
    return out


def resample_weights(n: int, n_resamples: int, seed: int, start: int = 0,
                     stop: int | None = None) -> np.ndarray:
    """Bootstrap resamples `start:stop` as counts per row (resamples x n); resample i is the
    same whatever block it is drawn in."""
    stop = n_resamples if stop is None else stop
    out = np.empty((stop - start, n), dtype=np.float64)
    for i in range(start, stop):
        idx = np.random.default_rng([seed, i]).integers(0, n, size=n)
        out[i - start] = np.bincount(idx, minlength=n)
    return out


def weighted_metrics(y: np.ndarray, score: np.ndarray, weights: np.ndarray,
                     reviewed: np.ndarray) -> dict[str, np.ndarray]:
    """`metric_names()` for each row of `weights` (resamples x n), vectorised. Precision at k
    keeps each day's review queue of the full holdout (the decision being judged)."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    order = np.argsort(-score, kind="mergesort")
    s, yy, wo = score[order], y[order], w[:, order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # end of each run of equal scores
    tp = np.cumsum(wo * yy, axis=1)[:, last]
    fp = np.cumsum(wo * (1.0 - yy), axis=1)[:, last]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / tp[:, -1:]
        fpr = fp / fp[:, -1:]
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    zero = np.zeros((len(w), 1))
    tpr0, fpr0 = np.hstack([zero, tpr]), np.hstack([zero, fpr])
    out = {"roc_auc": np.sum(np.diff(fpr0, axis=1) * (tpr0[:, 1:] + tpr0[:, :-1]) / 2, axis=1),
           "pr_auc": np.sum(np.diff(tpr0, axis=1) * precision, axis=1)}
    for f in RECALL_FPRS:
        out[f"recall_at_fpr_{f:g}"] = np.where(fpr0 <= f, tpr0, -np.inf).max(axis=1)
    rw = w[:, np.asarray(reviewed, dtype=bool)]
    with np.errstate(invalid="ignore", divide="ignore"):
        out["precision_at_k"] = (rw * y[reviewed]).sum(axis=1) / rw.sum(axis=1)
        out["brier"] = (w * (score - y) ** 2).sum(axis=1) / w.sum(axis=1)
    bad = (tp[:, -1] == 0) | (fp[:, -1] == 0)  # a resample with one class only
    for name in ("roc_auc", "pr_auc", *(f"recall_at_fpr_{f:g}" for f in RECALL_FPRS)):
        out[name] = np.where(bad, np.nan, out[name])
    return out


@dataclass(frozen=True)
class MetricEstimate:
    """One metric for one model (or a paired difference `challenger − reference`), with its
    bootstrap percentile interval."""

    metric: str
    model: str
    estimate: float
    low: float
    high: float
    versus: str | None = None  # set for differences: the reference model


@dataclass(frozen=True)
class MetricsResult:
    """Metrics per model and paired differences against the reference, on one holdout."""

    estimates: tuple[MetricEstimate, ...]
    reference: str
    rows: int
    positives: int
    capacity: int
    n_resamples: int
    seed: int
    level: float = 0.95

    def frame(self) -> pd.DataFrame:
        """Tidy rows: model, versus (empty for plain metrics), metric, label, estimate, low,
        high."""
        return pd.DataFrame([{"model": e.model, "versus": e.versus or "", "metric": e.metric,
                              "label": metric_label(e.metric, self.capacity),
                              "estimate": e.estimate, "ci_low": e.low, "ci_high": e.high}
                             for e in self.estimates])

    def get(self, model: str, metric: str, versus: str | None = None) -> MetricEstimate:
        for e in self.estimates:
            if e.model == model and e.metric == metric and e.versus == versus:
                return e
        raise KeyError((model, metric, versus))


def bootstrap_metrics(y: np.ndarray, scores: Mapping[str, np.ndarray], day: np.ndarray, *,
                      capacity: int, n_resamples: int = 200, seed: int = 7,
                      reference: str | None = None, level: float = 0.95) -> MetricsResult:
    """Metrics for each model with percentile intervals from `n_resamples` seeded resamples,
    and for each other model the paired difference to `reference` (default: the first)."""
    if not scores:
        raise ValidationError("Nothing to compare: no model scores given")
    y = np.asarray(y, dtype=int)
    n = len(y)
    if n == 0:
        raise ValidationError("The holdout is empty; widen the as-of date or the maturity rules")
    if n_resamples < 1:
        raise ValidationError(f"Bootstrap resamples must be at least 1, got {n_resamples}")
    models = list(scores)
    reference = reference or models[0]
    if reference not in scores:
        raise ValidationError(f"Reference model {reference!r} is not among {models}")
    reviewed = {m: daily_top_k(scores[m], day, capacity) for m in models}
    names = metric_names()
    draws = {m: {k: np.empty(n_resamples) for k in names} for m in models}
    block = max(1, _BLOCK_CELLS // max(n, 1))
    for start in range(0, n_resamples, block):
        stop = min(start + block, n_resamples)
        w = resample_weights(n, n_resamples, seed, start, stop)
        for m in models:
            for k, v in weighted_metrics(y, scores[m], w, reviewed[m]).items():
                draws[m][k][start:stop] = v
    tail = (1 - level) / 2 * 100
    estimates: list[MetricEstimate] = []

    def interval(values: np.ndarray) -> tuple[float, float]:
        if np.isnan(values).all():
            return np.nan, np.nan
        low, high = np.nanpercentile(values, [tail, 100 - tail])
        return float(low), float(high)

    point = {m: point_metrics(y, scores[m], reviewed[m]) for m in models}
    for m in models:
        for k in names:
            estimates.append(MetricEstimate(k, m, point[m][k], *interval(draws[m][k])))
    for m in models:
        if m == reference:
            continue
        for k in names:
            estimates.append(MetricEstimate(
                k, m, point[m][k] - point[reference][k],
                *interval(draws[m][k] - draws[reference][k]), versus=reference))
    return MetricsResult(tuple(estimates), reference, n, int(y.sum()), capacity, n_resamples,
                         seed, level)


def calibration_table(y: np.ndarray, score: np.ndarray, model: str,
                      n_bins: int = 10) -> pd.DataFrame:
    """sklearn's calibration curve (uniform bins; empty bins dropped) with rows per bin:
    model, mean_predicted, observed_rate, rows."""
    from sklearn.calibration import calibration_curve

    observed, predicted = calibration_curve(y, score, n_bins=n_bins, strategy="uniform")
    bins = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.bincount(np.searchsorted(bins[1:-1], score), minlength=n_bins)
    return pd.DataFrame({"model": model, "mean_predicted": predicted,
                         "observed_rate": observed, "rows": counts[counts > 0]})


def period_metrics(y: np.ndarray, scores: Mapping[str, np.ndarray], event_time: pd.Series,
                   freq: str = "W") -> pd.DataFrame:
    """ROC AUC and PR AUC per week (`W`, weeks start Monday) or day (`D`) for each model:
    period_start, model, roc_auc, pr_auc, rows, fraud. A period with one class has NaN AUCs."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    t = pd.to_datetime(event_time, utc=True).reset_index(drop=True)
    period = week_start(t) if freq == "W" else t.dt.floor("D")
    y = np.asarray(y, dtype=int)
    rows = []
    for start, idx in pd.Series(np.arange(len(t))).groupby(period.to_numpy()):
        pos = idx.to_numpy()
        yy = y[pos]
        both = 0 < yy.sum() < len(yy)
        for m, s in scores.items():
            ss = np.asarray(s, dtype=float)[pos]
            rows.append({"period_start": start, "model": m,
                         "roc_auc": float(roc_auc_score(yy, ss)) if both else np.nan,
                         "pr_auc": float(average_precision_score(yy, ss)) if both else np.nan,
                         "rows": len(pos), "fraud": int(yy.sum())})
    return pd.DataFrame(rows, columns=["period_start", "model", "roc_auc", "pr_auc", "rows",
                                       "fraud"])


# --------------------------------------------------------------------------- explanations


def attribution_summary(shap_values: np.ndarray, feature_values: pd.DataFrame,
                        features: Sequence[str], numeric: Sequence[str],
                        min_rho: float = 0.1) -> pd.DataFrame:
    """Per feature: mean |SHAP|, mean SHAP, rank, and direction: +1 when higher values raise
    the score, -1 when they lower it (the sign of the Spearman correlation of value and SHAP
    when |rho| >= `min_rho`), 0 for no clear direction, NaN for categories."""
    values = np.asarray(shap_values, dtype=float)
    rows = []
    for j, name in enumerate(features):
        direction = np.nan
        if name in numeric and len(values):
            direction = 0.0
            x = pd.to_numeric(feature_values[name], errors="coerce").to_numpy(dtype=float)
            ok = ~np.isnan(x)
            if ok.sum() > 2 and np.ptp(x[ok]) > 0 and np.ptp(values[ok, j]) > 0:
                rho = pd.Series(x[ok]).corr(pd.Series(values[ok, j]), method="spearman")
                if np.isfinite(rho) and abs(rho) >= min_rho:
                    direction = float(np.sign(rho))
        rows.append({"feature": name,
                     "mean_abs_shap": float(np.abs(values[:, j]).mean()) if len(values)
                     else np.nan,
                     "mean_shap": float(values[:, j].mean()) if len(values) else np.nan,
                     "direction": direction})
    out = pd.DataFrame(rows).sort_values(["mean_abs_shap", "feature"], ascending=[False, True],
                                         kind="mergesort", na_position="last")
    out["rank"] = np.arange(1, len(out) + 1)
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class ImportanceComparison:
    """Two models' global attributions on one cohort: Spearman correlation of their mean |SHAP|
    over the shared features, and per feature both ranks and directions."""

    reference: str
    challenger: str
    segment: str | None
    segment_value: str | None
    spearman: float
    p_value: float
    rows: int
    table: pd.DataFrame = field(repr=False, compare=False)

    def most_different(self, n: int = 5) -> pd.DataFrame:
        """Features whose direction flips first, then by how far their rank moves."""
        t = self.table
        return t.sort_values(["direction_differs", "rank_shift", "importance"],
                             ascending=[False, False, False], kind="mergesort").head(n)


def compare_importance(reference: pd.DataFrame, challenger: pd.DataFrame, *,
                       reference_id: str, challenger_id: str, rows: int,
                       segment: str | None = None,
                       segment_value: str | None = None) -> ImportanceComparison:
    """Join two `attribution_summary` frames on feature. Table: feature, mean_abs_reference,
    mean_abs_challenger, rank_reference, rank_challenger, rank_shift, direction_reference,
    direction_challenger, direction_differs, importance (the larger mean |SHAP|)."""
    from scipy.stats import spearmanr

    cols = ["feature", "mean_abs_shap", "rank", "direction"]
    t = reference[cols].merge(challenger[cols], on="feature", suffixes=("_reference",
                                                                       "_challenger"))
    t = t.rename(columns={"mean_abs_shap_reference": "mean_abs_reference",
                          "mean_abs_shap_challenger": "mean_abs_challenger"})
    # ranks within the shared features, so a feature one model lacks moves nothing
    for side in ("reference", "challenger"):
        t[f"rank_{side}"] = t[f"mean_abs_{side}"].rank(ascending=False, method="first")
        t[f"rank_{side}"] = t[f"rank_{side}"].astype(int)
    t["rank_shift"] = (t["rank_challenger"] - t["rank_reference"]).abs()
    t["direction_differs"] = (t["direction_reference"] * t["direction_challenger"] < 0)
    t["importance"] = t[["mean_abs_reference", "mean_abs_challenger"]].max(axis=1)
    t = t.sort_values("rank_reference", kind="mergesort").reset_index(drop=True)
    rho, p = np.nan, np.nan
    ok = t[["mean_abs_reference", "mean_abs_challenger"]].notna().all(axis=1)
    if ok.sum() >= 3:
        res = spearmanr(t.loc[ok, "mean_abs_reference"], t.loc[ok, "mean_abs_challenger"])
        rho, p = float(res.statistic), float(res.pvalue)
    return ImportanceComparison(reference_id, challenger_id, segment, segment_value, rho, p,
                                rows, t)
