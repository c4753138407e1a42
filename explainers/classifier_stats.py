"""A classifier at a threshold: ROC and PR curves, the confusion matrix (counts and USD) and
lift by score decile. Pure numpy; every number equals scikit-learn's (tests pin it).

One `threshold_table` holds exact counts at every distinct score (or at a quantile grid when
there are too many), so a threshold slider reads the confusion matrix from it without
touching the rows again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explainers.errors import ValidationError

__all__ = [
    "ClassifierStats",
    "Confusion",
    "classifier_stats",
    "confusion_at",
    "confusion_from_table",
    "decile_table",
    "pr_points",
    "roc_points",
    "threshold_table",
]

MAX_POINTS = 2_000  # thresholds kept in a table: enough for a smooth curve and a slider


@dataclass(frozen=True)
class Confusion:
    """The confusion matrix at `threshold` (flag when score >= threshold), in rows and USD."""

    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    tp_usd: float
    fp_usd: float
    tn_usd: float
    fn_usd: float

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")

    @property
    def false_positive_rate(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else float("nan")

    def frame(self) -> pd.DataFrame:
        """Two rows (actual fraud, actual legitimate) by flagged / passed, counts and USD."""
        return pd.DataFrame({
            "actual": ["fraud", "legitimate"],
            "flagged": [self.tp, self.fp], "passed": [self.fn, self.tn],
            "flagged (USD)": [self.tp_usd, self.fp_usd],
            "passed (USD)": [self.fn_usd, self.tn_usd]})


def _checked(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=np.int64)
    score = np.asarray(score, dtype=np.float64)
    if y.shape != score.shape or y.ndim != 1:
        raise ValidationError("Labels and scores must be two columns of the same length")
    if len(y) == 0:
        raise ValidationError("No labelled rows to judge the classifier on")
    if not np.isin(y, (0, 1)).all():
        raise ValidationError("Labels must be 0 or 1")
    if np.isnan(score).any():
        raise ValidationError("Scores must not be missing")
    return y, score


def threshold_table(y: np.ndarray, score: np.ndarray, amount: np.ndarray | None = None,
                    max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Exact counts when flagging score >= threshold, for thresholds in descending order
    (every distinct score, or a quantile grid of them): threshold, tp, fp, fn, tn and the
    same in USD. The first row (threshold +inf) flags nothing."""
    y, score = _checked(y, score)
    usd = np.zeros(len(y)) if amount is None else np.nan_to_num(np.asarray(amount, float))
    order = np.argsort(-score, kind="mergesort")
    s, yy, aa = score[order], y[order], usd[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last row of each run of ties
    if len(ends) > max_points:
        keep = np.unique(np.linspace(0, len(ends) - 1, max_points).round().astype(int))
        ends = ends[keep]
    tp = np.r_[0, np.cumsum(yy)[ends]]
    fp = np.r_[0, np.cumsum(1 - yy)[ends]]
    tp_usd = np.r_[0.0, np.cumsum(aa * yy)[ends]]
    fp_usd = np.r_[0.0, np.cumsum(aa * (1 - yy))[ends]]
    pos, neg = int(yy.sum()), int(len(yy) - yy.sum())
    pos_usd, neg_usd = float((aa * yy).sum()), float((aa * (1 - yy)).sum())
    cents = 6  # decimals kept: running sums subtracted from totals leave ~1e-12 residue
    return pd.DataFrame({"threshold": np.r_[np.inf, s[ends]], "tp": tp, "fp": fp,
                         "fn": pos - tp, "tn": neg - fp, "tp_usd": np.round(tp_usd, cents),
                         "fp_usd": np.round(fp_usd, cents),
                         "fn_usd": np.round(pos_usd - tp_usd, cents) + 0.0,
                         "tn_usd": np.round(neg_usd - fp_usd, cents) + 0.0})


def confusion_from_table(table: pd.DataFrame, threshold: float) -> Confusion:
    """The confusion matrix at the lowest tabled threshold >= `threshold` (exact when the
    table holds every distinct score)."""
    t = table["threshold"].to_numpy()
    at = int(np.flatnonzero(t >= threshold)[-1]) if (t >= threshold).any() else 0
    r = table.iloc[at]
    return Confusion(float(threshold), int(r["tp"]), int(r["fp"]), int(r["tn"]), int(r["fn"]),
                     float(r["tp_usd"]), float(r["fp_usd"]), float(r["tn_usd"]),
                     float(r["fn_usd"]))


def confusion_at(y: np.ndarray, score: np.ndarray, threshold: float,
                 amount: np.ndarray | None = None) -> Confusion:
    """The confusion matrix when flagging score >= threshold, straight from the rows."""
    y, score = _checked(y, score)
    usd = np.zeros(len(y)) if amount is None else np.nan_to_num(np.asarray(amount, float))
    flag = score >= threshold
    fraud = y == 1
    return Confusion(float(threshold), int((flag & fraud).sum()), int((flag & ~fraud).sum()),
                     int((~flag & ~fraud).sum()), int((~flag & fraud).sum()),
                     float(usd[flag & fraud].sum()), float(usd[flag & ~fraud].sum()),
                     float(usd[~flag & ~fraud].sum()), float(usd[~flag & fraud].sum()))


def roc_points(table: pd.DataFrame) -> pd.DataFrame:
    """fpr, tpr, threshold from a threshold table (scikit-learn's `roc_curve` with
    drop_intermediate=False when the table holds every distinct score)."""
    pos = table["tp"].iloc[-1]
    neg = table["fp"].iloc[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"fpr": table["fp"] / neg, "tpr": table["tp"] / pos,
                             "threshold": table["threshold"]})


def pr_points(table: pd.DataFrame) -> pd.DataFrame:
    """recall, precision, threshold from a threshold table (scikit-learn's
    `precision_recall_curve`, highest threshold first, without its (recall 0, precision 1)
    end point)."""
    t = table.iloc[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"recall": t["tp"] / table["tp"].iloc[-1],
                             "precision": t["tp"] / (t["tp"] + t["fp"]),
                             "threshold": t["threshold"]}).reset_index(drop=True)


def decile_table(y: np.ndarray, score: np.ndarray, amount: np.ndarray | None = None,
                 bins: int = 10) -> pd.DataFrame:
    """Rows ranked by score (ties by row order) and cut into `bins` equal groups, highest
    first: decile, rows, min_score, fraud, fraud_usd, precision, lift (precision over the base
    rate), cumulative precision and cumulative recall."""
    y, score = _checked(y, score)
    usd = np.zeros(len(y)) if amount is None else np.nan_to_num(np.asarray(amount, float))
    order = np.argsort(-score, kind="mergesort")
    group = np.minimum((np.arange(len(y)) * bins) // len(y), bins - 1)
    frame = pd.DataFrame({"decile": group + 1, "y": y[order], "s": score[order],
                          "usd": usd[order] * y[order]})
    out = frame.groupby("decile").agg(rows=("y", "size"), min_score=("s", "min"),
                                      fraud=("y", "sum"), fraud_usd=("usd", "sum"))
    base = y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["precision"] = out["fraud"] / out["rows"]
        out["lift"] = out["precision"] / base if base > 0 else np.nan
        out["cumulative_precision"] = out["fraud"].cumsum() / out["rows"].cumsum()
        out["cumulative_recall"] = out["fraud"].cumsum() / y.sum() if y.sum() else np.nan
    return out.reset_index()


@dataclass(frozen=True)
class ClassifierStats:
    """One model's classifier statistics on one set of labelled rows."""

    model_id: str
    rows: int
    fraud: int
    roc_auc: float
    pr_auc: float
    table: pd.DataFrame = field(repr=False, compare=False)
    deciles: pd.DataFrame = field(repr=False, compare=False)

    def confusion(self, threshold: float) -> Confusion:
        return confusion_from_table(self.table, threshold)

    def roc(self) -> pd.DataFrame:
        return roc_points(self.table)

    def pr(self) -> pd.DataFrame:
        return pr_points(self.table)


def _auc(table: pd.DataFrame) -> tuple[float, float]:
    roc = roc_points(table)
    pos = int(table["tp"].iloc[-1])
    if pos == 0 or int(table["fp"].iloc[-1]) == 0:
        return float("nan"), float("nan")
    fpr, tpr = roc["fpr"].to_numpy(), roc["tpr"].to_numpy()
    roc_auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    pr = pr_points(table)
    pr_auc = float(np.sum(np.diff(np.r_[0.0, pr["recall"].to_numpy()]) * pr["precision"]))
    return roc_auc, pr_auc


def classifier_stats(model_id: str, y: np.ndarray, score: np.ndarray,
                     amount: np.ndarray | None = None) -> ClassifierStats:
    """Curves, deciles and the AUCs (exact only when no grid was needed) for one model."""
    table = threshold_table(y, score, amount)
    roc_auc, pr_auc = _auc(table)
    y = np.asarray(y)
    return ClassifierStats(model_id, len(y), int(y.sum()), roc_auc, pr_auc, table,
                           decile_table(y, score, amount))
