"""Untrusted artifact bytes are checked structurally before any parser sees them (SECURITY 21):
bounded depth, bounded size, declared lengths checked against the bytes that remain."""

from __future__ import annotations

import contextlib
import json
import pickle
import random
import struct
from pathlib import Path

import pytest
from test_registry import SCHEMA, cb_artifact, xgb_artifact

from data_access.registry import LocalRegistryRoot, Manifest, ModelRegistry, sha256_hex
from explainers.artifact_check import (
    ArtifactLimits,
    check_json,
    check_ubjson,
    limits_from,
)
from explainers.errors import ArtifactFormatError
from explainers.model import framework

LEARNER_KEY = b"L" + struct.pack(">q", 7) + b"learner"


def ubj(body: bytes) -> bytes:
    """A UBJSON document `{"learner": <body>}` as XGBoost writes keys (int64 lengths)."""
    return b"{" + LEARNER_KEY + body + b"}"


def deep_ubj(depth: int, opener: bytes = b"[") -> bytes:
    if opener == b"[":
        return ubj(b"[" * depth + b"]" * depth)
    key = b"i\x01a"
    return ubj((b"{" + key) * depth + b"i\x01" + b"}" * depth)


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {"model.ubj": xgb_artifact("ubj"), "model.json": xgb_artifact("json"),
            "model.cbm": cb_artifact()}


def _fw(filename: str) -> str:
    return "catboost" if filename.endswith(".cbm") else "xgboost"


def check(data: bytes, filename: str) -> None:
    framework(_fw(filename)).check_format(data, filename)


def test_real_models_pass(models):
    for name, data in models.items():
        check(data, name)
    limits = ArtifactLimits()
    assert b"learner" in check_ubjson(models["model.ubj"], "m", limits)
    assert b"learner" in check_json(models["model.json"], "m", limits)


@pytest.mark.parametrize("opener", [b"[", b"{"])
def test_deep_ubjson_is_refused_without_recursion(opener):
    with pytest.raises(ArtifactFormatError, match="deeper than 64 levels"):
        check(deep_ubj(200_000, opener), "model.ubj")


def test_deep_json_is_refused_without_recursion():
    deep = b'{"learner": ' + b'[{"a": ' * 100_000 + b"1" + b"}]" * 100_000 + b"}"
    with pytest.raises(ArtifactFormatError, match="deeper than 64 levels"):
        check(deep, "model.json")
    # brackets inside strings are text, not nesting
    check_json(b'{"learner": "' + b"[" * 10_000 + b'", "x": 1}', "m", ArtifactLimits())


def test_json_bytes_named_ubj_are_checked_as_json():
    """XGBoost picks its reader from the bytes: a .ubj holding JSON is checked as JSON."""
    deep = b'{"learner": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(ArtifactFormatError, match="deeper than"):
        check(deep, "model.ubj")


@pytest.mark.parametrize("name", ["model.ubj", "model.json", "model.cbm"])
@pytest.mark.parametrize("data", [b"", b"{", b"C", b"CBM1", b"{" * 15])
def test_empty_and_tiny_artifacts_are_refused(name, data):
    with pytest.raises(ArtifactFormatError, match="too small"):
        check(data, name)


@pytest.mark.parametrize("name", ["model.ubj", "model.json", "model.cbm"])
def test_every_truncation_is_a_format_error(models, name):
    data = models[name]
    cuts = sorted({len(data) - 1, len(data) - 2, len(data) // 2, 17, *range(16, len(data), 97)})
    for cut in cuts:
        with pytest.raises(ArtifactFormatError):
            check(data[:cut], name)


@pytest.mark.parametrize("doc", [
    ubj(b"SL" + struct.pack(">q", 1 << 40) + b"abc"),  # a string
    ubj(b"HL" + struct.pack(">q", 1 << 40) + b"123"),  # a high-precision number
    ubj(b"[#L" + struct.pack(">q", 1 << 40) + b"i\x01"),  # a counted array
    ubj(b"[$d#L" + struct.pack(">q", 1 << 40) + b"\0" * 8),  # a typed array
    ubj(b"{#L" + struct.pack(">q", 1 << 40) + b"i\x01ai\x01"),  # a counted object
    b"{" + b"L" + struct.pack(">q", 1 << 40) + b"learner" + b"i\x01}",  # a key
])
def test_declared_length_of_2_to_the_40_is_refused(doc):
    with pytest.raises(ArtifactFormatError, match="1,099,511,627,776"):
        check(doc, "model.ubj")


@pytest.mark.parametrize("doc", [
    b"CBM1" + struct.pack("<I", 1 << 31) + b"\0" * 64,
    b"CBM1" + b"\xff\xff\xff\xff" + struct.pack("<Q", 1 << 40) + b"\0" * 64,
])
def test_catboost_core_size_that_lies_is_refused(doc):
    with pytest.raises(ArtifactFormatError, match="lying length"):
        check(doc, "model.cbm")


def test_catboost_core_with_a_wild_root_offset_is_refused(models):
    data = bytearray(models["model.cbm"])
    data[8:12] = struct.pack("<I", 0xFFFFFF00)
    with pytest.raises(ArtifactFormatError, match="root table"):
        check(bytes(data), "model.cbm")


@pytest.mark.parametrize("doc, words", [
    (ubj(b"Si\xff"), "negative"),
    (ubj(b"X"), "unknown UBJSON type"),
    (ubj(b"[$Z#i\x05"), "not supported"),
    (ubj(b"[$d" + b"i\x01"), "without a '#'"),
    (ubj(b"i\x01") + b"garbage", "trailing"),
    (b"[" + LEARNER_KEY + b"]" + b"\0" * 8, "not an XGBoost"),
])
def test_malformed_ubjson_is_named(doc, words):
    with pytest.raises(ArtifactFormatError, match=words):
        check(doc, "model.ubj")


def test_ubjson_spec_types_are_walked():
    body = (b"{" + b"i\x01a" + b"HU\x0512345" + b"i\x01b" + b"[$S#i\x02" + b"i\x01xU\x02yz"
            + b"i\x01c" + b"[$d#U\x02" + b"\0" * 8 + b"i\x01d" + b"{$i#i\x01" + b"i\x01k\x05"
            + b"i\x01e" + b"[NZTFC!]" + b"i\x01f" + b"D" + b"\0" * 8 + b"}")
    assert check_ubjson(ubj(body), "m", ArtifactLimits()) == {b"learner"}


def test_oversize_is_refused_over_a_configured_cap(models, monkeypatch, tmp_path):
    monkeypatch.setenv("FRAUDLENS_MAX_ARTIFACT_BYTES", "1000")
    for name, data in models.items():
        with pytest.raises(ArtifactFormatError, match="over the 1,000-byte limit"):
            check(data, name)
    # a local artifact over the cap is refused before it is read
    root = LocalRegistryRoot(tmp_path)
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.ubj").write_bytes(b"\0" * 5000)
    manifest = Manifest.from_dict({
        "name": "m", "version": "1", "framework": "xgboost", "library_version": "3",
        "artifact": "model.ubj", "sha256": "0" * 64, "feature_schema": SCHEMA.to_dict(),
        "target": "is_fraud", "training_window": {"start": "", "end": ""}, "seed": 0,
        "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "created_at": "", "stage": "candidate"})
    with pytest.raises(ArtifactFormatError, match="refused unread"):
        root.read_artifact(manifest)


def test_bad_limit_settings_are_refused():
    with pytest.raises(ArtifactFormatError, match="positive whole number"):
        limits_from({"FRAUDLENS_MAX_ARTIFACT_DEPTH": "-3"})
    assert limits_from({"FRAUDLENS_MAX_ARTIFACT_DEPTH": "9"}).max_depth == 9


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("name", ["model.ubj", "model.json", "model.cbm"])
def test_pickles_are_still_refused(tmp_path, protocol, name):
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Payload(marker), protocol=protocol)
    registry = ModelRegistry(LocalRegistryRoot(tmp_path / "models"))
    with pytest.raises(ArtifactFormatError):
        registry.register(payload, name="m", version="1", framework_name=_fw(name),
                          artifact_name=name, schema=SCHEMA)
    assert not marker.exists() and registry.list() == []


@pytest.mark.parametrize("name", ["model.ubj", "model.json", "model.cbm"])
def test_random_corruption_is_refused_cleanly_or_passes(models, name):
    """Whatever the bytes, the check ends with a pass or an ArtifactFormatError, never any
    other exception (IndexError, struct.error, RecursionError, MemoryError)."""
    rng = random.Random(7)
    data = models[name]
    for _ in range(300):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        with contextlib.suppress(ArtifactFormatError):
            check(bytes(mutated), name)


def test_checksum_comes_first(models, tmp_path):
    registry = ModelRegistry(LocalRegistryRoot(tmp_path / "models"))
    manifest = registry.register(models["model.json"], name="m", version="1",
                                 framework_name="xgboost", artifact_name="model.json",
                                 schema=SCHEMA)
    path = tmp_path / "models" / "m" / "1" / "model.json"
    doc = json.loads(path.read_bytes())
    path.write_bytes(json.dumps(doc).encode() + b" ")
    assert sha256_hex(path.read_bytes()) != manifest.sha256
    with pytest.raises(Exception, match="Checksum mismatch"):
        registry.load("m@1")
