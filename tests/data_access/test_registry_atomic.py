"""Registration is all or nothing, one bad manifest never blocks the rest (SECURITY 22), and
no two registered models share a storage key (SECURITY 25)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_registry import SCHEMA, xgb_artifact

import data_access.registry as registry_module
from data_access.registry import (
    MAX_MANIFEST_BYTES,
    LocalRegistryRoot,
    ModelRegistry,
    storage_key,
)
from explainers.errors import ArtifactFormatError, ExportError, RegistryError


@pytest.fixture(scope="module")
def artifact() -> bytes:
    return xgb_artifact("ubj")


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalRegistryRoot(tmp_path / "models"))


def register(registry: ModelRegistry, data: bytes, name: str = "fraud_xgb",
             version: str = "1"):
    return registry.register(data, name=name, version=version, framework_name="xgboost",
                             artifact_name="model.ubj", schema=SCHEMA)


def leftovers(root: Path) -> list[str]:
    """Everything under the root except registered versions' own files."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith(".") or ".staging" in str(p) or ".removing" in str(p))


def test_a_write_that_fails_midway_leaves_nothing(registry, artifact, monkeypatch):
    real = registry_module.atomic_write_bytes

    def failing(path, data, *args, **kwargs):
        if Path(path).name == "manifest.json":
            raise ExportError(f"disk full writing {path}")
        return real(path, data, *args, **kwargs)

    monkeypatch.setattr(registry_module, "atomic_write_bytes", failing)
    with pytest.raises(ExportError, match="disk full"):
        register(registry, artifact)
    root = registry.root.path
    assert not (root / "fraud_xgb").exists()
    assert leftovers(root) == []
    monkeypatch.setattr(registry_module, "atomic_write_bytes", real)
    register(registry, artifact)  # the same version can then be registered cleanly
    assert [m.key for m in registry.list()] == ["fraud_xgb@1"]


def test_a_refused_artifact_leaves_nothing(registry):
    with pytest.raises(ArtifactFormatError):
        register(registry, b"{" + b"\0" * 64)
    assert not registry.root.path.exists() or list(registry.root.path.iterdir()) == []


def test_a_registered_version_is_never_overwritten(registry, artifact):
    first = register(registry, artifact)
    with pytest.raises(RegistryError, match="already registered"):
        register(registry, xgb_artifact("json"))
    assert registry.resolve("fraud_xgb@1").sha256 == first.sha256
    assert leftovers(registry.root.path) == []


def test_discard_takes_a_version_out_in_one_step(registry, artifact):
    manifest = register(registry, artifact)
    registry.discard(manifest)
    assert registry.list() == [] and leftovers(registry.root.path) == []


@pytest.mark.parametrize(("write", "words"), [
    (lambda p, doc: p.write_text("{not json"), "not readable JSON"),
    (lambda p, doc: p.write_text(json.dumps({k: v for k, v in doc.items() if k != "stage"})),
     "stage"),
    (lambda p, doc: p.write_text(json.dumps({**doc, "version": "9"})), "belongs in"),
    (lambda p, doc: p.write_bytes(b" " * (MAX_MANIFEST_BYTES + 1)), "larger than"),
    (lambda p, doc: p.write_text("[" * 100_000 + "]" * 100_000), "not readable JSON"),
    (lambda p, doc: p.write_text(json.dumps({**doc, "framework": "sklearn"})), "sklearn"),
])
def test_a_bad_manifest_is_skipped_reported_and_the_rest_works(registry, artifact, write,
                                                               words):
    register(registry, artifact, name="bad")
    register(registry, artifact, name="good")
    mpath = registry.root.path / "bad" / "1" / "manifest.json"
    write(mpath, json.loads(mpath.read_text()))
    assert [m.key for m in registry.list()] == ["good@1"]
    assert len(registry.problems) == 1
    assert str(mpath) in registry.problems[0] and words in registry.problems[0]
    assert registry.resolve("good").key == "good@1"
    assert registry.load("good@1").key == "good@1"
    register(registry, artifact, name="good", version="2")  # registration still works


@pytest.mark.parametrize("clash", ["fraud-xgb@1", "Fraud_XGB@1", "fraud.xgb@1", "FRAUD-XGB@1"])
def test_a_storage_key_collision_is_refused_naming_the_existing_model(registry, artifact,
                                                                      clash):
    register(registry, artifact, name="fraud_xgb", version="1")
    name, _, version = clash.partition("@")
    with pytest.raises(RegistryError, match=r"with the registered fraud_xgb@1") as info:
        register(registry, artifact, name=name, version=version)
    assert "'fraud_xgb_1'" in str(info.value)
    assert [m.key for m in registry.list()] == ["fraud_xgb@1"]


def test_versions_collide_too_and_distinct_keys_are_fine(registry, artifact):
    register(registry, artifact, name="m", version="1.0")
    with pytest.raises(RegistryError, match=r"m@1\.0"):
        register(registry, artifact, name="m", version="1_0")
    register(registry, artifact, name="m", version="2")
    register(registry, artifact, name="m2", version="1")
    assert sorted(m.key for m in registry.list()) == ["m2@1", "m@1.0", "m@2"]


def test_storage_key_folds_case_and_punctuation():
    assert storage_key("fraud-xgb@1") == storage_key("FRAUD_XGB@1") == "fraud_xgb_1"
    assert storage_key("a.b@2") != storage_key("ab@2")


def test_models_list_warns_once_per_skipped_manifest_and_lists_the_rest(tmp_path, artifact,
                                                                        capsys, monkeypatch):
    from app.cli.main import main

    monkeypatch.delenv("FRAUDLENS_REGISTRY", raising=False)
    registry = ModelRegistry(LocalRegistryRoot(tmp_path / "ws" / "models"))
    for name in ("a", "b", "good"):
        register(registry, artifact, name=name)
    (tmp_path / "ws" / "models" / "a" / "1" / "manifest.json").write_text("{")
    (tmp_path / "ws" / "models" / "b" / "1" / "manifest.json").write_text("[]")
    assert main(["--workspace", str(tmp_path / "ws"), "models", "list"]) == 0
    out, err = capsys.readouterr()
    warnings = err.strip().splitlines()
    assert len(warnings) == 2 and all(w.startswith("fraudlens: warning: skipped ")
                                      for w in warnings)
    assert "a/1/manifest.json" in warnings[0] and "b/1/manifest.json" in warnings[1]
    assert "good@1" in out and "a@1" not in out
