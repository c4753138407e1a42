"""A model that crashes its parser is refused by the probe; the process that asked survives
(SECURITY 21). Valid models load exactly as before, and each artifact is probed once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb
from catboost import CatBoostClassifier, Pool
from test_registry import SCHEMA, _data

from data_access import model_probe
from data_access.model_probe import ModelProbe, _reason, verdict_key
from data_access.registry import (
    QUARANTINE_FILE,
    LocalRegistryRoot,
    Manifest,
    ModelRegistry,
    sha256_hex,
)
from explainers.errors import ArtifactFormatError, RegistryError
from explainers.model import catboost_frame, framework

CRASH_LINE = "the model file crashed its parser (signal SIGSEGV) and was refused"
DEPTH = 100_000  # XGBoost 3.2's UBJSON reader recurses per level and overflows its stack


def crashing_ubj(depth: int = DEPTH) -> bytes:
    """Starts like an XGBoost model (`{"learner": ...`), then nests `depth` arrays deep."""
    key = b"L" + (7).to_bytes(8, "big") + b"learner"
    return b"{" + key + b"[" * depth + b"]" * depth + b"}"


@pytest.fixture(scope="module")
def crasher(tmp_path_factory) -> bytes:
    """The crafted bytes, after proving that they really kill XGBoost's parser."""
    data = crashing_ubj()
    path = tmp_path_factory.mktemp("crash") / "model.ubj"
    path.write_bytes(data)
    code = ("import sys, xgboost as xgb\n"
            "xgb.Booster().load_model(bytearray(open(sys.argv[1], 'rb').read()))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stderr[-300:])
    return data


@pytest.fixture
def deep_allowed(monkeypatch):
    """Let the crasher past the structural depth check, so that the probe must catch it."""
    monkeypatch.setenv("FRAUDLENS_MAX_ARTIFACT_DEPTH", str(DEPTH + 10))


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalRegistryRoot(tmp_path / "ws" / "models"))


def train_xgb() -> xgb.Booster:
    df, y = _data()
    return xgb.train({"max_depth": 3, "seed": 1, "nthread": 1},
                     xgb.DMatrix(SCHEMA.model_input(df).frame, y, enable_categorical=True), 8)


def train_cb() -> CatBoostClassifier:
    df, y = _data()
    model = CatBoostClassifier(iterations=8, depth=3, random_seed=1, verbose=0,
                               allow_writing_files=False, thread_count=1)
    model.fit(Pool(catboost_frame(SCHEMA.model_input(df).frame, SCHEMA), y,
                   cat_features=SCHEMA.categorical))
    return model


def register(registry: ModelRegistry, data: bytes, name: str = "m", version: str = "1",
             artifact: str = "model.ubj", fw: str = "xgboost") -> Manifest:
    return registry.register(data, name=name, version=version, framework_name=fw,
                             artifact_name=artifact, schema=SCHEMA)


def plant(registry: ModelRegistry, data: bytes, name: str, version: str) -> Manifest:
    """Put a version on disk the way an older release, or an attacker, could have."""
    manifest = Manifest.from_dict({
        "name": name, "version": version, "framework": "xgboost", "library_version": "3",
        "artifact": "model.ubj", "sha256": sha256_hex(data), "feature_schema": SCHEMA.to_dict(),
        "target": "is_fraud", "training_window": {"start": "", "end": ""}, "seed": 0,
        "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "created_at": "", "stage": "candidate"})
    folder = registry.root.path / name / version
    folder.mkdir(parents=True)
    (folder / "model.ubj").write_bytes(data)
    (folder / "manifest.json").write_text(manifest.to_json())
    return manifest


def test_probe_refuses_the_crasher_with_one_line(crasher, deep_allowed, tmp_path):
    probe = ModelProbe(tmp_path / "verdicts.json")
    manifest = Manifest.from_dict({**plant_doc(crasher), "name": "evil", "version": "3"})
    with pytest.raises(ArtifactFormatError) as info:
        probe.ensure(manifest, crasher)
    assert str(info.value) == f"evil@3: {CRASH_LINE}"
    saved = json.loads((tmp_path / "verdicts.json").read_text())["verdicts"]
    assert saved[verdict_key(manifest)]["ok"] is False
    assert saved[verdict_key(manifest)]["sha256"] == manifest.sha256


def plant_doc(data: bytes) -> dict:
    return {"name": "m", "version": "1", "framework": "xgboost", "library_version": "3",
            "artifact": "model.ubj", "sha256": sha256_hex(data),
            "feature_schema": SCHEMA.to_dict(), "target": "is_fraud",
            "training_window": {"start": "", "end": ""}, "seed": 0,
            "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "created_at": "", "stage": "candidate"}


def test_registering_the_crasher_writes_nothing(crasher, deep_allowed, registry):
    with pytest.raises(ArtifactFormatError) as info:
        register(registry, crasher, name="evil")
    assert str(info.value) == f"evil@1: {CRASH_LINE}"
    root = registry.root.path
    assert not (root / "evil").exists()
    assert not root.exists() or not [p for p in root.iterdir() if p.name.startswith(".")]
    assert registry.list() == []


def test_planted_crasher_is_marked_unusable_and_others_keep_loading(crasher, deep_allowed,
                                                                    registry, monkeypatch):
    good = register(registry, bytes(train_xgb().save_raw(raw_format="ubj")), name="good")
    plant(registry, crasher, "evil", "2")
    pid = os.getpid()
    with pytest.raises(ArtifactFormatError) as info:
        registry.load("evil@2")
    assert str(info.value) == f"evil@2: {CRASH_LINE}" and "\n" not in str(info.value)
    assert os.getpid() == pid  # this process parsed nothing and is still here
    marker = json.loads((registry.root.path / "evil" / "2" / QUARANTINE_FILE).read_text())
    assert marker["reason"] == CRASH_LINE
    assert registry.unusable() == {"evil@2": CRASH_LINE}
    assert [m.key for m in registry.list()] == ["evil@2", "good@1"]  # still listed, as unusable
    assert registry.load(good.key).key == "good@1"

    # a new process refuses it from the recorded verdict, without probing again
    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(ModelProbe, "run", no_probe)
    fresh = ModelRegistry(LocalRegistryRoot(registry.root.path))
    with pytest.raises(ArtifactFormatError, match="SIGSEGV"):
        fresh.load("evil@2")
    (registry.root.path / "evil" / "2" / QUARANTINE_FILE).unlink()
    with pytest.raises(ArtifactFormatError, match="SIGSEGV"):  # the verdict file remembers
        ModelRegistry(LocalRegistryRoot(registry.root.path)).load("evil@2")
    assert fresh.load("good@1").key == "good@1"


def test_cli_register_of_the_crasher_exits_with_one_line(crasher, tmp_path):
    fraudlens = shutil.which("fraudlens", path=str(Path(sys.executable).parent))
    assert fraudlens
    (tmp_path / "model.ubj").write_bytes(crasher)
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA.to_dict()))
    ws = tmp_path / "ws"
    ws.mkdir()
    env = {**os.environ, "FRAUDLENS_MAX_ARTIFACT_DEPTH": str(DEPTH + 10)}
    env.pop("FRAUDLENS_REGISTRY", None)
    proc = subprocess.run(
        [fraudlens, "--workspace", str(ws), "models", "register",
         str(tmp_path / "model.ubj"), "--schema", str(tmp_path / "schema.json"), "--name",
         "evil", "--version", "1", "--framework", "xgboost"],
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"fraudlens: error: evil@1: {CRASH_LINE}"]
    assert not (ws / "models" / "evil").exists()


@pytest.mark.parametrize("fmt", ["ubj", "json"])
def test_valid_xgboost_model_loads_and_predicts_like_the_original(registry, fmt):
    booster = train_xgb()
    register(registry, bytes(booster.save_raw(raw_format=fmt)), artifact=f"model.{fmt}")
    model = registry.load("m@1")
    df, _ = _data(60, seed=5)
    x = SCHEMA.model_input(df).frame
    expected = booster.predict(xgb.DMatrix(x, enable_categorical=True), output_margin=True)
    np.testing.assert_array_equal(model.margin(model.prepare(df)), expected)


def test_valid_catboost_model_loads_and_predicts_like_the_original(registry):
    original = train_cb()
    register(registry, framework("catboost").dump(original, "model.cbm"), artifact="model.cbm",
             fw="catboost")
    model = registry.load("m@1")
    df, _ = _data(60, seed=5)
    pool = Pool(catboost_frame(SCHEMA.model_input(df).frame, SCHEMA),
                cat_features=SCHEMA.categorical)
    np.testing.assert_array_equal(model.margin(model.prepare(df)),
                                  original.predict(pool, prediction_type="RawFormulaVal"))


def test_each_artifact_is_probed_once(registry, monkeypatch):
    calls = []
    real_run = ModelProbe.run

    def counting(self, manifest, data):
        calls.append(manifest.key)
        return real_run(self, manifest, data)

    monkeypatch.setattr(ModelProbe, "run", counting)
    data = bytes(train_xgb().save_raw(raw_format="ubj"))
    register(registry, data)
    for _ in range(3):
        registry.load("m@1")
    ModelRegistry(LocalRegistryRoot(registry.root.path)).load("m@1")  # another process
    assert calls == ["m@1"]
    # a new framework version probes again
    monkeypatch.setitem(model_probe._VERSIONS, "xgboost", "99.0")
    registry.load("m@1")
    assert calls == ["m@1", "m@1"]


def test_a_probe_that_cannot_start_is_not_held_against_the_model(registry, tmp_path):
    data = bytes(train_xgb().save_raw(raw_format="ubj"))
    manifest = Manifest.from_dict(plant_doc(data))
    probe = ModelProbe(tmp_path / "verdicts.json", memory_bytes=40 << 20)
    with pytest.raises(RegistryError, match=r"could not start xgboost.*FRAUDLENS_PROBE_MEMORY"):
        probe.ensure(manifest, data)
    assert probe.cached(manifest) is None  # nothing recorded


def test_refusal_reasons_are_one_line(tmp_path):
    result = tmp_path / "result.json"
    assert _reason(None, result, 1 << 30, 60) == ("the model file did not finish loading "
                                                 "within 60 s and was refused")
    assert "SIGXCPU" in _reason(-signal.SIGXCPU, result, 1 << 30, 60)
    assert _reason(-signal.SIGABRT, result, 1 << 30, 60) == (
        "the model file crashed its parser (signal SIGABRT) and was refused")
    assert _reason(3, result, 3 << 30, 60) == (
        "the model file needed more than 3,072 MiB of memory to load and was refused")
    result.write_text(json.dumps({"ok": False, "error": "XGBoostError: bad\nthing"}))
    assert _reason(2, result, 1 << 30, 60) == (
        "the model file could not be loaded (XGBoostError: bad thing) and was refused")
    result.write_text(json.dumps({"ok": True}))
    assert _reason(0, result, 1 << 30, 60) is None


def test_models_list_shows_the_refused_version_as_unusable(crasher, deep_allowed, registry,
                                                            capsys, monkeypatch):
    from app.cli.main import main

    monkeypatch.delenv("FRAUDLENS_REGISTRY", raising=False)
    register(registry, bytes(train_xgb().save_raw(raw_format="ubj")), name="good")
    plant(registry, crasher, "evil", "2")
    with pytest.raises(ArtifactFormatError):
        registry.load("evil@2")
    capsys.readouterr()
    assert main(["--workspace", str(registry.root.path.parent), "models", "list"]) == 0
    out = capsys.readouterr().out
    assert any(line.startswith("evil@2") and "UNUSABLE" in line for line in out.splitlines())
    assert f"evil@2 is unusable: {CRASH_LINE}" in out
    assert any(line.startswith("good@1") and "candidate" in line for line in out.splitlines())


def test_a_schema_the_model_does_not_accept_is_refused_and_not_held_against_the_bytes(
        registry):
    data = bytes(train_xgb().save_raw(raw_format="ubj"))
    wider = SCHEMA.from_dict({**SCHEMA.to_dict(), "features": [
        *SCHEMA.to_dict()["features"], {"name": "extra", "dtype": "float"}]})
    with pytest.raises(ArtifactFormatError, match=r"^m@1: the model file could not be loaded"):
        registry.register(data, name="m", version="1", framework_name="xgboost",
                          artifact_name="model.ubj", schema=wider)
    assert registry.list() == []
    register(registry, data)  # the same bytes with the schema they were trained on
    assert registry.load("m@1").key == "m@1"
