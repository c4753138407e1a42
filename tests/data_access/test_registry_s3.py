"""The S3 registry root against moto in server mode (a real HTTP endpoint on loopback)."""

from __future__ import annotations

import argparse
import json
import socket
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from app.cli.registry import add_parsers, cmd_pull, cmd_push
from data_access.registry import LocalRegistryRoot, ModelRegistry
from data_access.registry_roots import open_root, registry_status
from data_access.registry_s3 import S3RegistryRoot, aws_client, s3_checksum
from data_access.registry_sagemaker import SageMakerRegistryRoot
from data_access.workspace import Workspace
from explainers.errors import (
    ChecksumError,
    ManifestError,
    RegistryError,
    RegistryUnavailableError,
)
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount", "dtype": "float", "source": "stream", "description": "Amount"},
    {"name": "n_1h", "dtype": "int", "source": "stream", "description": "Transactions in 1 h"},
    {"name": "country", "dtype": "category", "categories": ["US", "GB", "DE"]},
]})
FALLBACK_BOUND_S = 15.0  # a bound for hangs, not a performance target


def frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.lognormal(3, 1, n), "n_1h": rng.integers(0, 9, n),
                       "country": rng.choice(["US", "GB", "DE"], n)})
    return df, ((df["amount"] > 40) & (df["n_1h"] > 3)).astype(int).to_numpy()


def xgb_artifact(seed: int = 1) -> bytes:
    df, y = frame()
    booster = xgb.train({"max_depth": 3, "seed": seed, "nthread": 1},
                        xgb.DMatrix(SCHEMA.model_input(df).frame, y, enable_categorical=True), 6)
    return bytes(booster.save_raw(raw_format="ubj"))


def register(registry: ModelRegistry, name: str = "fraud_xgb", version: str = "1",
             data: bytes | None = None):
    return registry.register(data or xgb_artifact(), name=name, version=version,
                             framework_name="xgboost", artifact_name="model.ubj", schema=SCHEMA,
                             metrics={"roc_auc": 0.91, "pr_auc": 0.42}, seed=1)


def scores(model) -> np.ndarray:
    df, _ = frame(40, seed=5)
    return model.predict_proba(model.prepare(df))


def new_bucket(endpoint: str) -> str:
    name = f"fraudlens-{uuid.uuid4().hex[:12]}"
    aws_client("s3", endpoint_url=endpoint).create_bucket(Bucket=name)
    return name


def s3_root(endpoint: str, bucket: str, cache: Path, prefix: str = "models/prod"):
    return open_root(f"s3://{bucket}/{prefix}", cache_dir=cache, endpoint_url=endpoint)


def test_push_list_pull_round_trip(moto_endpoint, tmp_path):
    bucket = new_bucket(moto_endpoint)
    local = ModelRegistry(LocalRegistryRoot(tmp_path / "local"))
    manifest = register(local)
    root = s3_root(moto_endpoint, bucket, tmp_path / "cache")
    assert isinstance(root, S3RegistryRoot)
    root.write_version(manifest, local.verified_artifact(manifest))

    s3 = aws_client("s3", endpoint_url=moto_endpoint)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["models/prod/fraud_xgb/1/manifest.json", "models/prod/fraud_xgb/1/model.ubj"]
    head = s3.head_object(Bucket=bucket, Key=keys[1], ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == s3_checksum(local.verified_artifact(manifest))
    stored = json.loads(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    assert stored == manifest.to_dict()

    remote = ModelRegistry(root)
    assert [m.key for m in remote.list()] == ["fraud_xgb@1"]
    assert remote.resolve("fraud_xgb") == manifest
    model = remote.load("fraud_xgb@1")
    np.testing.assert_array_equal(scores(model), scores(local.load("fraud_xgb@1")))
    cached = tmp_path / "cache" / "s3" / bucket / "models" / "prod" / "fraud_xgb" / "1"
    assert sorted(p.name for p in cached.iterdir()) == ["manifest.json", "model.ubj"]
    assert not root.degraded and registry_status(root) == (False, None)

    with pytest.raises(RegistryError, match="already registered"):
        root.write_version(manifest, local.verified_artifact(manifest))
    remote.set_stage("fraud_xgb@1", "champion")  # writes the manifest back to S3
    assert ModelRegistry(s3_root(moto_endpoint, bucket, tmp_path / "c2")).resolve(
        "fraud_xgb").stage == "champion"


def test_corrupted_object_is_refused_and_never_cached(moto_endpoint, tmp_path):
    bucket = new_bucket(moto_endpoint)
    local = ModelRegistry(LocalRegistryRoot(tmp_path / "local"))
    manifest = register(local)
    data = local.verified_artifact(manifest)
    root = s3_root(moto_endpoint, bucket, tmp_path / "cache")
    root.write_version(manifest, data)
    s3 = aws_client("s3", endpoint_url=moto_endpoint)
    key = "models/prod/fraud_xgb/1/model.ubj"
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(flipped))  # replaced, no checksum

    with pytest.raises(ChecksumError, match=r"model\.ubj"):
        ModelRegistry(root).load("fraud_xgb@1")
    assert not list((tmp_path / "cache").rglob("model.ubj"))

    # the stored S3 checksum disagreeing with the bytes (corruption at rest) is refused too:
    # moto keeps whatever checksum the writer declared, so declare the original one
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(flipped), ChecksumAlgorithm="SHA256",
                  ChecksumSHA256=s3_checksum(data))
    with pytest.raises(ChecksumError, match="S3"):
        ModelRegistry(root).load("fraud_xgb@1")
    assert not list((tmp_path / "cache").rglob("model.ubj"))


def test_bad_manifests_are_skipped_and_reported_the_rest_keeps_working(moto_endpoint,
                                                                         tmp_path):
    bucket = new_bucket(moto_endpoint)
    local = ModelRegistry(LocalRegistryRoot(tmp_path / "local"))
    manifest = register(local)
    root = s3_root(moto_endpoint, bucket, tmp_path / "cache")
    root.write_version(manifest, local.verified_artifact(manifest))
    s3 = aws_client("s3", endpoint_url=moto_endpoint)
    s3.put_object(Bucket=bucket, Key="models/prod/other/7/manifest.json",
                  Body=manifest.to_json().encode())
    s3.put_object(Bucket=bucket, Key="models/prod/broken/1/manifest.json", Body=b"{not json")
    s3.put_object(Bucket=bucket, Key="models/prod/deep/1/manifest.json",
                  Body=b"[" * 100_000 + b"]" * 100_000)
    registry = ModelRegistry(root)
    assert [m.key for m in registry.list()] == ["fraud_xgb@1"]
    problems = registry.problems
    assert len(problems) == 3
    assert any("not other@7" in p for p in problems)
    assert any("broken/1/manifest.json" in p for p in problems)
    assert registry.load("fraud_xgb@1").key == "fraud_xgb@1"
    with pytest.raises(ManifestError, match="not other@7"):
        root._read_manifest("models/prod/other/7/manifest.json", "other", "7")


def test_server_stopped_mid_session_serves_the_verified_cache(private_moto, tmp_path):
    local = ModelRegistry(LocalRegistryRoot(tmp_path / "local"))
    first = register(local, version="1")
    second = register(local, version="2", data=xgb_artifact(seed=2))
    cache = tmp_path / "cache"
    endpoint = private_moto.url
    bucket = new_bucket(endpoint)
    root = s3_root(endpoint, bucket, cache)
    for m in (first, second):
        root.write_version(m, local.verified_artifact(m))
    registry = ModelRegistry(root)
    expected = scores(registry.load("fraud_xgb@1"))  # only version 1 is ever loaded
    private_moto.stop()

    started = time.monotonic()
    manifests = root.list_manifests()
    elapsed = time.monotonic() - started
    print(f"\nS3 stopped -> fallback to the verified cache in {elapsed:.2f} s")
    assert elapsed < FALLBACK_BOUND_S
    assert [m.key for m in manifests] == ["fraud_xgb@1"]
    assert root.degraded
    degraded, message = registry_status(root)
    assert degraded and message.startswith(f"Model registry s3://{bucket}/models/prod "
                                           "unavailable (")
    assert message.endswith("; serving the last verified copy")
    assert "\n" not in message

    started = time.monotonic()
    np.testing.assert_array_equal(scores(registry.load("fraud_xgb@1")), expected)
    np.testing.assert_array_equal(scores(registry.load("fraud_xgb")), expected)
    assert time.monotonic() - started < 1.0  # within the cool-down: S3 is not retried

    with pytest.raises(RegistryError, match="no version '2'"):
        registry.load("fraud_xgb@2")
    with pytest.raises(RegistryUnavailableError, match="not cached"):
        root.read_artifact(second)
    with pytest.raises(RegistryUnavailableError, match="cannot push"):
        root.write_version(second, local.verified_artifact(second))

    # a fresh process (new root, same cache) while S3 is down: the same fallback
    restarted = s3_root(endpoint, bucket, cache)
    started = time.monotonic()
    model = ModelRegistry(restarted).load("fraud_xgb@1")
    assert time.monotonic() - started < FALLBACK_BOUND_S
    assert restarted.degraded and restarted.last_error
    np.testing.assert_array_equal(scores(model), expected)

    # a cached copy changed on disk is a checksum error naming it, never served
    path = cache / "s3" / bucket / "models" / "prod" / "fraud_xgb" / "1" / "model.ubj"
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    with pytest.raises(ChecksumError, match=r"model\.ubj"):
        ModelRegistry(restarted).load("fraud_xgb@1")

    # nothing cached at all: a clear one-line error, not an empty registry
    empty = s3_root(endpoint, bucket, tmp_path / "empty-cache")
    with pytest.raises(RegistryUnavailableError, match="no verified copy is cached"):
        empty.list_manifests()


def test_open_root_dispatches_on_the_address(aws_env, tmp_path):
    assert isinstance(open_root(str(tmp_path / "reg"), cache_dir=tmp_path), LocalRegistryRoot)
    s3 = open_root("s3://bucket-a/some/prefix", cache_dir=tmp_path, endpoint_url="http://x:1")
    assert isinstance(s3, S3RegistryRoot) and s3.description == "s3://bucket-a/some/prefix"
    sm = open_root("sagemaker://fraud-xgb", cache_dir=tmp_path, endpoint_url="http://x:1")
    assert isinstance(sm, SageMakerRegistryRoot) and sm.description == "sagemaker://fraud-xgb"
    for bad in ("gs://bucket/x", "s3://Bad_Bucket/x", "s3://bucket-a/../x", "sagemaker://"):
        with pytest.raises(RegistryError):
            open_root(bad, cache_dir=tmp_path)
    with pytest.raises(RegistryError, match="only apply"):
        open_root(str(tmp_path), cache_dir=tmp_path, endpoint_url="http://x:1")


def test_cli_push_then_pull_into_a_fresh_workspace(moto_endpoint, tmp_path, capsys):
    bucket = new_bucket(moto_endpoint)
    source = Workspace(tmp_path / "ws-a")
    manifest = register(source.registry)
    remote = f"s3://{bucket}/team/models"

    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="models_command"))
    push = parser.parse_args(["push", "fraud_xgb@1", "--to", remote,
                              "--endpoint-url", moto_endpoint])
    push.workspace = str(source.path)
    assert push.func(push) == 0
    assert "pushed fraud_xgb@1" in capsys.readouterr().out

    target = Workspace(tmp_path / "ws-b")
    pull = argparse.Namespace(workspace=str(target.path), ref="fraud_xgb@1", source=remote,
                              endpoint_url=moto_endpoint)
    assert cmd_pull(pull) == 0
    pulled = target.registry.resolve("fraud_xgb@1")
    assert pulled.to_dict() == manifest.to_dict()
    np.testing.assert_array_equal(scores(target.registry.load("fraud_xgb@1")),
                                  scores(source.registry.load("fraud_xgb@1")))
    assert (target.path / ".registry-cache" / "s3" / bucket / "team" / "models").is_dir()

    with pytest.raises(RegistryError, match="already registered"):
        cmd_pull(pull)
    lookalike = Workspace(tmp_path / "ws-c")
    register(lookalike.registry, name="Fraud-XGB")
    with pytest.raises(RegistryError, match="storage key"):
        cmd_pull(argparse.Namespace(workspace=str(lookalike.path), ref="fraud_xgb@1",
                                    source=remote, endpoint_url=moto_endpoint))
    assert [m.key for m in lookalike.registry.list()] == ["Fraud-XGB@1"]
    with pytest.raises(RegistryError, match="already registered"):
        cmd_push(argparse.Namespace(workspace=str(source.path), ref="fraud_xgb@1", to=remote,
                                    endpoint_url=moto_endpoint))
    with pytest.raises(RegistryError, match="NAME@VERSION"):
        cmd_push(argparse.Namespace(workspace=str(source.path), ref="fraud_xgb", to=remote,
                                    endpoint_url=moto_endpoint))
    with pytest.raises(RegistryError, match="no version '9'"):
        cmd_pull(argparse.Namespace(workspace=str(target.path), ref="fraud_xgb@9",
                                    source=remote, endpoint_url=moto_endpoint))


def test_slow_s3_is_cut_off_at_the_listing_deadline(moto_endpoint, tmp_path):
    """An endpoint that accepts connections and never answers: the caller gets the verified
    cache after `list_deadline_s` of wall clock, not after the client's retries."""
    bucket = new_bucket(moto_endpoint)
    local = ModelRegistry(LocalRegistryRoot(tmp_path / "local"))
    manifest = register(local)
    cache = tmp_path / "cache"
    healthy = s3_root(moto_endpoint, bucket, cache)
    healthy.write_version(manifest, local.verified_artifact(manifest))
    ModelRegistry(healthy).load("fraud_xgb@1")

    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts
        slow = open_root(f"s3://{bucket}/models/prod", cache_dir=cache,
                         endpoint_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
                         list_deadline_s=1.0)
        started = time.monotonic()
        model = ModelRegistry(slow).load("fraud_xgb@1")
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5.0
    assert slow.degraded and "no answer within 1 s" in slow.degraded_message
    np.testing.assert_array_equal(scores(model), scores(local.load("fraud_xgb@1")))
