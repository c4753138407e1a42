"""The one result type every SHAP backend returns and every chart or export takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from explainers.errors import FraudLensError

__all__ = ["OUTPUT_SPACES", "AdditivityError", "ExplainError", "Explanation"]

OUTPUT_SPACES = ("log-odds",)
BASE_VALUE_COLUMN = "base_value"


class ExplainError(FraudLensError):
    """An explanation cannot be computed or used as asked (bad backend, mode, feature or shape)."""


class AdditivityError(FraudLensError):
    """SHAP values do not add up to the model's margin, so they do not explain that model."""


@dataclass(frozen=True, eq=False)
class Explanation:
    """SHAP values in margin space for rows the model scored, with the values it saw.

    `values[i].sum() + base_value` is the model's margin for row i; `data` is the ModelInput
    frame (schema order, categoricals as pandas Categorical, missing as NaN).
    """

    values: np.ndarray
    base_value: float
    feature_names: tuple[str, ...]
    data: pd.DataFrame
    output_space: str = "log-odds"
    flagged: np.ndarray | None = None
    row_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2:
            raise ExplainError(f"SHAP values must be 2-D (rows, features), got {values.shape}")
        n, n_features = values.shape
        names = tuple(str(f) for f in self.feature_names)
        if len(names) != n_features:
            raise ExplainError(
                f"{n_features} SHAP columns but {len(names)} feature names; they must match")
        if list(self.data.columns) != list(names):
            raise ExplainError("Explanation data columns must be the feature names, in order")
        if len(self.data) != n:
            raise ExplainError(f"Explanation data has {len(self.data)} rows but SHAP values {n}")
        if self.output_space not in OUTPUT_SPACES:
            raise ExplainError(f"Unknown output space {self.output_space!r}; "
                               f"use one of {', '.join(OUTPUT_SPACES)}")
        flagged = (np.zeros(n, dtype=bool) if self.flagged is None
                   else np.asarray(self.flagged, dtype=bool).reshape(-1))
        if len(flagged) != n:
            raise ExplainError(f"flagged has {len(flagged)} entries for {n} rows")
        row_ids = None if self.row_ids is None else np.asarray(self.row_ids).reshape(-1)
        if row_ids is not None and len(row_ids) != n:
            raise ExplainError(f"row_ids has {len(row_ids)} entries for {n} rows")
        values.setflags(write=False)
        flagged.setflags(write=False)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "base_value", float(self.base_value))
        object.__setattr__(self, "feature_names", names)
        object.__setattr__(self, "flagged", flagged)
        object.__setattr__(self, "row_ids", row_ids)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __getitem__(self, rows: Any) -> Explanation:
        """A cohort: the same explanation on some rows (int, slice, bool mask or positions)."""
        if isinstance(rows, (int, np.integer)):
            rows = [int(rows)]
        if isinstance(rows, slice):
            positions = np.arange(len(self))[rows]
        else:
            arr = np.asarray(rows)
            if arr.dtype == bool:
                if arr.shape != (len(self),):
                    raise ExplainError(f"Row mask has {arr.shape} entries for {len(self)} rows")
                positions = np.flatnonzero(arr)
            else:
                positions = arr.astype(np.int64).reshape(-1)
                out_of_range = (positions >= len(self)) | (positions < -len(self))
                if out_of_range.any():
                    raise ExplainError(f"Row position out of range for {len(self)} rows")
        return Explanation(
            values=self.values[positions],
            base_value=self.base_value,
            feature_names=self.feature_names,
            data=self.data.iloc[positions],
            output_space=self.output_space,
            flagged=self.flagged[positions],
            row_ids=None if self.row_ids is None else self.row_ids[positions],
        )

    def row(self, i: int) -> Explanation:
        """One row as a one-row Explanation (what reason codes and waterfalls take)."""
        if not -len(self) <= i < len(self):
            raise ExplainError(f"Row {i} is out of range for {len(self)} rows")
        return self[[i]]

    def margin(self) -> np.ndarray:
        """Base value plus each row's SHAP sum: the margin the explanation accounts for."""
        return self.base_value + self.values.sum(axis=1)

    def column(self, feature: str) -> np.ndarray:
        """SHAP values of one feature across rows."""
        return self.values[:, self.feature_index(feature)]

    def feature_index(self, feature: str) -> int:
        """Position of a feature, with an error naming the known ones when it is unknown."""
        try:
            return self.feature_names.index(feature)
        except ValueError:
            raise ExplainError(f"Unknown feature {feature!r}; this explanation has: "
                               f"{', '.join(self.feature_names)}") from None

    def to_frame(self) -> pd.DataFrame:
        """Wide table (base_value, one column per feature), indexed by row id when known."""
        if BASE_VALUE_COLUMN in self.feature_names:
            raise ExplainError(f"A feature is named {BASE_VALUE_COLUMN!r}; rename it to export")
        out = pd.DataFrame(self.values, columns=list(self.feature_names))
        out.insert(0, BASE_VALUE_COLUMN, self.base_value)
        if self.row_ids is not None:
            out.index = pd.Index(self.row_ids, name="row_id")
        return out

    def check_additivity(self, margin: np.ndarray, tol: float = 1e-4) -> None:
        """Raise AdditivityError unless base + SHAP sums equal the model margin within tol."""
        margin = np.asarray(margin, dtype=np.float64).reshape(-1)
        if margin.shape != (len(self),):
            raise ExplainError(f"Margin has {margin.shape[0]} values for {len(self)} rows")
        if not len(self):
            return
        deviation = np.abs(self.margin() - margin)
        deviation[np.isnan(deviation)] = np.inf  # a NaN margin or SHAP sum never adds up
        worst = int(np.argmax(deviation))
        max_dev = float(deviation[worst])
        if max_dev > tol:
            where = f"row id {self.row_ids[worst]}" if self.row_ids is not None else f"row {worst}"
            raise AdditivityError(
                f"SHAP values do not add up to the model margin: max deviation {max_dev:.3g} "
                f"at {where} exceeds {tol:g}. The explanation does not match this model "
                "(wrong model version or input); recompute it from the scored features")
