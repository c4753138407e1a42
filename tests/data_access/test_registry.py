"""The registry verifies every artifact before a framework parses it."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from catboost import CatBoostClassifier, Pool

from data_access.registry import LocalRegistryRoot, Manifest, ModelRegistry
from explainers.errors import (
    ArtifactFormatError,
    ChecksumError,
    ManifestError,
    RegistryError,
    SchemaError,
)
from explainers.model import catboost_frame, framework
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount", "dtype": "float", "source": "stream", "description": "Amount",
     "unit": "USD"},
    {"name": "n_1h", "dtype": "int", "source": "stream", "description": "Transactions in 1 h"},
    {"name": "country", "dtype": "category", "categories": ["US", "GB", "DE"]},
]})


def _data(n: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.lognormal(3, 1, n), "n_1h": rng.integers(0, 9, n),
                       "country": rng.choice(["US", "GB", "DE"], n)})
    y = ((df["amount"] > 40) & (df["n_1h"] > 3)).astype(int).to_numpy()
    return df, y


def xgb_artifact(fmt: str = "ubj") -> bytes:
    df, y = _data()
    booster = xgb.train({"max_depth": 3, "seed": 1, "nthread": 1},
                        xgb.DMatrix(SCHEMA.model_input(df).frame, y, enable_categorical=True), 8)
    return bytes(booster.save_raw(raw_format=fmt))


def cb_artifact() -> bytes:
    df, y = _data()
    model = CatBoostClassifier(iterations=8, depth=3, random_seed=1, verbose=0,
                               allow_writing_files=False, thread_count=1)
    model.fit(Pool(catboost_frame(SCHEMA.model_input(df).frame, SCHEMA), y,
                   cat_features=SCHEMA.categorical))
    return framework("catboost").dump(model, "model.cbm")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalRegistryRoot(tmp_path / "models"))


def _register(registry: ModelRegistry, data: bytes, fw: str, artifact: str, version: str = "1"):
    return registry.register(data, name=f"m_{fw}", version=version, framework_name=fw,
                             artifact_name=artifact, schema=SCHEMA,
                             metrics={"roc_auc": 0.9, "pr_auc": 0.5})


@pytest.mark.parametrize(("fw", "artifact", "make"), [
    ("xgboost", "model.ubj", lambda: xgb_artifact("ubj")),
    ("xgboost", "model.json", lambda: xgb_artifact("json")),
    ("catboost", "model.cbm", cb_artifact),
])
def test_registered_model_round_trips_and_predicts(registry, fw, artifact, make):
    _register(registry, make(), fw, artifact)
    model = registry.load(f"m_{fw}@1")
    df, _y = _data(50, seed=3)
    p = model.predict_proba(model.prepare(df))
    assert p.shape == (50,)
    assert np.all((p > 0) & (p < 1))
    manifest = registry.resolve(f"m_{fw}")
    assert manifest.feature_schema == SCHEMA
    assert manifest.metrics["roc_auc"] == 0.9
    on_disk = json.loads((registry.root.path / f"m_{fw}" / "1" / "manifest.json").read_text())
    assert set(on_disk) >= {"name", "version", "framework", "library_version", "artifact",
                            "sha256", "feature_schema", "target", "training_window", "seed",
                            "metrics", "created_at", "stage"}


def test_flipped_byte_is_refused_with_checksum_error_naming_the_file(registry):
    _register(registry, xgb_artifact(), "xgboost", "model.ubj")
    path = registry.root.path / "m_xgboost" / "1" / "model.ubj"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"model\.ubj"):
        registry.load("m_xgboost@1")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize(("fw", "artifact"), [("xgboost", "model.json"),
                                              ("xgboost", "model.ubj"),
                                              ("catboost", "model.cbm"),
                                              ("xgboost", "model.pkl")])
def test_pickle_payload_is_refused_before_any_parser(registry, tmp_path, fw, artifact):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Payload(marker))
    with pytest.raises(ArtifactFormatError):
        _register(registry, payload, fw, artifact)
    assert not marker.exists()
    assert registry.list() == []
    # also when a pickle replaces a registered artifact and its checksum is forged
    _register(registry, xgb_artifact("json") if fw == "xgboost" else cb_artifact(), fw,
              artifact if artifact != "model.pkl" else "model.json", version="2")
    m = registry.resolve(f"m_{fw}@2")
    (registry.root.path / m.name / "2" / m.artifact).write_bytes(payload)
    from dataclasses import replace

    from data_access.registry import sha256_hex
    registry.root.write_manifest(replace(m, sha256=sha256_hex(payload)))
    with pytest.raises(ArtifactFormatError, match="pickle"):
        registry.load(f"m_{fw}@2")
    assert not marker.exists()


def test_manifest_missing_field_is_skipped_and_named(registry):
    _register(registry, xgb_artifact(), "xgboost", "model.ubj")
    _register(registry, xgb_artifact(), "xgboost", "model.ubj", version="2")
    mpath = registry.root.path / "m_xgboost" / "1" / "manifest.json"
    doc = json.loads(mpath.read_text())
    del doc["sha256"]
    mpath.write_text(json.dumps(doc))
    assert [m.key for m in registry.list()] == ["m_xgboost@2"]
    assert len(registry.problems) == 1
    assert "sha256" in registry.problems[0] and str(mpath) in registry.problems[0]
    with pytest.raises(ManifestError, match="sha256"):
        Manifest.from_dict(doc)


def test_schema_with_unknown_dtype_is_named():
    with pytest.raises(SchemaError, match=r"'amount'.*'decimal'"):
        FeatureSchema.from_dict({"target": "y", "features": [
            {"name": "amount", "dtype": "decimal"}]})


def test_artifact_path_cannot_escape_the_version_folder():
    doc = {"name": "m", "version": "1", "framework": "xgboost", "library_version": "3",
           "artifact": "../../etc/passwd", "sha256": "0" * 64,
           "feature_schema": SCHEMA.to_dict(), "target": "is_fraud",
           "training_window": {"start": "", "end": ""}, "seed": 1,
           "metrics": {"roc_auc": 0.9, "pr_auc": 0.5}, "created_at": "", "stage": "candidate"}
    with pytest.raises(ManifestError, match="plain file name"):
        Manifest.from_dict(doc)
    with pytest.raises(ManifestError, match="must be letters"):
        Manifest.from_dict({**doc, "artifact": "model.ubj", "name": "../x"})


def test_resolution_prefers_champion_and_promotion_archives_the_old_one(registry):
    _register(registry, xgb_artifact(), "xgboost", "model.ubj", version="1")
    _register(registry, xgb_artifact(), "xgboost", "model.ubj", version="2")
    assert registry.resolve("m_xgboost").version == "2"
    registry.set_stage("m_xgboost@1", "champion")
    assert registry.resolve("m_xgboost").version == "1"
    registry.set_stage("m_xgboost@2", "champion")
    stages = {m.version: m.stage for m in registry.list()}
    assert stages == {"1": "archived", "2": "champion"}
    with pytest.raises(RegistryError, match="no version '9'"):
        registry.resolve("m_xgboost@9")
    with pytest.raises(RegistryError, match="No model named"):
        registry.resolve("nope")
