"""What the S3 and SageMaker registry roots share: the verified local cache, the degraded-state
bookkeeping of a remote root (`RemoteRootBase`), and the artifact size limit for downloads."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_access.exports import atomic_write_bytes
from data_access.registry import (
    LocalRegistryRoot,
    Manifest,
    check_name,
    one_line,
    read_capped,
    sha256_hex,
    verify_artifact,
)
from explainers.artifact_check import limits_from
from explainers.errors import (
    ChecksumError,
    ExportError,
    ManifestError,
    RegistryError,
    RegistryUnavailableError,
)


class VerifiedCache:
    """Models that passed verification, kept as a local registry root; nothing else enters."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.root = LocalRegistryRoot(self.path)

    def _dir(self, manifest: Manifest) -> Path:
        return self.path / check_name("Model name", manifest.name) / check_name(
            "Version", manifest.version)

    def manifests(self) -> list[Manifest]:
        """Cached manifests whose artifact is present (verified again when read)."""
        try:
            found = self.root.list_manifests()
        except ManifestError:
            return []
        return [m for m in found if (self._dir(m) / m.artifact).is_file()]

    def manifest(self, name: str, version: str) -> Manifest | None:
        path = self.path / check_name("Model name", name) / check_name("Version", version)
        try:
            data = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
            return Manifest.from_dict(data, source=str(path / "manifest.json"))
        except (OSError, ValueError, ManifestError):
            return None

    def get(self, manifest: Manifest, *, strict: bool = False) -> bytes | None:
        """The cached bytes if they match `manifest`'s SHA-256; None on a miss. A cached file
        that does not match is a miss, or with `strict` a ChecksumError naming it."""
        path = self._dir(manifest) / manifest.artifact
        try:
            data = read_capped(path, "cached artifact")  # over the size limit: refused unread
        except RegistryError:  # missing or unreadable: a miss
            return None
        digest = sha256_hex(data)
        if digest == manifest.sha256:
            return data
        if strict:
            raise ChecksumError(
                f"Checksum mismatch for the cached copy {path}: expected "
                f"{manifest.sha256[:12]}…, got {digest[:12]}…; the cache was changed or "
                "corrupted and the registry cannot be reached to fetch it again.")
        return None

    def put(self, manifest: Manifest, data: bytes) -> None:
        """Store a verified artifact, then its manifest (a version without one does not exist).
        A cache that cannot be written only costs a later download."""
        if sha256_hex(data) != manifest.sha256:  # callers verify first; never cache otherwise
            raise ChecksumError(f"{manifest.key}: refusing to cache unverified bytes")
        folder = self._dir(manifest)
        with contextlib.suppress(OSError, ExportError):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(folder / manifest.artifact, data)
            atomic_write_bytes(folder / "manifest.json", manifest.to_json().encode("utf-8"))

    def refresh(self, manifest: Manifest) -> None:
        """Keep a cached manifest's stage (and other metadata) current; same artifact only."""
        cached = self.manifest(manifest.name, manifest.version)
        if cached is None or cached.sha256 != manifest.sha256 or cached == manifest:
            return
        with contextlib.suppress(OSError, ExportError):
            atomic_write_bytes(self._dir(manifest) / "manifest.json",
                               manifest.to_json().encode("utf-8"))


class RemoteRootBase:
    """Degraded-state bookkeeping shared by the S3 and SageMaker roots.

    `degraded` is True while the last attempt failed and the cache is being served;
    `last_error` holds the one-line reason; `degraded_message` is what the app shows.
    """

    description: str
    cache: VerifiedCache
    cooldown_s: float

    def _init_state(self, cooldown_s: float, list_deadline_s: float) -> None:
        self.cooldown_s = cooldown_s
        self.list_deadline_s = list_deadline_s
        self.degraded = False
        self.last_error: str | None = None
        self._retry_at = 0.0

    @property
    def degraded_message(self) -> str | None:
        if not self.degraded:
            return None
        return (f"Model registry {self.description} unavailable ({self.last_error}); "
                "serving the last verified copy")

    def _remote_allowed(self) -> bool:
        return time.monotonic() >= self._retry_at

    def _mark_down(self, reason: str) -> None:
        self.degraded = True
        self.last_error = one_line(reason)
        self._retry_at = time.monotonic() + self.cooldown_s

    def _mark_up(self) -> None:
        self.degraded = False
        self.last_error = None
        self._retry_at = 0.0

    def _unavailable(self, what: str) -> RegistryUnavailableError:
        return RegistryUnavailableError(
            f"Model registry {self.description} unavailable ({self.last_error}); {what}")

    def _list_remote(self) -> list[Manifest]:  # pragma: no cover - implemented by roots
        raise NotImplementedError

    def list_manifests(self) -> list[Manifest]:
        """The remote's manifests; when it cannot be reached, the verified cache's (degraded).
        Raises RegistryUnavailableError only when there is nothing verified to serve."""
        if self._remote_allowed():
            try:
                manifests = self._list_within_deadline()
            except RegistryUnavailableError as exc:
                self._mark_down(str(exc))
            else:
                self._mark_up()
                for m in manifests:
                    self.cache.refresh(m)
                return manifests
        cached = self.cache.manifests()
        if not cached:
            raise self._unavailable("no verified copy is cached on this machine yet")
        return cached

    def _list_within_deadline(self) -> list[Manifest]:
        """`_list_remote` bounded in wall-clock time: a slow remote cannot stall the caller
        past `list_deadline_s`. A call still running then finishes in the background, bounded
        by the client's own timeouts (and may still fill the cache for next time)."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["manifests"] = self._list_remote()
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc

        # a daemon thread: a process that is exiting does not wait for a hung remote
        worker = threading.Thread(target=work, name="fraudlens-registry-list", daemon=True)
        worker.start()
        worker.join(self.list_deadline_s)
        if worker.is_alive():
            raise RegistryUnavailableError(f"no answer within {self.list_deadline_s:g} s")
        if "error" in box:
            raise box["error"]
        return box["manifests"]

    def _fetch(self, manifest: Manifest) -> bytes:  # pragma: no cover - implemented by roots
        raise NotImplementedError

    def read_artifact(self, manifest: Manifest) -> bytes:
        """Verified bytes: from the cache when it holds this exact artifact, else downloaded,
        verified (S3 checksum, manifest SHA-256, format) and cached."""
        cached = self.cache.get(manifest)
        if cached is not None:
            return cached
        if not self._remote_allowed():
            self.cache.get(manifest, strict=True)  # a corrupted cached copy: say so
            raise self._unavailable(f"{manifest.key} is not cached on this machine")
        try:
            data = self._fetch(manifest)
        except RegistryUnavailableError as exc:
            self._mark_down(str(exc))
            self.cache.get(manifest, strict=True)
            raise self._unavailable(f"{manifest.key} is not cached on this machine") from None
        verify_artifact(manifest, data, where=self._where(manifest))
        self.cache.put(manifest, data)
        return data

    def _where(self, manifest: Manifest) -> str:
        return f"{self.description}/{manifest.name}/{manifest.version}/{manifest.artifact}"


def max_artifact_bytes() -> int:
    """The most bytes an artifact download may bring (FRAUDLENS_MAX_ARTIFACT_BYTES)."""
    return limits_from(os.environ).max_bytes


def renamed(manifest: Manifest, **changes: Any) -> Manifest:
    """`dataclasses.replace` that re-validates names and versions."""
    if "name" in changes:
        check_name("Model name", changes["name"])
    if "version" in changes:
        check_name("Version", changes["version"])
    return replace(manifest, **changes)
