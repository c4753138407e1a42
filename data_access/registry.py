"""The model registry: versioned artifacts with manifests, verified before anything parses them.

A root is a backend (`RegistryRoot`): the local folder here; S3 and SageMaker roots implement
the same interface. `ModelRegistry` adds resolution (`name@version`), verification and loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from data_access.exports import atomic_write_bytes
from explainers.errors import ChecksumError, ManifestError, RegistryError
from explainers.model import LoadedModel, framework
from explainers.schema import FeatureSchema

STAGES = ("candidate", "champion", "archived")
REQUIRED_KEYS = ("name", "version", "framework", "library_version", "artifact", "sha256",
                 "feature_schema", "target", "training_window", "seed", "metrics",
                 "created_at", "stage")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(kind: str, value: str) -> str:
    """Names and versions become folder names and table names: keep them plain."""
    if not _NAME.match(value) or ".." in value:
        raise ManifestError(f"{kind} {value!r} must be letters, digits, '_', '-' or '.'")
    return value


@dataclass(frozen=True)
class Manifest:
    """A registered model version, as `manifest.json` describes it."""

    name: str
    version: str
    framework: str
    library_version: str
    artifact: str
    sha256: str
    feature_schema: FeatureSchema
    target: str
    training_window: Mapping[str, str]
    seed: int
    metrics: Mapping[str, float]
    created_at: str
    stage: str
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "manifest") -> Manifest:
        if not isinstance(data, Mapping):
            raise ManifestError(f"{source} must be a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ManifestError(f"{source} is missing required field(s): {', '.join(missing)}")
        framework(str(data["framework"]))
        if data["stage"] not in STAGES:
            raise ManifestError(f"{source}: stage {data['stage']!r} must be one of {STAGES}")
        metrics = data["metrics"]
        if not isinstance(metrics, Mapping) or not {"roc_auc", "pr_auc"} <= set(metrics):
            raise ManifestError(f"{source}: metrics must hold at least roc_auc and pr_auc")
        window = data["training_window"]
        if not isinstance(window, Mapping) or not {"start", "end"} <= set(window):
            raise ManifestError(f"{source}: training_window needs start and end")
        artifact = str(data["artifact"])
        if os.path.basename(artifact) != artifact or artifact.startswith("."):
            raise ManifestError(f"{source}: artifact must be a plain file name, got {artifact!r}")
        extra = {k: v for k, v in data.items() if k not in REQUIRED_KEYS}
        return cls(
            name=check_name("Model name", str(data["name"])),
            version=check_name("Version", str(data["version"])),
            framework=str(data["framework"]), library_version=str(data["library_version"]),
            artifact=artifact, sha256=str(data["sha256"]).lower(),
            feature_schema=FeatureSchema.from_dict(data["feature_schema"]),
            target=str(data["target"]), training_window=dict(window), seed=int(data["seed"]),
            metrics={k: float(v) for k, v in metrics.items()},
            created_at=str(data["created_at"]), stage=str(data["stage"]), extra=extra)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "version": self.version, "framework": self.framework,
               "library_version": self.library_version, "artifact": self.artifact,
               "sha256": self.sha256, "feature_schema": self.feature_schema.to_dict(),
               "target": self.target, "training_window": dict(self.training_window),
               "seed": self.seed, "metrics": dict(self.metrics), "created_at": self.created_at,
               "stage": self.stage}
        out.update(self.extra)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


class RegistryRoot(Protocol):
    """Where manifests and artifacts live: a folder, a bucket, a model package group."""

    description: str

    def list_manifests(self) -> list[Manifest]: ...
    def read_artifact(self, manifest: Manifest) -> bytes: ...
    def write_version(self, manifest: Manifest, artifact: bytes) -> None: ...
    def write_manifest(self, manifest: Manifest) -> None: ...


class LocalRegistryRoot:
    """`<root>/<name>/<version>/{manifest.json, artifact}` on the local disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.description = str(self.path)

    def _dir(self, name: str, version: str) -> Path:
        return self.path / check_name("Model name", name) / check_name("Version", version)

    def list_manifests(self) -> list[Manifest]:
        if not self.path.is_dir():
            return []
        out = []
        for mpath in sorted(self.path.glob("*/*/manifest.json")):
            try:
                data = json.loads(mpath.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise ManifestError(f"{mpath}: not readable JSON ({exc})") from None
            out.append(Manifest.from_dict(data, source=str(mpath)))
        return out

    def read_artifact(self, manifest: Manifest) -> bytes:
        path = self._dir(manifest.name, manifest.version) / manifest.artifact
        try:
            return path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"Cannot read artifact {path}: {exc.strerror}") from None

    def write_version(self, manifest: Manifest, artifact: bytes) -> None:
        folder = self._dir(manifest.name, manifest.version)
        if (folder / "manifest.json").exists():
            raise RegistryError(f"{manifest.key} is already registered; use a new version")
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(folder / manifest.artifact, artifact)
        # the manifest goes last: a version without one does not exist
        self.write_manifest(manifest)

    def write_manifest(self, manifest: Manifest) -> None:
        folder = self._dir(manifest.name, manifest.version)
        atomic_write_bytes(folder / "manifest.json", manifest.to_json().encode("utf-8"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


class ModelRegistry:
    """Resolve, verify, load and register models in one root."""

    def __init__(self, root: RegistryRoot) -> None:
        self.root = root

    def list(self) -> list[Manifest]:
        return sorted(self.root.list_manifests(),
                      key=lambda m: (m.name, _version_key(m.version)))

    def resolve(self, ref: str) -> Manifest:
        """`name@version`, or `name` for its champion, else its newest version."""
        name, _, version = ref.partition("@")
        found = [m for m in self.list() if m.name == name]
        if not found:
            known = ", ".join(sorted({m.name for m in self.list()})) or "none"
            raise RegistryError(f"No model named {name!r} is registered (registered: {known})")
        if version:
            for m in found:
                if m.version == version:
                    return m
            raise RegistryError(f"{name!r} has no version {version!r} "
                                f"(versions: {', '.join(m.version for m in found)})")
        champions = [m for m in found if m.stage == "champion"]
        return (champions or found)[-1]

    def verified_artifact(self, manifest: Manifest) -> bytes:
        """The artifact's bytes, only if they match the manifest's SHA-256 and format."""
        data = self.root.read_artifact(manifest)
        digest = sha256_hex(data)
        if digest != manifest.sha256:
            raise ChecksumError(
                f"Checksum mismatch for {manifest.key} artifact {manifest.artifact}: expected "
                f"{manifest.sha256[:12]}…, got {digest[:12]}…; the file was changed or corrupted. "
                "Re-register the model or restore the file.")
        framework(manifest.framework).check_format(data, manifest.artifact)
        return data

    def load(self, ref: str | Manifest) -> LoadedModel:
        manifest = ref if isinstance(ref, Manifest) else self.resolve(ref)
        data = self.verified_artifact(manifest)
        try:
            native = framework(manifest.framework).load(data)
        except Exception as exc:  # the framework's own parse errors
            raise RegistryError(f"{manifest.key}: {manifest.framework} could not load "
                                f"{manifest.artifact}: {exc}") from None
        return LoadedModel(manifest.name, manifest.version, manifest.framework,
                           manifest.feature_schema, native)

    def register(self, artifact: bytes, *, name: str, version: str, framework_name: str,
                 artifact_name: str, schema: FeatureSchema, training_window: Mapping[str, str]
                 | None = None, seed: int = 0, metrics: Mapping[str, float] | None = None,
                 library_version: str = "", stage: str = "candidate",
                 extra: Mapping[str, Any] | None = None) -> Manifest:
        """Check the artifact's format, then write it with its manifest."""
        fw = framework(framework_name)
        fw.check_format(artifact, artifact_name)
        manifest = Manifest.from_dict({
            "name": name, "version": version, "framework": framework_name,
            "library_version": library_version or _library_version(framework_name),
            "artifact": artifact_name, "sha256": sha256_hex(artifact),
            "feature_schema": schema.to_dict(), "target": schema.target,
            "training_window": dict(training_window or {"start": "", "end": ""}),
            "seed": seed, "metrics": dict(metrics or {"roc_auc": float("nan"),
                                                      "pr_auc": float("nan")}),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"), "stage": stage,
            **dict(extra or {})})
        self.root.write_version(manifest, artifact)
        return manifest

    def set_stage(self, ref: str, stage: str) -> Manifest:
        """Move a version to a stage. A registry serves one use case, so it has at most one
        champion: promoting one archives the previous champion, whatever its name."""
        if stage not in STAGES:
            raise ManifestError(f"Stage {stage!r} must be one of {', '.join(STAGES)}")
        target = self.resolve(ref)
        if stage == "champion":
            for m in self.list():
                if m.stage == "champion" and m.key != target.key:
                    self.root.write_manifest(replace(m, stage="archived"))
        updated = replace(target, stage=stage)
        self.root.write_manifest(updated)
        return updated


def _library_version(framework_name: str) -> str:
    from importlib.metadata import version

    return version(framework_name)
