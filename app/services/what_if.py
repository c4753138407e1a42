"""What-if on a case: change one feature's value (within the schema's type and categories),
then score and explain the edited row with every registered model, beside the original.

Nothing is written anywhere: the edited row lives only in this call (the page audits the
what-if itself). No Streamlit, no SQL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from app.services.case import CaseExplanation
from explainers.errors import ValidationError
from explainers.frames import explain_frame
from explainers.model import LoadedModel
from explainers.schema import Feature

__all__ = ["WhatIfResult", "checked_value", "edited_row", "what_if"]


@dataclass(frozen=True)
class WhatIfResult:
    """One model's case before and after the edit (None: the model lacks the feature)."""

    model_id: str
    before: CaseExplanation
    after: CaseExplanation
    uses_feature: bool


def checked_value(feature: Feature, value: Any) -> Any:
    """`value` as the feature's type, or a ValidationError naming what is allowed."""
    if value is None:
        return None  # missing is always allowed: the models handle it
    if feature.is_categorical:
        if feature.categories and str(value) not in feature.categories:
            raise ValidationError(f"{feature.name} must be one of "
                                  f"{', '.join(feature.categories)}; got {value!r}")
        return str(value)
    if feature.dtype == "bool":
        if isinstance(value, bool):
            return value
        raise ValidationError(f"{feature.name} is yes/no; got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{feature.name} is a number; got {value!r}") from None
    if not math.isfinite(number):
        raise ValidationError(f"{feature.name} must be a finite number")
    if feature.dtype == "int":
        if not number.is_integer():
            raise ValidationError(f"{feature.name} is a whole number; got {value!r}")
        return int(number)
    return number


def edited_row(row: pd.DataFrame, feature: Feature, value: Any) -> pd.DataFrame:
    """A copy of the one-row transaction with `feature` set to the checked `value`."""
    if len(row) != 1:
        raise ValidationError("A what-if edits exactly one transaction")
    if feature.name not in row.columns:
        raise ValidationError(f"The transaction has no column {feature.name}")
    checked = checked_value(feature, value)
    out = row.copy()
    if feature.is_categorical:
        column = pd.Series([checked], index=out.index, dtype=object)
    elif feature.dtype == "bool" and checked is not None:
        column = pd.Series([checked], index=out.index, dtype=bool)
    elif feature.dtype == "int" and checked is not None and row[feature.name].dtype.kind == "i":
        column = pd.Series([checked], index=out.index, dtype=row[feature.name].dtype)
    else:  # numbers (and a missing value) as floats, which every numeric dtype accepts
        column = pd.Series([math.nan if checked is None else float(checked)], index=out.index)
    out[feature.name] = column
    return out


def what_if(models: Sequence[LoadedModel], row: pd.DataFrame, feature: Feature,
            value: Any) -> list[WhatIfResult]:
    """Score and explain the original and the edited row with each model."""
    changed = edited_row(row, feature, value)
    txn = str(row["transaction_id"].iloc[0])
    out = []
    for model in models:
        before = CaseExplanation(model.key, txn, explain_frame(model, row), "computed")
        after = CaseExplanation(model.key, txn, explain_frame(model, changed), "computed")
        out.append(WhatIfResult(model.key, before, after, feature.name in model.schema.names))
    return out
