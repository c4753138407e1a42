"""The feature schema contract: parse it, check frames against it, build model inputs from it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from explainers.errors import SchemaError, ValidationError

DTYPES = ("float", "int", "bool", "category")
SOURCES = ("stream", "batch", "static")
MISSING_CATEGORY = "__missing__"


@dataclass(frozen=True)
class Feature:
    """One model feature as the feature store serves it."""

    name: str
    dtype: str
    source: str = "static"
    description: str = ""
    unit: str | None = None
    categories: tuple[str, ...] | None = None

    @property
    def is_categorical(self) -> bool:
        return self.dtype == "category"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype, "source": self.source,
                               "description": self.description}
        if self.unit is not None:
            out["unit"] = self.unit
        if self.categories is not None:
            out["categories"] = list(self.categories)
        return out


@dataclass(frozen=True)
class ModelInput:
    """A frame ready for a model, and which rows had values the model never saw."""

    frame: pd.DataFrame
    flagged: np.ndarray  # bool per row: NaN/inf replaced or unseen category
    reasons: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class FeatureSchema:
    """The ordered features a model was trained on, with their types and meaning."""

    target: str
    features: tuple[Feature, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.is_categorical]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise SchemaError(f"Unknown feature {name!r}; the schema has: {', '.join(self.names)}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSchema:
        if not isinstance(data, Mapping):
            raise SchemaError("Feature schema must be a JSON object with 'target' and 'features'")
        missing = [k for k in ("target", "features") if k not in data]
        if missing:
            raise SchemaError(f"Feature schema is missing {', '.join(missing)}")
        feats = []
        seen: set[str] = set()
        for i, raw in enumerate(data["features"]):
            if not isinstance(raw, Mapping) or "name" not in raw or "dtype" not in raw:
                raise SchemaError(f"Feature #{i} needs at least 'name' and 'dtype'")
            name, dtype = str(raw["name"]), str(raw["dtype"])
            if not name.isidentifier():
                raise SchemaError(f"Feature name {name!r} must be a plain identifier")
            if name in seen:
                raise SchemaError(f"Feature {name!r} appears twice")
            seen.add(name)
            if dtype not in DTYPES:
                raise SchemaError(
                    f"Feature {name!r} has unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
            source = str(raw.get("source", "static"))
            if source not in SOURCES:
                raise SchemaError(f"Feature {name!r} has unknown source {source!r}; "
                                  f"use one of {', '.join(SOURCES)}")
            cats = raw.get("categories")
            if dtype == "category":
                if not cats:
                    raise SchemaError(f"Categorical feature {name!r} needs a 'categories' list")
                cats = tuple(str(c) for c in cats)
            elif cats is not None:
                raise SchemaError(f"Feature {name!r} is {dtype}, so it cannot have categories")
            feats.append(Feature(name, dtype, source, str(raw.get("description", "")),
                                 raw.get("unit"), cats))
        if not feats:
            raise SchemaError("Feature schema has no features")
        return cls(str(data["target"]), tuple(feats))

    @classmethod
    def from_json(cls, text: str | bytes) -> FeatureSchema:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"Feature schema is not valid JSON: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "features": [f.to_dict() for f in self.features]}

    def check_frame(self, df: pd.DataFrame) -> None:
        """Raise ValidationError naming every missing or mistyped feature column."""
        missing = [n for n in self.names if n not in df.columns]
        mistyped = []
        for f in self.features:
            if f.name not in df.columns:
                continue
            col = df[f.name]
            if f.is_categorical:
                ok = not pd.api.types.is_float_dtype(col) or col.isna().all()
            else:
                ok = (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)
                      or col.isna().all())
            if not ok:
                mistyped.append(f"{f.name} (expected {f.dtype}, got {col.dtype})")
        problems = []
        if missing:
            problems.append(f"missing feature columns: {', '.join(missing)}")
        if mistyped:
            problems.append(f"mistyped feature columns: {', '.join(mistyped)}")
        if problems:
            raise ValidationError("; ".join(problems))

    def model_input(self, df: pd.DataFrame,
                    levels: Mapping[str, Sequence[str]] | None = None) -> ModelInput:
        """Columns in schema order; numerics as float64 with +-inf made missing; categories fixed
        to `levels` (the model's own, where it knows them) or else the schema's, unseen levels
        made missing. Rows touched are flagged."""
        self.check_frame(df)
        flagged = np.zeros(len(df), dtype=bool)
        reasons: list[str] = []
        cols: dict[str, Any] = {}
        for f in self.features:
            col = df[f.name]
            if f.is_categorical:
                as_text = col.astype("string")
                own = list((levels or {}).get(f.name) or f.categories or ())
                known = np.asarray(as_text.isin(own), dtype=bool)
                unseen = np.asarray(as_text.notna(), dtype=bool) & ~known
                cat = pd.Categorical(as_text.where(known), categories=own)
                if unseen.any():
                    flagged |= unseen
                    reasons.append(f"{f.name}: {int(unseen.sum())} unseen level(s)")
                cols[f.name] = cat
            else:
                values = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy(copy=True)
                inf = np.isinf(values)
                if inf.any():
                    values[inf] = np.nan
                    flagged |= inf
                    reasons.append(f"{f.name}: {int(inf.sum())} infinite value(s)")
                cols[f.name] = values
        frame = pd.DataFrame(cols, index=df.index)
        return ModelInput(frame, flagged, tuple(reasons))


def parse_schema(data: Mapping[str, Any] | str | bytes | Sequence[Any]) -> FeatureSchema:
    """Parse a schema from a dict or JSON text."""
    if isinstance(data, (str, bytes)):
        return FeatureSchema.from_json(data)
    return FeatureSchema.from_dict(data)  # type: ignore[arg-type]
