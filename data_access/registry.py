"""The model registry: versioned artifacts with manifests, verified before anything parses them.

A root is a backend (`RegistryRoot`): the local folder here; S3 and SageMaker roots implement
the same interface. `ModelRegistry` adds resolution (`name@version`), verification and loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol

from data_access.exports import atomic_write_bytes, fsync_dir
from data_access.model_probe import VERDICTS_FILE, ModelProbe
from explainers.artifact_check import limits_from
from explainers.errors import (
    ArtifactFormatError,
    ChecksumError,
    ExportError,
    FraudLensError,
    ManifestError,
    RegistryError,
)
from explainers.model import LoadedModel, framework
from explainers.schema import FeatureSchema

STAGES = ("candidate", "champion", "archived")
REQUIRED_KEYS = ("name", "version", "framework", "library_version", "artifact", "sha256",
                 "feature_schema", "target", "training_window", "seed", "metrics",
                 "created_at", "stage")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CACHE_DIR = ".registry-cache"  # in the workspace: remote roots' verified copies, probe verdicts
QUARANTINE_FILE = "quarantine.json"  # beside a manifest: the version is unusable, and why
MAX_MANIFEST_BYTES = 1 << 20


def storage_key(model_id: str) -> str:
    """The normalised identifier a model's stored data is keyed by (e.g. its SHAP table):
    runs of anything but letters and digits become '_', case is folded."""
    return re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_").lower()


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
    """Where manifests and artifacts live: a folder, a bucket, a model package group.

    Roots may also expose `problems` (one line per manifest skipped by the last listing) and
    `probe_cache_path` (where probe verdicts are kept)."""

    description: str

    def list_manifests(self) -> list[Manifest]: ...
    def read_artifact(self, manifest: Manifest) -> bytes: ...
    def write_version(self, manifest: Manifest, artifact: bytes) -> None: ...
    def write_manifest(self, manifest: Manifest) -> None: ...


def read_manifest_file(path: Path) -> Manifest:
    """One `manifest.json`, size-capped; ManifestError naming the file when it is bad."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES:,} bytes")
        data = json.loads(raw)
    except (OSError, ValueError, RecursionError) as exc:
        raise ManifestError(f"{path}: not readable JSON ({one_line(exc)})") from None
    return manifest_from(data, str(path))


def manifest_from(data: Any, source: str) -> Manifest:
    """`Manifest.from_dict`, with any bad value (schema, framework, number) a ManifestError
    naming `source`: what a listing skips and reports."""
    try:
        return Manifest.from_dict(data, source=source)
    except ManifestError:
        raise
    except (FraudLensError, ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ManifestError(f"{source}: {one_line(exc)}") from None


def read_capped(path: Path, what: str) -> bytes:
    """A file's bytes, refused unread when it is larger than the artifact size limit."""
    cap = limits_from(os.environ).max_bytes
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > cap:
                raise ArtifactFormatError(f"{what} {path} is {size:,} bytes, over the "
                                          f"{cap:,}-byte limit; refused unread")
            data = fh.read(cap + 1)
    except OSError as exc:
        raise RegistryError(f"Cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > cap:
        raise ArtifactFormatError(f"{what} {path} grew past the {cap:,}-byte limit; refused")
    return data


class LocalRegistryRoot:
    """`<root>/<name>/<version>/{manifest.json, artifact}` on the local disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self.problems: list[str] = []
        self.probe_cache_path = self.path.parent / CACHE_DIR / VERDICTS_FILE

    def _dir(self, name: str, version: str) -> Path:
        return self.path / check_name("Model name", name) / check_name("Version", version)

    def list_manifests(self) -> list[Manifest]:
        """Every readable manifest; a bad one is skipped and described in `problems`."""
        self.problems = []
        if not self.path.is_dir():
            return []
        out = []
        for mpath in sorted(self.path.glob("*/*/manifest.json")):
            if mpath.parent.parent.name.startswith("."):
                continue  # a registration being staged
            try:
                manifest = read_manifest_file(mpath)
                if (manifest.name, manifest.version) != (mpath.parent.parent.name,
                                                         mpath.parent.name):
                    raise ManifestError(f"{mpath} describes {manifest.key}, which belongs in "
                                        f"{manifest.name}/{manifest.version}/")
            except ManifestError as exc:
                self.problems.append(str(exc))
                continue
            out.append(manifest)
        return out

    def read_artifact(self, manifest: Manifest) -> bytes:
        return read_capped(self._dir(manifest.name, manifest.version) / manifest.artifact,
                           "artifact")

    def write_version(self, manifest: Manifest, artifact: bytes) -> None:
        """All or nothing: stage artifact and manifest in a temp folder inside the root, read
        the artifact back, then one rename puts the version in place."""
        folder = self._dir(manifest.name, manifest.version)
        if folder.exists() and any(folder.iterdir()):
            raise RegistryError(f"{manifest.key} is already registered; use a new version")
        self.path.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.path))
        made_parent = not folder.parent.exists()
        try:
            atomic_write_bytes(staging / manifest.artifact, artifact)
            atomic_write_bytes(staging / "manifest.json", manifest.to_json().encode("utf-8"))
            if sha256_hex((staging / manifest.artifact).read_bytes()) != manifest.sha256:
                raise ChecksumError(f"{manifest.key}: the staged artifact does not read back "
                                    "as written; nothing was registered")
            folder.parent.mkdir(exist_ok=True)
            try:
                os.rename(staging, folder)
            except OSError:
                raise RegistryError(f"{manifest.key} is already registered (or its folder "
                                    f"{folder} is in the way); use a new version") from None
            fsync_dir(folder.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if made_parent:
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()  # only if still empty
            raise

    def write_manifest(self, manifest: Manifest) -> None:
        folder = self._dir(manifest.name, manifest.version)
        atomic_write_bytes(folder / "manifest.json", manifest.to_json().encode("utf-8"))

    def remove_version(self, manifest: Manifest) -> None:
        """Take a version out in one rename (then delete it): used to undo a registration."""
        folder = self._dir(manifest.name, manifest.version)
        trash = Path(tempfile.mkdtemp(prefix=".removing-", dir=self.path))
        os.rename(folder, trash / "version")
        shutil.rmtree(trash, ignore_errors=True)

    def mark_unusable(self, manifest: Manifest, reason: str) -> None:
        """Write `quarantine.json` beside the manifest: this artifact was refused, and why."""
        folder = self._dir(manifest.name, manifest.version)
        doc = {"sha256": manifest.sha256, "reason": reason,
               "at": datetime.now(UTC).isoformat(timespec="seconds")}
        with contextlib.suppress(OSError, ExportError):  # the verdict file remembers too
            atomic_write_bytes(folder / QUARANTINE_FILE, json.dumps(doc).encode("utf-8"))

    def unusable_reason(self, manifest: Manifest) -> str | None:
        """The reason recorded in `quarantine.json` for this exact artifact, if any."""
        path = self._dir(manifest.name, manifest.version) / QUARANTINE_FILE
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("sha256") != manifest.sha256:
            return None
        return str(doc.get("reason") or "refused by the model probe")


def one_line(exc: object, limit: int = 200) -> str:
    """An error (or any text) as one line of at most `limit` characters."""
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of `data`, as manifests record it (lowercase hex)."""
    return hashlib.sha256(data).hexdigest()


def verify_artifact(manifest: Manifest, data: bytes, *, where: str | None = None) -> None:
    """The one check before anything else touches artifact bytes: the manifest's SHA-256,
    then the framework's structural format check (size, depth, declared lengths)."""
    digest = sha256_hex(data)
    if digest != manifest.sha256:
        raise ChecksumError(
            f"Checksum mismatch for {manifest.key} artifact {where or manifest.artifact}: "
            f"expected {manifest.sha256[:12]}…, got {digest[:12]}…; the bytes were changed or "
            "corrupted. Nothing was kept and the last verified copy stays in use; restore the "
            "file or register the model again.")
    framework(manifest.framework).check_format(data, manifest.artifact)


def training_window(start: date | None, end: date | None) -> dict[str, str]:
    """A manifest's training window from its first and last training days (UTC, inclusive);
    '' marks a bound that is not known. The start must come before the end."""
    if start is not None and end is not None and start >= end:
        raise ManifestError(f"The training window must start before it ends: start {start}, "
                            f"end {end}")
    return {"start": f"{start.isoformat()}T00:00:00+00:00" if start else "",
            "end": f"{end.isoformat()}T23:59:59.999999+00:00" if end else ""}


def parse_metrics(text: str | None) -> dict[str, float] | None:
    """Holdout metrics given as JSON text: an object of finite numbers that holds at least
    roc_auc and pr_auc. None when no text is given."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not {"roc_auc", "pr_auc"} <= set(doc) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in doc.values()):
        raise ManifestError(f"Metrics {one_line(text, 80)!r} must be a JSON object of numbers "
                            'with at least roc_auc and pr_auc, e.g. {"roc_auc": 0.91, '
                            '"pr_auc": 0.42}')
    return {str(k): float(v) for k, v in doc.items()}


def _version_key(version: str) -> tuple[int, int | str]:
    return (0, int(version)) if version.isdigit() else (1, version)


class ModelRegistry:
    """Resolve, verify, load and register models in one root. No artifact byte reaches a
    parser in this process before the model probe passed it (see `data_access.model_probe`)."""

    def __init__(self, root: RegistryRoot, *, probe: ModelProbe | None = None) -> None:
        self.root = root
        self.probe = probe or ModelProbe(getattr(root, "probe_cache_path", None))

    def list(self) -> list[Manifest]:
        """Readable manifests, sorted; the skipped ones are described in `problems`."""
        return sorted(self.root.list_manifests(),
                      key=lambda m: (m.name, _version_key(m.version)))

    @property
    def problems(self) -> list[str]:
        """One line per manifest the last listing skipped (unreadable, invalid, misplaced)."""
        return list(getattr(self.root, "problems", []))

    def resolve(self, ref: str) -> Manifest:
        """`name@version`, or `name` for its champion, else its newest version."""
        name, _, version = ref.partition("@")
        listed = self.list()
        found = [m for m in listed if m.name == name]
        if not found:
            known = ", ".join(sorted({m.name for m in listed})) or "none"
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
        """The artifact's bytes, only if they match the manifest's SHA-256 and format and the
        model probe loaded them safely in a child process (once per artifact)."""
        data = self.root.read_artifact(manifest)
        verify_artifact(manifest, data)
        self._probe(manifest, data)
        return data

    def _probe(self, manifest: Manifest, data: bytes) -> None:
        marked = getattr(self.root, "unusable_reason", None)
        reason = marked(manifest) if marked else None
        if reason:
            raise ArtifactFormatError(f"{manifest.key}: {reason}")
        try:
            self.probe.ensure(manifest, data)
        except ArtifactFormatError as exc:
            mark = getattr(self.root, "mark_unusable", None)
            if mark is not None:
                mark(manifest, str(exc).removeprefix(f"{manifest.key}: "))
            raise

    def unusable(self) -> dict[str, str]:
        """`{model key: reason}` for registered versions the probe refused (no probing here)."""
        marked = getattr(self.root, "unusable_reason", None)
        out = {}
        for m in self.list():
            verdict = self.probe.cached(m)
            reason = (marked(m) if marked else None) or (
                verdict.reason if verdict is not None and not verdict.ok else None)
            if reason:
                out[m.key] = reason
        return out

    def load(self, ref: str | Manifest) -> LoadedModel:
        manifest = ref if isinstance(ref, Manifest) else self.resolve(ref)
        data = self.verified_artifact(manifest)
        try:
            native = framework(manifest.framework).load(data)
        except Exception as exc:  # the framework's own parse errors
            raise RegistryError(f"{manifest.key}: {manifest.framework} could not load "
                                f"{manifest.artifact}: {one_line(exc)}") from None
        return LoadedModel(manifest.name, manifest.version, manifest.framework,
                           manifest.feature_schema, native)

    def check_new_key(self, name: str, version: str) -> None:
        """Refuse a name@version that is registered, or whose storage key (case and
        punctuation folded) is already another registered model's."""
        key = f"{check_name('Model name', name)}@{check_name('Version', version)}"
        wanted = storage_key(key)
        for m in self.list():
            if m.key == key:
                raise RegistryError(f"{key} is already registered; use a new version")
            if storage_key(m.key) == wanted:
                raise RegistryError(
                    f"{key} would share the storage key {wanted!r} with the registered "
                    f"{m.key}; choose a name or version that differs in more than case or "
                    "punctuation")

    def register(self, artifact: bytes, *, name: str, version: str, framework_name: str,
                 artifact_name: str, schema: FeatureSchema, training_window: Mapping[str, str]
                 | None = None, seed: int = 0, metrics: Mapping[str, float] | None = None,
                 library_version: str = "", stage: str = "candidate",
                 extra: Mapping[str, Any] | None = None) -> Manifest:
        """All or nothing: check the format and the key, probe-load the model in a child
        process, then write artifact and manifest in one step. On failure nothing is kept."""
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
            "artifact_bytes": len(artifact), **dict(extra or {})})
        self.check_new_key(manifest.name, manifest.version)
        self.probe.ensure(manifest, artifact)
        self.root.write_version(manifest, artifact)
        return manifest

    def discard(self, manifest: Manifest) -> None:
        """Undo a registration whose follow-up steps failed (local roots only)."""
        remove = getattr(self.root, "remove_version", None)
        if remove is None:
            raise RegistryError(f"{self.root.description} cannot remove {manifest.key}")
        remove(manifest)

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
