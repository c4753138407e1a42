"""Reason codes: a row's strongest SHAP contributions in plain words from the feature catalog."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from explainers.explanation import ExplainError, Explanation
from explainers.schema import FeatureSchema

__all__ = [
    "DIRECTIONS",
    "CatalogEntry",
    "FeatureCatalog",
    "ReasonCode",
    "bool_statement",
    "format_value",
    "reason_codes",
]

DIRECTIONS = ("fraud", "legit")
MISSING_TEXT = "missing"
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}
SINGULAR_UNITS = {"seconds": "second", "minutes": "minute", "hours": "hour", "days": "day"}

Value = float | str | bool | None


@dataclass(frozen=True)
class CatalogEntry:
    """What analysts are told about one feature: its meaning, unit and type."""

    name: str
    description: str = ""
    unit: str | None = None
    dtype: str = "float"


@dataclass(frozen=True)
class FeatureCatalog:
    """Descriptions and units of the features a model uses, looked up by name."""

    entries: tuple[CatalogEntry, ...]
    _by_name: dict[str, CatalogEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name: e for e in self.entries})

    @classmethod
    def from_schema(cls, schema: FeatureSchema) -> FeatureCatalog:
        """The catalog a registered model carries: its schema's descriptions, units and types."""
        return cls(tuple(CatalogEntry(f.name, f.description, f.unit, f.dtype)
                         for f in schema.features))

    def get(self, name: str) -> CatalogEntry | None:
        return self._by_name.get(name)


@dataclass(frozen=True)
class ReasonCode:
    """One reason a case scored as it did: the feature, its value, its SHAP and the sentence."""

    feature: str
    value: Value
    shap: float
    text: str


def _number(value: float) -> str:
    if float(value).is_integer():
        return f"{value:,.0f}"
    if abs(value) < 0.01:
        return f"{value:.2g}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def format_value(value: Value, unit: str | None = None, dtype: str = "float") -> str:
    """A value as a sentence needs it: $1,234.00, 8.3x, 12 minutes, yes/no, a level, missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING_TEXT
    if dtype == "bool" or isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    number = float(value)
    if unit in CURRENCY_SYMBOLS:
        sign = "-" if number < 0 else ""
        return f"{sign}{CURRENCY_SYMBOLS[unit]}{abs(number):,.2f}"
    if unit is not None and len(unit) == 3 and unit.isalpha() and unit.isupper():
        return f"{number:,.2f} {unit}"  # another ISO currency code
    text = _number(number)
    if unit == "count":  # "7 transactions in the last hour", not "7 count"
        return text
    if unit in ("x", "%"):
        return f"{text}{unit}"
    if unit:
        word = SINGULAR_UNITS.get(unit, unit) if number == 1 else unit
        return f"{text} {word}"
    return text


def _raw_value(column: pd.Series, entry: CatalogEntry | None) -> Value:
    value: Any = column.iloc[0]
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(column.dtype, pd.CategoricalDtype) or (entry and entry.dtype == "category"):
        return str(value)
    if entry is not None and entry.dtype == "bool":
        return bool(value)
    return float(value)


def bool_statement(description: str, value: bool) -> str:
    """A yes/no feature as one plain statement, never "…never seen…: no": its description
    (written as the statement that holds when true) or, when false, that statement denied."""
    text = description.rstrip(". ")
    if value:
        return text
    return f"Not the case that {text[:1].lower()}{text[1:]}" if text else "no"


def _sentence(name: str, value: Value, shap: float, entry: CatalogEntry | None) -> str:
    if entry is not None and entry.dtype == "bool" and entry.description and value is not None:
        return f"{bool_statement(entry.description, bool(value))} ({shap:+.2f} log-odds)"
    shown = format_value(value, entry.unit if entry else None, entry.dtype if entry else "float")
    if entry is not None and entry.description:
        return f"{entry.description}: {shown} ({shap:+.2f} log-odds)"
    return f"{name} = {shown} ({shap:+.2f} log-odds)"


def reason_codes(expl_row: Explanation, catalog: FeatureCatalog, *, top_n: int = 5,
                 direction: str = "fraud") -> list[ReasonCode]:
    """The top_n features pushing one case towards fraud (positive SHAP) or legit (negative)."""
    if len(expl_row) != 1:
        raise ExplainError(f"Reason codes explain one row; got {len(expl_row)} (use .row(i))")
    if direction not in DIRECTIONS:
        raise ExplainError(f"Unknown direction {direction!r}; use one of {', '.join(DIRECTIONS)}")
    shap = expl_row.values[0]
    signed = shap if direction == "fraud" else -shap
    order = [int(j) for j in np.argsort(-signed, kind="stable") if signed[j] > 0][:max(top_n, 0)]
    codes = []
    for j in order:
        name = expl_row.feature_names[j]
        entry = catalog.get(name)
        value = _raw_value(expl_row.data.iloc[:, j], entry)
        text = _sentence(name, value, float(shap[j]), entry)
        codes.append(ReasonCode(name, value, float(shap[j]), text))
    return codes
