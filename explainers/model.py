"""A loaded tree model behind one small interface, whatever its framework.

Frameworks sit in a dispatch table (`FRAMEWORKS`): each knows how to check its artifact's
format before parsing, parse it from bytes, build its native input and predict margins.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from explainers import artifact_check
from explainers.errors import ArtifactFormatError
from explainers.schema import MISSING_CATEGORY, FeatureSchema, ModelInput

PICKLE_MAGIC = b"\x80"


class Framework(Protocol):
    """What FraudLens needs from a tree-model library."""

    name: str
    extensions: tuple[str, ...]

    def check_format(self, data: bytes, filename: str) -> None: ...
    def load(self, data: bytes) -> Any: ...
    def dump(self, native: Any, filename: str) -> bytes: ...
    def native_input(self, native: Any, x: ModelInput, schema: FeatureSchema) -> Any: ...
    def margin(self, native: Any, data: Any) -> np.ndarray: ...
    def structure(self, native: Any) -> dict[str, int]: ...
    def gain_importance(self, native: Any, schema: FeatureSchema) -> dict[str, float]: ...
    def category_levels(self, native: Any) -> dict[str, tuple[str, ...]]: ...


def _refuse_pickle(data: bytes, filename: str) -> None:
    if data[:1] == PICKLE_MAGIC:
        raise ArtifactFormatError(
            f"{filename} is a Python pickle; FraudLens never unpickles. Export the model in "
            "its framework's own format (XGBoost .json/.ubj, CatBoost .cbm)")


class XGBoostFramework:
    name = "xgboost"
    extensions = (".json", ".ubj")

    def check_format(self, data: bytes, filename: str) -> None:
        """Refuse pickles, then check the bytes' structure (size, depth, declared lengths)."""
        _refuse_pickle(data, filename)
        if not filename.endswith((".json", ".ubj")):
            raise ArtifactFormatError(f"{filename}: XGBoost artifacts must be .json or .ubj")
        limits = artifact_check.limits_from(os.environ)
        artifact_check.check_size(data, filename, limits)
        # XGBoost picks its reader from the bytes, not the name: check what it will read
        if artifact_check.xgboost_reads_json(data):
            keys = artifact_check.check_json(data, filename, limits)
        else:
            keys = artifact_check.check_ubjson(data, filename, limits)
        if b"learner" not in keys:
            raise ArtifactFormatError(f"{filename} is not an XGBoost model (no 'learner')")

    def load(self, data: bytes) -> Any:
        import xgboost as xgb

        booster = xgb.Booster()
        booster.load_model(bytearray(data))
        return booster

    def dump(self, native: Any, filename: str) -> bytes:
        raw_format = "json" if filename.endswith(".json") else "ubj"
        return bytes(native.save_raw(raw_format=raw_format))

    def native_input(self, native: Any, x: ModelInput, schema: FeatureSchema) -> Any:
        import xgboost as xgb

        return xgb.DMatrix(x.frame, enable_categorical=True, missing=np.nan, nthread=-1)

    def margin(self, native: Any, data: Any) -> np.ndarray:
        return np.asarray(native.predict(data, output_margin=True), dtype=np.float64)

    def structure(self, native: Any) -> dict[str, int]:
        """Trees and the deepest tree's depth, read from the trees themselves (the saved
        training config does not keep the parameter a model was trained with)."""

        def depth(node: dict[str, Any]) -> int:
            kids = node.get("children") or []
            return 1 + max(depth(k) for k in kids) if kids else 0

        dumps = native.get_dump(dump_format="json")
        deepest = max((depth(json.loads(d)) for d in dumps), default=0)
        return {"trees": int(native.num_boosted_rounds()), "max_depth": deepest}

    def gain_importance(self, native: Any, schema: FeatureSchema) -> dict[str, float]:
        scores = native.get_score(importance_type="total_gain")
        total = sum(scores.values()) or 1.0
        return {n: float(scores.get(n, 0.0)) / total for n in schema.names}

    def category_levels(self, native: Any) -> dict[str, tuple[str, ...]]:
        """The levels each categorical feature had in training, in the model's own order
        (XGBoost re-codes inputs by name and refuses a level it never saw)."""
        try:
            pairs = native.get_categories(export_to_arrow=True).to_arrow()
        except (AttributeError, ValueError, TypeError):
            return {}  # a model saved without its categories: codes are used as they come
        return {name: tuple(str(v) for v in values.to_pylist())
                for name, values in pairs if values is not None}


class CatBoostFramework:
    name = "catboost"
    extensions = (".cbm",)

    def check_format(self, data: bytes, filename: str) -> None:
        """Refuse pickles, then check the header and that the declared core size fits."""
        _refuse_pickle(data, filename)
        if not filename.endswith(".cbm"):
            raise ArtifactFormatError(f"{filename}: CatBoost artifacts must be .cbm")
        limits = artifact_check.limits_from(os.environ)
        artifact_check.check_size(data, filename, limits)
        artifact_check.check_cbm(data, filename, limits)

    def load(self, data: bytes) -> Any:
        from catboost import CatBoostClassifier

        model = CatBoostClassifier()
        model.load_model(blob=data)
        return model

    def dump(self, native: Any, filename: str) -> bytes:
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.cbm")
            native.save_model(path, format="cbm")
            with open(path, "rb") as fh:
                return fh.read()

    def native_input(self, native: Any, x: ModelInput, schema: FeatureSchema) -> Any:
        from catboost import Pool

        return Pool(catboost_frame(x.frame, schema), cat_features=schema.categorical)

    def margin(self, native: Any, data: Any) -> np.ndarray:
        return np.asarray(native.predict(data, prediction_type="RawFormulaVal"), dtype=np.float64)

    def structure(self, native: Any) -> dict[str, int]:
        params = native.get_all_params()
        return {"trees": int(native.tree_count_), "max_depth": int(params.get("depth", 6))}

    def gain_importance(self, native: Any, schema: FeatureSchema) -> dict[str, float]:
        values = native.get_feature_importance(type="PredictionValuesChange")
        total = float(np.sum(values)) or 1.0
        return {n: float(v) / total for n, v in zip(schema.names, values, strict=True)}

    def category_levels(self, native: Any) -> dict[str, tuple[str, ...]]:
        return {}  # CatBoost takes categories as strings and handles levels it never saw


def catboost_frame(frame: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """CatBoost takes categories as strings; missing becomes an explicit level."""
    out = frame.copy()
    for name in schema.categorical:
        out[name] = out[name].astype(object).where(out[name].notna(), MISSING_CATEGORY).astype(str)
    return out


FRAMEWORKS: dict[str, Framework] = {"xgboost": XGBoostFramework(), "catboost": CatBoostFramework()}


def framework(name: str) -> Framework:
    try:
        return FRAMEWORKS[name]
    except KeyError:
        raise ArtifactFormatError(
            f"Unknown framework {name!r}; use one of {', '.join(FRAMEWORKS)}") from None


@dataclass(frozen=True)
class LoadedModel:
    """A verified, parsed model with the schema it was trained on."""

    name: str
    version: str
    framework: str
    schema: FeatureSchema
    native: Any

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def backend(self) -> Framework:
        return framework(self.framework)

    def prepare(self, df: pd.DataFrame) -> ModelInput:
        """Inputs in the model's own category levels: a level the schema lists but the model
        never saw is made missing and the row flagged, as an unseen level is."""
        return self.schema.model_input(df, levels=self.category_levels)

    @functools.cached_property
    def category_levels(self) -> dict[str, tuple[str, ...]]:
        return self.backend.category_levels(self.native)

    def margin(self, x: ModelInput) -> np.ndarray:
        return self.backend.margin(self.native, self.backend.native_input(self.native, x,
                                                                          self.schema))

    def predict_proba(self, x: ModelInput) -> np.ndarray:
        return sigmoid(self.margin(x))


def sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(margin, dtype=np.float64)))
