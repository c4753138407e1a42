"""Monitoring statistics, pure: weekly performance from score bins with Poisson-bootstrap
intervals, population stability (PSI), and how far a week's labels have matured.

The lake aggregates each week into score bins (rows, known fraud, known legit per bin, bins
ordered by score), so a million rows become a few hundred numbers. A bin is a run of tied
scores: with one bin per distinct score the metrics equal scikit-learn's on the rows
(`tests/explainers/test_monitoring_stats.py` pins that). Resampling a bin's counts as Poisson
draws is the Poisson bootstrap of its rows. Frozen dataclasses out; no IO.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "METRICS",
    "BinnedWeek",
    "LabelMaturity",
    "MetricInterval",
    "binned_metrics",
    "bootstrap_week",
    "expected_final_recall",
    "label_maturity",
    "psi",
]

METRICS = ("roc_auc", "pr_auc", "recall_at_k", "precision_at_k")
PSI_EPS = 1e-4  # share floor for an empty bin, so an empty bin adds a large but finite term


@dataclass(frozen=True)
class BinnedWeek:
    """One week's score bins, highest score first: rows, known fraud, known legit per bin."""

    rows: np.ndarray
    fraud: np.ndarray
    legit: np.ndarray

    def __post_init__(self) -> None:
        shapes = {np.shape(self.rows), np.shape(self.fraud), np.shape(self.legit)}
        if len(shapes) != 1:
            raise ValueError("rows, fraud and legit need one count per bin each")
        if np.any(np.asarray(self.fraud) + np.asarray(self.legit) > np.asarray(self.rows)):
            raise ValueError("a bin cannot hold more labelled rows than rows")

    @classmethod
    def from_rows(cls, score: np.ndarray, label: np.ndarray) -> BinnedWeek:
        """One bin per distinct score; `label` is 1, 0 or NaN (not known yet)."""
        score = np.asarray(score, dtype=float)
        label = np.asarray(label, dtype=float)
        uniq, inv = np.unique(-score, return_inverse=True)
        n = len(uniq)
        return cls(np.bincount(inv, minlength=n).astype(float),
                   np.bincount(inv, weights=(label == 1).astype(float), minlength=n),
                   np.bincount(inv, weights=(label == 0).astype(float), minlength=n))


@dataclass(frozen=True)
class MetricInterval:
    """A metric's point estimate and its bootstrap interval; NaN estimate = not measurable."""

    metric: str
    estimate: float
    low: float
    high: float

    @property
    def measurable(self) -> bool:
        return not math.isnan(self.estimate)


def binned_metrics(rows: np.ndarray, fraud: np.ndarray, legit: np.ndarray,
                   k: float) -> dict[str, np.ndarray]:
    """ROC AUC, PR AUC (average precision), recall and precision in the top `k` rows by score,
    for each row of the (resamples x bins) count arrays (1-D arrays are one resample). Labels
    count where known; the top k holds labelled and unlabelled rows alike, a boundary bin
    pro rata. NaN where the metric is not defined (no fraud, no legit, nothing labelled)."""
    n, tp_bin, fp_bin = (np.atleast_2d(np.asarray(a, dtype=float)) for a in (rows, fraud, legit))
    if n.shape[1] == 0:  # no scored rows at all (e.g. a model not scored in this window)
        return {m: np.full(len(n), np.nan) for m in
                ("roc_auc", "pr_auc", "recall_at_k", "precision_at_k")}
    tp, fp, seen = np.cumsum(tp_bin, 1), np.cumsum(fp_bin, 1), np.cumsum(n, 1)
    pos, neg = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, fpr = tp / pos, fp / neg
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        zero = np.zeros((len(n), 1))
        tpr0, fpr0 = np.hstack([zero, tpr]), np.hstack([zero, fpr])
        roc = np.sum(np.diff(fpr0, axis=1) * (tpr0[:, 1:] + tpr0[:, :-1]) / 2, axis=1)
        ap = np.sum(np.diff(tpr0, axis=1) * precision, axis=1)
        before = np.hstack([zero, seen[:, :-1]])
        share = np.clip((k - before) / n, 0.0, 1.0)  # of each bin inside the top k
        share = np.where(n > 0, share, 0.0)
        top_fraud = np.sum(share * tp_bin, axis=1)
        top_labelled = np.sum(share * (tp_bin + fp_bin), axis=1)
        recall = top_fraud / pos[:, 0]
        prec_k = np.where(top_labelled > 0, top_fraud / top_labelled, np.nan)
    one_class = (pos[:, 0] == 0) | (neg[:, 0] == 0)
    return {"roc_auc": np.where(one_class, np.nan, roc),
            "pr_auc": np.where(one_class, np.nan, ap),
            "recall_at_k": np.where(pos[:, 0] == 0, np.nan, recall),
            "precision_at_k": prec_k}


def bootstrap_week(week: BinnedWeek, k: float, *, n_resamples: int, seed: int,
                   level: float = 0.95) -> tuple[MetricInterval, ...]:
    """Every metric of METRICS with a percentile interval from `n_resamples` Poisson
    resamples of the bins' counts (labelled and unlabelled rows drawn separately)."""
    point = binned_metrics(week.rows, week.fraud, week.legit, k)
    rng = np.random.default_rng(seed)
    fraud = rng.poisson(np.broadcast_to(week.fraud, (n_resamples, len(week.fraud))))
    legit = rng.poisson(np.broadcast_to(week.legit, (n_resamples, len(week.legit))))
    unlabelled = np.asarray(week.rows) - np.asarray(week.fraud) - np.asarray(week.legit)
    other = rng.poisson(np.broadcast_to(unlabelled, (n_resamples, len(unlabelled))))
    boot = binned_metrics(fraud + legit + other, fraud, legit, k)
    alpha = (1.0 - level) / 2
    out = []
    for name in METRICS:
        est = float(point[name][0])
        draws = boot[name][~np.isnan(boot[name])]
        if math.isnan(est) or len(draws) == 0:
            out.append(MetricInterval(name, est, math.nan, math.nan))
            continue
        low, high = np.quantile(draws, [alpha, 1 - alpha])
        out.append(MetricInterval(name, est, float(low), float(high)))
    return tuple(out)


def psi(reference: np.ndarray, current: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index between two count vectors over the same bins:
    sum((c - r) * ln(c / r)) over shares, each share floored at `eps`. NaN when either side
    has no rows."""
    r = np.asarray(reference, dtype=float)
    c = np.asarray(current, dtype=float)
    if r.shape != c.shape:
        raise ValueError("reference and current need the same bins")
    if r.sum() <= 0 or c.sum() <= 0:
        return math.nan
    rs = np.maximum(r / r.sum(), eps)
    cs = np.maximum(c / c.sum(), eps)
    return float(np.sum((cs - rs) * np.log(cs / rs)))


@dataclass(frozen=True)
class LabelMaturity:
    """How fraud labels arrive: the delay (days from event to label) of every fraud label of
    the mature weeks, sorted. `known_share(age)` is the share of a week's eventual fraud labels
    known when its transactions are `age` days old."""

    delays_days: tuple[float, ...]
    horizon_days: float

    @property
    def measured(self) -> bool:
        return len(self.delays_days) > 0

    def known_share(self, age_days: np.ndarray) -> np.ndarray:
        age = np.asarray(age_days, dtype=float)
        if not self.measured:
            return np.where(age >= self.horizon_days, 1.0, np.nan)
        d = np.asarray(self.delays_days)
        return np.searchsorted(d, age, side="right") / len(d)

    def completeness(self, age_days: np.ndarray, rows: np.ndarray) -> float:
        """The expected share of a week's eventual fraud labels known now: the known share at
        each day's age, weighted by that day's transactions."""
        rows = np.asarray(rows, dtype=float)
        if rows.sum() <= 0:
            return math.nan
        return float(np.sum(self.known_share(age_days) * rows) / rows.sum())


def label_maturity(delays_days: np.ndarray, horizon_days: float) -> LabelMaturity:
    """The delay distribution from fraud labels of transactions older than `horizon_days`
    (whose labels have all arrived); delays beyond the horizon are kept as they are."""
    d = np.sort(np.asarray(delays_days, dtype=float))
    return LabelMaturity(tuple(float(x) for x in d[~np.isnan(d)]), float(horizon_days))


def expected_final_recall(known_fraud: float, caught_known: float, completeness: float,
                          reference_recall: float) -> tuple[float, float]:
    """(expected final fraud count, expected final recall at capacity) for a week whose
    labels are `completeness` matured: the fraud still to come is assumed caught at the
    reference recall. NaN where it cannot be estimated."""
    if not completeness > 0 or math.isnan(completeness):
        return math.nan, math.nan
    expected = known_fraud / completeness
    if expected <= 0:
        return expected, math.nan
    late = max(expected - known_fraud, 0.0)
    rate = reference_recall if not math.isnan(reference_recall) else (
        caught_known / known_fraud if known_fraud else math.nan)
    return expected, float((caught_known + late * rate) / expected)
