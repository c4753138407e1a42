"""The SageMaker Model Registry root against moto in server mode (real HTTP on loopback)."""

from __future__ import annotations

import argparse
import functools
import io
import re
import tarfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from app.cli.registry import cmd_pull
from data_access.registry import LocalRegistryRoot, Manifest, ModelRegistry
from data_access.registry_roots import open_root, registry_status
from data_access.registry_s3 import aws_client as _aws_client
from data_access.registry_sagemaker import SageMakerRegistryRoot, stage_for
from data_access.safe_tar import build_archive
from data_access.workspace import Workspace
from explainers.errors import ArtifactFormatError, ChecksumError, RegistryError
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount", "dtype": "float", "source": "stream", "description": "Amount"},
    {"name": "country", "dtype": "category", "categories": ["US", "GB", "DE"]},
]})
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"


@functools.cache
def aws_client(service: str, endpoint_url: str):
    return _aws_client(service, endpoint_url=endpoint_url)


def frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"amount": rng.lognormal(3, 1, n),
                       "country": rng.choice(["US", "GB", "DE"], n)})
    return df, ((df["amount"] > 40) & (df["country"] != "US")).astype(int).to_numpy()


def xgb_artifact(seed: int) -> bytes:
    df, y = frame()
    booster = xgb.train({"max_depth": 2, "seed": seed, "nthread": 1},
                        xgb.DMatrix(SCHEMA.model_input(df).frame, y, enable_categorical=True), 4)
    return bytes(booster.save_raw(raw_format="ubj"))


def scores(model) -> np.ndarray:
    df, _ = frame(30, seed=9)
    return model.predict_proba(model.prepare(df))


@pytest.fixture
def local(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(LocalRegistryRoot(tmp_path / "local"))


def register(local: ModelRegistry, version: str, seed: int) -> tuple[Manifest, bytes]:
    m = local.register(xgb_artifact(seed), name="fraud_xgb", version=version,
                       framework_name="xgboost", artifact_name="model.ubj", schema=SCHEMA,
                       metrics={"roc_auc": 0.9, "pr_auc": 0.4})
    return m, local.verified_artifact(m)


def setup_group(endpoint: str) -> tuple[str, str]:
    group = f"fraud-{uuid.uuid4().hex[:10]}"
    bucket = f"sm-artifacts-{uuid.uuid4().hex[:10]}"
    aws_client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    aws_client("sagemaker", endpoint_url=endpoint).create_model_package_group(
        ModelPackageGroupName=group)
    return group, bucket


def raw_package(endpoint: str, group: str, bucket: str, archive: bytes, status: str,
                metadata: dict[str, str] | None) -> None:
    """A package created the way another team's pipeline would, not through FraudLens."""
    key = f"raw/{uuid.uuid4().hex}/model.tar.gz"
    aws_client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key=key, Body=archive)
    kwargs = {"CustomerMetadataProperties": metadata} if metadata else {}
    aws_client("sagemaker", endpoint_url=endpoint).create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE,
                                                "ModelDataUrl": f"s3://{bucket}/{key}"}],
                                "SupportedContentTypes": ["text/csv"],
                                "SupportedResponseMIMETypes": ["text/csv"]}, **kwargs)


def fraudlens_package(endpoint, group, bucket, manifest, data, status):
    archive = build_archive({"manifest.json": manifest.to_json().encode(), "model.ubj": data})
    raw_package(endpoint, group, bucket, archive, status, {"fraudlens_sha256": manifest.sha256})


def sm_root(endpoint: str, group: str, cache: Path, bucket: str | None = None):
    return open_root(f"sagemaker://{group}", cache_dir=cache, endpoint_url=endpoint,
                     artifact_uri=f"s3://{bucket}/packages" if bucket else None,
                     image_uri=IMAGE if bucket else None)


def test_approval_status_maps_to_stage():
    assert stage_for("PendingManualApproval", 3, newest_approved=2) == "candidate"
    assert stage_for("Approved", 2, newest_approved=2) == "champion"
    assert stage_for("Approved", 1, newest_approved=2) == "archived"
    assert stage_for("Rejected", 4, newest_approved=2) == "archived"


def test_packages_list_with_stages_load_and_promote(moto_endpoint, local, tmp_path):
    group, bucket = setup_group(moto_endpoint)
    statuses = ["Approved", "Approved", "PendingManualApproval", "Rejected"]
    made = [register(local, str(i + 1), seed=i + 1) for i in range(len(statuses))]
    for (m, data), status in zip(made, statuses, strict=True):
        fraudlens_package(moto_endpoint, group, bucket, m, data, status)
    raw_package(moto_endpoint, group, bucket, build_archive({"model.tar": b"x"}), "Approved",
                None)  # someone else's package in the group: skipped, not an error

    root = sm_root(moto_endpoint, group, tmp_path / "cache")
    registry = ModelRegistry(root)
    stages = {m.version: m.stage for m in registry.list()}
    assert stages == {"1": "archived", "2": "champion", "3": "candidate", "4": "archived"}
    assert root.skipped and "no fraudlens_sha256" in root.skipped[0]
    champion = registry.resolve(group)
    assert champion.key == f"{group}@2"
    assert champion.feature_schema == SCHEMA  # the schema travelled inside model.tar.gz
    assert champion.extra["source_key"] == "fraud_xgb@2"
    assert champion.extra["approval_status"] == "Approved"
    np.testing.assert_array_equal(scores(registry.load(group)),
                                  scores(local.load("fraud_xgb@2")))

    registry.set_stage(f"{group}@3", "champion")  # 2 -> Rejected, 3 -> Approved
    sm = aws_client("sagemaker", endpoint_url=moto_endpoint)
    by_version = {p["ModelPackageVersion"]: p["ModelApprovalStatus"] for p in
                  sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]}
    assert by_version == {1: "Approved", 2: "Rejected", 3: "Approved", 4: "Rejected",
                          5: "Approved"}  # 5 is not ours: left alone
    stages = {m.version: m.stage for m in ModelRegistry(root).list()}
    assert stages == {"1": "archived", "2": "archived", "3": "champion", "4": "archived"}
    for m in ModelRegistry(root).list():  # our metadata survived the status updates
        pkg = sm.describe_model_package(ModelPackageName=m.extra["model_package_arn"])
        assert pkg["CustomerMetadataProperties"]["fraudlens_sha256"] == m.sha256


def test_fraudlens_registers_a_package_and_pulls_it(moto_endpoint, local, tmp_path):
    group, bucket = setup_group(moto_endpoint)
    manifest, data = register(local, "7", seed=3)
    root = sm_root(moto_endpoint, group, tmp_path / "cache", bucket=bucket)
    assert isinstance(root, SageMakerRegistryRoot)
    root.write_version(manifest, data)
    [listed] = root.list_manifests()
    assert (listed.key, listed.stage, listed.sha256) == (f"{group}@1", "candidate",
                                                         manifest.sha256)
    pkg = aws_client("sagemaker", endpoint_url=moto_endpoint).describe_model_package(
        ModelPackageName=listed.extra["model_package_arn"])
    assert pkg["ModelApprovalStatus"] == "PendingManualApproval"
    assert pkg["CustomerMetadataProperties"]["fraudlens_sha256"] == manifest.sha256
    assert pkg["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].startswith(
        f"s3://{bucket}/packages/{group}/")

    ws = Workspace(tmp_path / "ws")
    args = argparse.Namespace(workspace=str(ws.path), ref=f"{group}@1",
                              source=f"sagemaker://{group}", endpoint_url=moto_endpoint)
    assert cmd_pull(args) == 0
    pulled = ws.registry.resolve(f"{group}@1")
    assert pulled.sha256 == manifest.sha256 and "model_package_arn" not in pulled.extra
    np.testing.assert_array_equal(scores(ws.registry.load(f"{group}@1")),
                                  scores(local.load("fraud_xgb@7")))


def _evil_tar(name: str, kind: bytes | None = None, link: str = "") -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        if kind is None:
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        else:
            info.type, info.linkname = kind, link
            tar.addfile(info)
    return raw.getvalue()


@pytest.mark.parametrize(("archive", "words"), [
    (_evil_tar("../../model.ubj"), "'..'"),
    (_evil_tar("/tmp/model.ubj"), "absolute path"),
    (_evil_tar("model.ubj", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link"),
])
def test_hostile_model_tar_is_refused(moto_endpoint, tmp_path, archive, words):
    group, bucket = setup_group(moto_endpoint)
    raw_package(moto_endpoint, group, bucket, archive, "Approved",
                {"fraudlens_sha256": "0" * 64})
    root = sm_root(moto_endpoint, group, tmp_path / "cache")
    assert root.list_manifests() == []  # skipped and reported, never listed
    assert len(root.problems) == 1 and re.search(words, root.problems[0])
    pkg = root._packages()[0]
    with pytest.raises(ArtifactFormatError, match=words):
        root._fetch_package(pkg)
    assert not list((tmp_path / "cache").rglob("*.ubj"))
    assert not (tmp_path.parent / "model.ubj").exists()


def test_package_metadata_must_match_the_archive(moto_endpoint, local, tmp_path):
    group, bucket = setup_group(moto_endpoint)
    manifest, data = register(local, "1", seed=1)
    archive = build_archive({"manifest.json": manifest.to_json().encode(), "model.ubj": data})
    raw_package(moto_endpoint, group, bucket, archive, "Approved",
                {"fraudlens_sha256": "f" * 64})
    root = sm_root(moto_endpoint, group, tmp_path / "cache")
    assert root.list_manifests() == []
    assert len(root.problems) == 1 and "metadata" in root.problems[0]
    with pytest.raises(ChecksumError, match="metadata"):
        root._fetch_package(root._packages()[0])
    with pytest.raises(RegistryError, match="artifact_uri"):
        sm_root(moto_endpoint, group, tmp_path / "cache").write_version(manifest, data)


def test_sagemaker_down_serves_the_verified_cache(private_moto, local, tmp_path):
    group, bucket = setup_group(private_moto.url)
    manifest, data = register(local, "1", seed=1)
    fraudlens_package(private_moto.url, group, bucket, manifest, data, "Approved")
    cache = tmp_path / "cache"
    root = sm_root(private_moto.url, group, cache)
    expected = scores(ModelRegistry(root).load(group))
    private_moto.stop()

    restarted = sm_root(private_moto.url, group, cache)
    started = time.monotonic()
    model = ModelRegistry(restarted).load(group)
    elapsed = time.monotonic() - started
    print(f"\nSageMaker stopped -> fallback to the verified cache in {elapsed:.2f} s")
    assert elapsed < 15.0
    np.testing.assert_array_equal(scores(model), expected)
    degraded, message = registry_status(restarted)
    assert degraded and message.startswith(f"Model registry sagemaker://{group} unavailable")
    assert ModelRegistry(restarted).resolve(group).stage == "champion"


def test_archive_bigger_than_its_declared_artifact_is_refused_the_rest_loads(moto_endpoint,
                                                                           local, tmp_path):
    """A package declaring a small artifact whose archive expands far beyond it stops at the
    declared size plus a small margin; other packages keep working (SECURITY 21, 22)."""
    group, bucket = setup_group(moto_endpoint)
    good, data = register(local, "1", seed=1)
    fraudlens_package(moto_endpoint, group, bucket, good, data, "Approved")
    padded = build_archive({"manifest.json": good.to_json().encode(), "model.ubj": data,
                            "padding.bin": b"\0" * (8 << 20)})  # 8 MiB of zeros, ~8 KiB packed
    raw_package(moto_endpoint, group, bucket, padded, "PendingManualApproval",
                {"fraudlens_sha256": good.sha256, "fraudlens_artifact_bytes": str(len(data))})
    root = sm_root(moto_endpoint, group, tmp_path / "cache")
    registry = ModelRegistry(root)
    assert [m.key for m in registry.list()] == [f"{group}@1"]
    assert len(registry.problems) == 1
    assert f"{group}@2" in registry.problems[0] and "more than" in registry.problems[0]
    np.testing.assert_array_equal(scores(registry.load(f"{group}@1")), scores(local.load(good)))
