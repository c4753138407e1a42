"""A SageMaker Model Registry model package group as a FraudLens registry root.

`sagemaker://<group>`: each versioned model package of the group is one FraudLens version,
`<group>@<ModelPackageVersion>`. The package's model data
(`InferenceSpecification.Containers[0].ModelDataUrl`, a `model.tar.gz` on S3) holds the
framework artifact and FraudLens's `manifest.json` (feature schema included) side by side; the
package's `CustomerMetadataProperties` carry short, independent anchors (`fraudlens_sha256` of
the artifact, `fraudlens_artifact`, `fraudlens_framework`, `fraudlens_source`), because
SageMaker caps each metadata value at 256 characters. The archive is read with `safe_tar`
(links, `..`, absolute paths, devices refused; members and bytes capped), and the artifact must
match both the manifest's and the package's SHA-256 before anything parses it.

Stages (approval status <-> FraudLens stage):
    PendingManualApproval -> candidate
    Approved              -> champion for the group's newest Approved FraudLens version; older
                             Approved versions are superseded -> archived
    Rejected              -> archived
Writing a stage: candidate -> PendingManualApproval, archived -> Rejected, champion -> Approved
(and any newer Approved FraudLens version -> Rejected, so the champion is the newest approved
one, which is what SageMaker deployment pipelines pick up). Packages without FraudLens metadata
are listed in `skipped` and otherwise ignored.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_access.model_probe import VERDICTS_FILE
from data_access.registry import (
    MAX_MANIFEST_BYTES,
    Manifest,
    check_name,
    manifest_from,
    verify_artifact,
)
from data_access.registry_remote import (
    RemoteRootBase,
    VerifiedCache,
    max_artifact_bytes,
    renamed,
)
from data_access.registry_s3 import (
    COOLDOWN_S,
    aws_client,
    get_verified_object,
    parse_s3_uri,
    put_verified_object,
    translate,
)
from data_access.safe_tar import archive_budget, build_archive, read_members
from explainers.errors import (
    ArtifactFormatError,
    ChecksumError,
    ManifestError,
    RegistryError,
    RegistryUnavailableError,
)

META_SHA256 = "fraudlens_sha256"
META_ARTIFACT = "fraudlens_artifact"
META_FRAMEWORK = "fraudlens_framework"
META_SOURCE = "fraudlens_source"
META_BYTES = "fraudlens_artifact_bytes"
ARCHIVE_MANIFEST = "manifest.json"

# A first listing downloads every package's model.tar.gz once; later ones read the cache.
SAGEMAKER_LIST_DEADLINE_S = 20.0
STATUS_FOR_STAGE = {"candidate": "PendingManualApproval", "champion": "Approved",
                    "archived": "Rejected"}
# Extra manifest keys this root sets from SageMaker; they are not part of the archive.
PACKAGE_KEYS = ("model_package_arn", "approval_status", "model_data_url")


def stage_for(status: str, version: int, newest_approved: int | None) -> str:
    """The FraudLens stage of a package (see the module docstring)."""
    if status == "Approved":
        return "champion" if version == newest_approved else "archived"
    if status == "Rejected":
        return "archived"
    return "candidate"  # PendingManualApproval, or no status yet


class SageMakerRegistryRoot(RemoteRootBase):
    """One model package group (see the module docstring)."""

    def __init__(self, group: str, *, cache_dir: str | Path, endpoint_url: str | None = None,
                 region_name: str | None = None, artifact_uri: str | None = None,
                 image_uri: str | None = None, sagemaker_client: Any = None,
                 s3_client: Any = None, cooldown_s: float = COOLDOWN_S,
                 list_deadline_s: float = SAGEMAKER_LIST_DEADLINE_S) -> None:
        self.group = check_name("Model package group", group)
        if "_" in group or "." in group:
            raise RegistryError(f"Model package group {group!r}: SageMaker allows letters, "
                                "digits and '-' only")
        self.description = f"sagemaker://{group}"
        self.cache = VerifiedCache(Path(cache_dir) / "sagemaker" / group)
        self.artifact_uri = artifact_uri
        self.image_uri = image_uri
        self._sm = sagemaker_client or aws_client("sagemaker", endpoint_url=endpoint_url,
                                                  region_name=region_name)
        self._s3 = s3_client or aws_client("s3", endpoint_url=endpoint_url,
                                           region_name=region_name)
        self.skipped: list[str] = []
        self.problems: list[str] = []
        self.probe_cache_path = Path(cache_dir) / VERDICTS_FILE
        self._init_state(cooldown_s, list_deadline_s)

    @classmethod
    def from_uri(cls, uri: str, **opts: Any) -> SageMakerRegistryRoot:
        group = uri[len("sagemaker://"):].strip("/")
        if not group or "/" in group:
            raise RegistryError(f"{uri!r}: use sagemaker://<model-package-group>")
        return cls(group, **opts)

    # -- SageMaker calls -------------------------------------------------------------------
    def _call(self, fn: Any, /, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, self.description) from None

    def _packages(self) -> list[dict[str, Any]]:
        """Every versioned package of the group, described (the summaries lack metadata)."""
        summaries: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(self._sm.list_model_packages, ModelPackageGroupName=self.group,
                              ModelPackageType="Versioned", SortBy="CreationTime",
                              SortOrder="Ascending", **token)
            summaries.extend(page.get("ModelPackageSummaryList", []))
            if not page.get("NextToken"):
                break
            token = {"NextToken": page["NextToken"]}
        return [self._call(self._sm.describe_model_package,
                           ModelPackageName=s["ModelPackageArn"]) for s in summaries]

    def _download(self, url: str, max_bytes: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, _, key = url.removeprefix("s3://").partition("/")
        if not url.startswith("s3://") or not bucket or not key or key.endswith("/"):
            raise RegistryError(f"ModelDataUrl {url!r} is not an s3://bucket/key address")
        try:
            return get_verified_object(self._s3, bucket, key, max_bytes=max_bytes)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, url) from None

    # -- reading ---------------------------------------------------------------------------
    def _list_remote(self) -> list[Manifest]:
        packages = self._packages()
        approved = [int(p["ModelPackageVersion"]) for p in packages
                    if p.get("ModelApprovalStatus") == "Approved" and _ours(p)]
        newest = max(approved) if approved else None
        self.skipped, problems = [], []
        out = []
        for pkg in packages:
            version = str(pkg["ModelPackageVersion"])
            if not _ours(pkg):
                self.skipped.append(f"{self.group}@{version}: no {META_SHA256} metadata; "
                                    "not a FraudLens package")
                continue
            try:
                out.append(self._package_manifest(pkg, newest))
            except (ManifestError, ChecksumError, ArtifactFormatError, RegistryError) as exc:
                if isinstance(exc, RegistryUnavailableError):
                    raise
                problems.append(f"{self.group}@{version}: {exc}")  # the others keep working
        self.problems = problems
        return out

    def _package_manifest(self, pkg: dict[str, Any], newest: int | None) -> Manifest:
        """One FraudLens package as a manifest, from the cache or fetched and verified."""
        meta = pkg.get("CustomerMetadataProperties") or {}
        version = str(pkg["ModelPackageVersion"])
        status = str(pkg.get("ModelApprovalStatus") or "PendingManualApproval")
        stage = stage_for(status, int(version), newest)
        cached = self.cache.manifest(self.group, version)
        if cached is not None and cached.sha256 == str(meta[META_SHA256]).lower():
            base = cached
        else:
            base, data = self._fetch_package(pkg)
            self.cache.put(base, data)
        return replace(base, stage=stage, extra={
            **{k: v for k, v in base.extra.items() if k not in PACKAGE_KEYS},
            "model_package_arn": pkg["ModelPackageArn"], "approval_status": status,
            "model_data_url": _model_data_url(pkg, self.description)})

    def _fetch_package(self, pkg: dict[str, Any]) -> tuple[Manifest, bytes]:
        """Download, unpack safely and verify one package: (manifest, artifact bytes)."""
        version = str(pkg["ModelPackageVersion"])
        where = f"{self.group}@{version}"
        url = _model_data_url(pkg, where)
        meta = pkg.get("CustomerMetadataProperties") or {}
        budget = archive_budget(_declared_bytes(meta, max_artifact_bytes()) + MAX_MANIFEST_BYTES)
        files = read_members(self._download(url, budget), source=url, max_total_bytes=budget)
        if ARCHIVE_MANIFEST not in files:
            raise ManifestError(f"{url}: no {ARCHIVE_MANIFEST} beside the artifact")
        try:
            doc = json.loads(files[ARCHIVE_MANIFEST])
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"{url}: {ARCHIVE_MANIFEST} is not readable JSON ({exc})") \
                from None
        inner = manifest_from(doc, f"{url}!{ARCHIVE_MANIFEST}")
        if inner.artifact not in files:
            raise ArtifactFormatError(f"{url}: the manifest names {inner.artifact!r}, which "
                                      "is not in the archive")
        data = files[inner.artifact]
        anchor = str(meta[META_SHA256]).lower()
        if inner.sha256 != anchor:
            raise ChecksumError(f"{where}: the archive's manifest says sha256 "
                                f"{inner.sha256[:12]}…, the package's metadata "
                                f"{anchor[:12]}…; refused")
        manifest = renamed(inner, name=self.group, version=version, extra={
            **inner.extra, "source_key": inner.key})
        verify_artifact(manifest, data, where=f"{url}!{inner.artifact}")
        return manifest, data

    def _fetch(self, manifest: Manifest) -> bytes:
        arn = manifest.extra.get("model_package_arn")
        if arn:
            pkg = self._call(self._sm.describe_model_package, ModelPackageName=arn)
        else:
            found = [p for p in self._packages()
                     if str(p["ModelPackageVersion"]) == manifest.version]
            if not found:
                raise RegistryError(f"{self.description} has no version {manifest.version}")
            pkg = found[0]
        fetched, data = self._fetch_package(pkg)
        if fetched.sha256 != manifest.sha256:
            raise ChecksumError(f"{manifest.key}: package now holds sha256 "
                                f"{fetched.sha256[:12]}…, expected {manifest.sha256[:12]}…")
        return data

    # -- writing ---------------------------------------------------------------------------
    def _writable(self, action: str) -> None:
        if not self._remote_allowed():
            raise self._unavailable(f"cannot {action} until it is reachable again")

    def write_version(self, manifest: Manifest, artifact: bytes) -> None:
        """Upload `model.tar.gz` (artifact + manifest.json) under `artifact_uri` and create a
        package version; SageMaker numbers it (`<group>@<n>`)."""
        if not self.artifact_uri or not self.image_uri:
            raise RegistryError(f"{self.description}: registering needs artifact_uri "
                                "(s3://bucket/prefix for model.tar.gz) and image_uri (the "
                                "serving container)")
        self._writable(f"register {manifest.key}")
        verify_artifact(manifest, artifact, where=f"local {manifest.artifact}")
        inner = replace(manifest, extra={k: v for k, v in manifest.extra.items()
                                         if k not in PACKAGE_KEYS})
        archive = build_archive({ARCHIVE_MANIFEST: inner.to_json().encode("utf-8"),
                                 manifest.artifact: artifact})
        bucket, prefix = parse_s3_uri(self.artifact_uri)
        key = "/".join(p for p in (prefix, self.group,
                                   f"{manifest.name}-{manifest.version}-{manifest.sha256[:16]}",
                                   "model.tar.gz") if p)
        url = f"s3://{bucket}/{key}"
        try:
            self._upload(bucket, key, archive)
            self._ensure_group()
            self._call(self._sm.create_model_package, ModelPackageGroupName=self.group,
                       ModelPackageDescription=f"FraudLens {manifest.key} "
                                               f"({manifest.framework})",
                       InferenceSpecification={
                           "Containers": [{"Image": self.image_uri, "ModelDataUrl": url}],
                           "SupportedContentTypes": ["text/csv"],
                           "SupportedResponseMIMETypes": ["text/csv"]},
                       ModelApprovalStatus=STATUS_FOR_STAGE[manifest.stage],
                       CustomerMetadataProperties={
                           META_SHA256: manifest.sha256, META_ARTIFACT: manifest.artifact,
                           META_FRAMEWORK: manifest.framework, META_SOURCE: manifest.key,
                           META_BYTES: str(len(artifact))})
        except RegistryUnavailableError as exc:
            self._mark_down(str(exc))
            raise self._unavailable(f"{manifest.key} was not registered") from None

    def _upload(self, bucket: str, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            put_verified_object(self._s3, bucket, key, data)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"s3://{bucket}/{key}") from None

    def _ensure_group(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._sm.describe_model_package_group(ModelPackageGroupName=self.group)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ValidationException":
                raise translate(exc, self.description) from None
            self._call(self._sm.create_model_package_group, ModelPackageGroupName=self.group,
                       ModelPackageGroupDescription="FraudLens models")

    def _set_status(self, pkg: dict[str, Any], status: str) -> None:
        # CustomerMetadataProperties are passed back unchanged: SageMaker merges them, and
        # moto (5.2) would otherwise drop them on any update.
        self._call(self._sm.update_model_package, ModelPackageArn=pkg["ModelPackageArn"],
                   ModelApprovalStatus=status,
                   CustomerMetadataProperties=pkg.get("CustomerMetadataProperties") or {})

    def write_manifest(self, manifest: Manifest) -> None:
        """Only the stage can change in SageMaker: it becomes the approval status."""
        self._writable(f"change {manifest.key}")
        if manifest.name != self.group:
            raise RegistryError(f"{manifest.key} does not belong to {self.description}")
        try:
            packages = self._packages()
            by_version = {str(p["ModelPackageVersion"]): p for p in packages}
            pkg = by_version.get(manifest.version)
            if pkg is None:
                raise RegistryError(f"{self.description} has no version {manifest.version}")
            anchor = str((pkg.get("CustomerMetadataProperties") or {}).get(META_SHA256, ""))
            if anchor.lower() != manifest.sha256:
                raise RegistryError(f"{manifest.key}: only the stage can change in SageMaker; "
                                    "register a new version for a new artifact")
            if manifest.stage == "champion":
                for p in packages:
                    if (int(p["ModelPackageVersion"]) > int(manifest.version)
                            and p.get("ModelApprovalStatus") == "Approved" and _ours(p)):
                        self._set_status(p, "Rejected")
            self._set_status(pkg, STATUS_FOR_STAGE[manifest.stage])
        except RegistryUnavailableError as exc:
            self._mark_down(str(exc))
            raise self._unavailable(f"{manifest.key} was not changed") from None
        self.cache.refresh(manifest)


def _declared_bytes(meta: dict[str, Any], cap: int) -> int:
    """The artifact size a package declares (`fraudlens_artifact_bytes`), within the artifact
    limit; the limit itself when a package predates the key."""
    raw = str(meta.get(META_BYTES, "")).strip()
    if not raw:
        return cap
    if not raw.isdigit() or int(raw) > cap:
        raise ArtifactFormatError(f"{META_BYTES}={raw[:32]!r} is not a size within the "
                                  f"{cap:,}-byte artifact limit; refused")
    return int(raw)


def _ours(pkg: dict[str, Any]) -> bool:
    """A package FraudLens can read: it carries the artifact's SHA-256 in its metadata."""
    return META_SHA256 in (pkg.get("CustomerMetadataProperties") or {})


def _model_data_url(pkg: dict[str, Any], where: str) -> str:
    try:
        url = pkg["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    except (KeyError, IndexError, TypeError):
        raise RegistryError(f"{where}: the package has no "
                            "InferenceSpecification.Containers[0].ModelDataUrl") from None
    return str(url)
