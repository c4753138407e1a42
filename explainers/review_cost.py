"""What a model costs on a holdout under daily review capacity: missed fraud at its amount plus
reviews at a unit price, the threshold that minimises it, and the cases two models decide
differently. numpy/pandas in, frozen dataclasses and tidy frames out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from explainers.errors import ValidationError

__all__ = ["CostModel", "ThresholdChoice", "choose_threshold", "cost_curve", "disagreements"]


@dataclass(frozen=True)
class CostModel:
    """Missed fraud costs its amount; each review costs `review_cost`; at most `capacity`
    reviews a day, the highest scores first. Reviewed fraud is caught."""

    review_cost: float = 5.0
    capacity: int = 20

    def __post_init__(self) -> None:
        if self.review_cost < 0:
            raise ValidationError(f"Review cost must not be negative, got {self.review_cost}")
        if self.capacity < 1:
            raise ValidationError(f"Daily review capacity must be at least 1, got "
                                  f"{self.capacity}")


@dataclass(frozen=True)
class ThresholdChoice:
    """A model's cost-minimising threshold on the holdout, and what it costs there."""

    model: str
    threshold: float  # flag when score >= threshold
    flagged: int  # rows at or above the threshold
    reviewed: int  # flagged rows within each day's capacity
    fraud_caught: int
    fraud_missed: int
    caught_usd: float
    missed_usd: float
    review_usd: float
    total_cost_usd: float
    days: int
    curve: pd.DataFrame = field(repr=False, compare=False)

    @property
    def cost_per_day_usd(self) -> float:
        return self.total_cost_usd / self.days if self.days else np.nan


def _threshold_grid(score: np.ndarray, max_points: int = 20_000) -> np.ndarray:
    grid = np.unique(score)
    if len(grid) > max_points:
        grid = np.unique(np.quantile(score, np.linspace(0, 1, max_points)))
    return np.r_[grid, np.inf][::-1]  # descending; inf flags nothing


def cost_curve(score: np.ndarray, y: np.ndarray, amount: np.ndarray, day: np.ndarray,
               cost: CostModel, thresholds: np.ndarray | None = None) -> pd.DataFrame:
    """Cost on the holdout at each threshold: threshold, flagged, reviewed, fraud_caught,
    caught_usd, missed_usd, review_usd, total_cost_usd (reviews capped per day)."""
    score = np.asarray(score, dtype=float)
    fraud_usd = np.asarray(amount, dtype=float) * np.asarray(y, dtype=float)
    y = np.asarray(y, dtype=int)
    grid = _threshold_grid(score) if thresholds is None else np.asarray(thresholds, float)
    flagged = np.zeros(len(grid), dtype=np.int64)
    reviewed = np.zeros(len(grid), dtype=np.int64)
    caught = np.zeros(len(grid))
    caught_n = np.zeros(len(grid), dtype=np.int64)
    for d in np.unique(day):
        on = np.asarray(day) == d
        order = np.argsort(-score[on], kind="mergesort")
        s = score[on][order]
        c_usd = np.r_[0.0, np.cumsum(fraud_usd[on][order])]
        c_n = np.r_[0, np.cumsum(y[on][order])]
        n_at = np.searchsorted(-s, -grid, side="right")  # rows with score >= threshold
        take = np.minimum(n_at, cost.capacity)
        flagged += n_at
        reviewed += take
        caught += c_usd[take]
        caught_n += c_n[take]
    total_fraud = float(fraud_usd.sum())
    review_usd = reviewed * cost.review_cost
    missed = total_fraud - caught
    return pd.DataFrame({"threshold": grid, "flagged": flagged, "reviewed": reviewed,
                         "fraud_caught": caught_n, "fraud_missed": int(y.sum()) - caught_n,
                         "caught_usd": caught, "missed_usd": missed, "review_usd": review_usd,
                         "total_cost_usd": review_usd + missed})


def choose_threshold(model: str, score: np.ndarray, y: np.ndarray, amount: np.ndarray,
                     day: np.ndarray, cost: CostModel) -> ThresholdChoice:
    """The threshold with the lowest holdout cost (ties: the higher threshold, fewer flags)."""
    curve = cost_curve(score, y, amount, day, cost)
    best = curve.iloc[int(np.argmin(curve["total_cost_usd"].to_numpy()))]
    return ThresholdChoice(
        model=model, threshold=float(best["threshold"]), flagged=int(best["flagged"]),
        reviewed=int(best["reviewed"]), fraud_caught=int(best["fraud_caught"]),
        fraud_missed=int(best["fraud_missed"]), caught_usd=float(best["caught_usd"]),
        missed_usd=float(best["missed_usd"]), review_usd=float(best["review_usd"]),
        total_cost_usd=float(best["total_cost_usd"]), days=len(np.unique(day)), curve=curve)


def disagreements(cases: pd.DataFrame, reference: str, challenger: str,
                  thresholds: Mapping[str, float], limit: int = 200) -> pd.DataFrame:
    """Rows where exactly one of the two models flags (score >= its threshold), largest
    amount first. `cases` has transaction_id, event_time, amount_usd, is_fraud (NaN when not
    known) and one `score_<model>` column per model. Adds `flagged_by` (the model that flags)
    and keeps both scores as score_reference / score_challenger."""
    a = cases[f"score_{reference}"].to_numpy(dtype=float) >= thresholds[reference]
    b = cases[f"score_{challenger}"].to_numpy(dtype=float) >= thresholds[challenger]
    out = cases.loc[a != b, ["transaction_id", "event_time", "amount_usd", "is_fraud"]].copy()
    out["score_reference"] = cases.loc[a != b, f"score_{reference}"].to_numpy()
    out["score_challenger"] = cases.loc[a != b, f"score_{challenger}"].to_numpy()
    out["flagged_by"] = np.where(a[a != b], reference, challenger)
    out = out.sort_values(["amount_usd", "transaction_id"], ascending=[False, True],
                          kind="mergesort")
    return out.head(limit).reset_index(drop=True)
