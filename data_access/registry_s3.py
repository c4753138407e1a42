"""A model registry root in S3, served from a verified local cache when S3 is slow or down.

Layout and manifests are the local root's: `s3://bucket/<prefix>/<name>/<version>/manifest.json`
beside the artifact. Every download is checked against S3's own SHA-256 checksum when S3 returns
one and against the manifest's SHA-256 and the framework's format before anything parses it;
only then is it written (atomically) to the verified cache,
`<cache_dir>/s3/<bucket>/<prefix>/<name>/<version>/`, which is itself a local registry root.

When S3 cannot be reached within bounded time (each call: 2 s connect, 5 s read, 2 tries; a
listing: `list_deadline_s`, 8 s of wall clock, whatever S3 does), the root marks itself
`degraded`, keeps the one-line reason in `last_error`, and serves the cached manifests and
artifacts; for `cooldown_s` seconds after a failure it does not try S3 again, so every page
render does not pay the timeout. `RemoteRootBase` and `VerifiedCache` are shared with
the SageMaker root.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from data_access.exports import atomic_write_bytes
from data_access.registry import LocalRegistryRoot, Manifest, check_name, sha256_hex
from explainers.errors import (
    ChecksumError,
    ExportError,
    ManifestError,
    RegistryError,
    RegistryUnavailableError,
)
from explainers.model import framework

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
TOTAL_ATTEMPTS = 2  # the first try and one retry
COOLDOWN_S = 30.0
LIST_DEADLINE_S = 8.0
MAX_MANIFEST_BYTES = 1 << 20
MAX_ARTIFACT_BYTES = 2 << 30

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=-]{0,127}$")
# Client errors that mean "the service is not usable right now", not "you asked for nothing".
_UNAVAILABLE_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "SlowDown", "Throttling",
    "ThrottlingException", "ServiceUnavailable", "InternalError", "ExpiredToken",
    "ExpiredTokenException", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
    "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> (`bucket`, `some/prefix`), refusing odd segments."""
    if not uri.startswith("s3://"):
        raise RegistryError(f"{uri!r} is not an s3:// address")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise RegistryError(f"{uri!r}: {bucket!r} is not a valid S3 bucket name")
    parts = [p for p in prefix.split("/") if p]
    for part in parts:
        if not _SEGMENT.match(part) or ".." in part:
            raise RegistryError(f"{uri!r}: prefix segment {part!r} must be letters, digits, "
                                "'_', '-', '=' or '.'")
    return bucket, "/".join(parts)


def client_config(**overrides: Any) -> Any:
    """The bounded botocore configuration every FraudLens AWS client uses."""
    from botocore.config import Config

    opts: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
        # botocore's "max_attempts" counts retries (2 -> 3 tries, 15 s against a hung
        # endpoint); "total_max_attempts" counts tries
        "retries": {"total_max_attempts": TOTAL_ATTEMPTS, "mode": "standard"},
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_supported",
    }
    opts.update(overrides)
    return Config(**opts)


_LOADER: Any = None
_LOADER_LOCK = threading.Lock()


def _shared_loader() -> Any:
    """One botocore data loader for the process: it caches the parsed service models, which
    otherwise cost ~0.3 s of JSON per client. Credentials still resolve per session."""
    global _LOADER
    with _LOADER_LOCK:
        if _LOADER is None:
            from botocore.loaders import create_loader

            _LOADER = create_loader()
        return _LOADER


def aws_client(service: str, *, endpoint_url: str | None = None,
               region_name: str | None = None) -> Any:
    """A botocore client from the standard AWS configuration (environment, profiles, instance
    role) with bounded timeouts and retries; `endpoint_url` for S3-compatible stores and tests
    (`AWS_ENDPOINT_URL_S3` in the environment works too)."""
    import botocore.session
    from botocore.exceptions import BotoCoreError

    extra = {"s3": {"addressing_style": "path"}} if endpoint_url and service == "s3" else {}
    try:
        session = botocore.session.get_session()
        session.register_component("data_loader", _shared_loader())
        return session.create_client(service, endpoint_url=endpoint_url,
                                     region_name=region_name, config=client_config(**extra))
    except BotoCoreError as exc:  # e.g. NoRegionError
        raise RegistryError(f"Cannot configure the AWS {service} client: {exc}. Set "
                            "AWS_REGION (or a profile) and credentials.") from None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def translate(exc: Exception, where: str) -> Exception:
    """A boto error as a FraudLens error: unavailable (fall back) or a plain registry error."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        FlexibleChecksumError,
        NoRegionError,
    )

    if isinstance(exc, FlexibleChecksumError):
        return ChecksumError(f"{where}: the bytes S3 sent do not match S3's own checksum "
                             f"({_one_line(exc)}); refused")
    if isinstance(exc, NoRegionError):
        return RegistryError(f"{where}: no AWS region configured; set AWS_REGION")
    if isinstance(exc, BotoCoreError):  # connection refused, timeouts, missing credentials
        return RegistryUnavailableError(_one_line(exc))
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = _one_line(f"{code}: {err.get('Message', '')}".strip(": "))
        if status >= 500 or status in (403, 429) or code in _UNAVAILABLE_CODES:
            return RegistryUnavailableError(message or f"HTTP {status}")
        if code in ("NoSuchBucket",):
            return RegistryError(f"{where}: the bucket does not exist ({message})")
        return RegistryError(f"{where}: {message or f'HTTP {status}'}")
    return exc


def s3_checksum(data: bytes) -> str:
    """S3's `ChecksumSHA256` form: the base64 of the raw SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def get_verified_object(client: Any, bucket: str, key: str, *, max_bytes: int) -> bytes:
    """An object's bytes, checked against S3's SHA-256 when S3 has one (full-object, not a
    multipart composite). Raises boto errors as they come (callers `translate`)."""
    resp = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    where = f"s3://{bucket}/{key}"
    size = int(resp.get("ContentLength") or 0)
    if size > max_bytes:
        resp["Body"].close()
        raise RegistryError(f"{where} is {size:,} bytes, more than the {max_bytes:,} allowed")
    data = resp["Body"].read()
    expected = resp.get("ChecksumSHA256")
    if expected and "-" not in expected and resp.get("ChecksumType", "FULL_OBJECT") != \
            "COMPOSITE" and expected != s3_checksum(data):
        raise ChecksumError(f"{where}: bytes do not match S3's SHA-256 checksum; refused")
    return data


def put_verified_object(client: Any, bucket: str, key: str, data: bytes) -> None:
    """Upload with our SHA-256: S3 refuses a body that arrives different, and the checksum it
    reports storing must be ours. Raises boto errors as they come (callers `translate`)."""
    checksum = s3_checksum(data)
    resp = client.put_object(Bucket=bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                             ChecksumSHA256=checksum)
    stored = resp.get("ChecksumSHA256")
    if stored and stored != checksum:
        raise ChecksumError(f"s3://{bucket}/{key}: S3 stored checksum {stored}, expected "
                            f"{checksum}; the upload was corrupted")


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
            data = path.read_bytes()
        except OSError:
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
        self.last_error = _one_line(reason)
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
        verify_bytes(manifest, data, where=self._where(manifest))
        self.cache.put(manifest, data)
        return data

    def _where(self, manifest: Manifest) -> str:
        return f"{self.description}/{manifest.name}/{manifest.version}/{manifest.artifact}"


def verify_bytes(manifest: Manifest, data: bytes, *, where: str) -> None:
    """The manifest's SHA-256, then the framework's format check; before any parser runs."""
    digest = sha256_hex(data)
    if digest != manifest.sha256:
        raise ChecksumError(
            f"Checksum mismatch for {manifest.key} artifact {where}: expected "
            f"{manifest.sha256[:12]}…, got {digest[:12]}…; the object was changed or corrupted. "
            "Nothing was cached; the last verified copy stays in use.")
    framework(manifest.framework).check_format(data, manifest.artifact)


class S3RegistryRoot(RemoteRootBase):
    """`s3://bucket/prefix` as a registry root (see the module docstring)."""

    def __init__(self, bucket: str, prefix: str = "", *, cache_dir: str | Path,
                 endpoint_url: str | None = None, region_name: str | None = None,
                 client: Any = None, cooldown_s: float = COOLDOWN_S,
                 list_deadline_s: float = LIST_DEADLINE_S) -> None:
        self.bucket, self.prefix = parse_s3_uri(f"s3://{bucket}/{prefix}")
        self.description = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        parts = [p for p in self.prefix.split("/") if p]
        self.cache = VerifiedCache(Path(cache_dir).joinpath("s3", self.bucket, *parts))
        self._client = client or aws_client("s3", endpoint_url=endpoint_url,
                                            region_name=region_name)
        self._init_state(cooldown_s, list_deadline_s)

    @classmethod
    def from_uri(cls, uri: str, **opts: Any) -> S3RegistryRoot:
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, **opts)

    def key(self, name: str, version: str, filename: str) -> str:
        parts = (self.prefix, check_name("Model name", name), check_name("Version", version),
                 filename)
        return "/".join(p for p in parts if p)

    def _call(self, fn: Any, where: str, /, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, where) from None

    def _get(self, key: str, max_bytes: int) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return get_verified_object(self._client, self.bucket, key, max_bytes=max_bytes)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"s3://{self.bucket}/{key}") from None

    def _list_remote(self) -> list[Manifest]:
        base = f"{self.prefix}/" if self.prefix else ""
        pattern = re.compile(rf"^{re.escape(base)}([^/]+)/([^/]+)/manifest\.json$")
        keys: list[tuple[str, str, str]] = []
        token: dict[str, str] = {}
        while True:
            page = self._call(self._client.list_objects_v2, self.description,
                              Bucket=self.bucket, Prefix=base, **token)
            for obj in page.get("Contents", []):
                match = pattern.match(obj["Key"])
                if match:
                    keys.append((obj["Key"], match.group(1), match.group(2)))
            if not page.get("IsTruncated"):
                break
            token = {"ContinuationToken": page["NextContinuationToken"]}
        manifests = []
        for key, name, version in keys:
            source = f"s3://{self.bucket}/{key}"
            try:
                doc = json.loads(self._get(key, MAX_MANIFEST_BYTES))
            except ValueError as exc:
                raise ManifestError(f"{source}: not readable JSON ({exc})") from None
            manifest = Manifest.from_dict(doc, source=source)
            if (manifest.name, manifest.version) != (name, version):
                raise ManifestError(f"{source} describes {manifest.key}, not {name}@{version}")
            manifests.append(manifest)
        return manifests

    def _fetch(self, manifest: Manifest) -> bytes:
        return self._get(self.key(manifest.name, manifest.version, manifest.artifact),
                         MAX_ARTIFACT_BYTES)

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise translate(exc, f"s3://{self.bucket}/{key}") from None
        except BotoCoreError as exc:
            raise translate(exc, f"s3://{self.bucket}/{key}") from None
        return True

    def _put(self, key: str, data: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            put_verified_object(self._client, self.bucket, key, data)
        except (BotoCoreError, ClientError) as exc:
            raise translate(exc, f"s3://{self.bucket}/{key}") from None

    def _writable(self, action: str) -> None:
        """Writes never fall back: say plainly that the registry is not reachable."""
        if not self._remote_allowed():
            raise self._unavailable(f"cannot {action} until it is reachable again")

    def write_version(self, manifest: Manifest, artifact: bytes) -> None:
        self._writable(f"push {manifest.key}")
        verify_bytes(manifest, artifact, where=f"local {manifest.artifact}")
        mkey = self.key(manifest.name, manifest.version, "manifest.json")
        try:
            if self._exists(mkey):
                raise RegistryError(f"{manifest.key} is already registered in "
                                    f"{self.description}; use a new version")
            self._put(self.key(manifest.name, manifest.version, manifest.artifact), artifact)
            # the manifest goes last: a version without one does not exist
            self._put(mkey, manifest.to_json().encode("utf-8"))
        except RegistryUnavailableError as exc:
            self._mark_down(str(exc))
            raise self._unavailable(f"{manifest.key} was not pushed") from None

    def write_manifest(self, manifest: Manifest) -> None:
        self._writable(f"change {manifest.key}")
        mkey = self.key(manifest.name, manifest.version, "manifest.json")
        try:
            if not self._exists(mkey):
                raise RegistryError(f"{manifest.key} is not registered in {self.description}")
            self._put(mkey, manifest.to_json().encode("utf-8"))
        except RegistryUnavailableError as exc:
            self._mark_down(str(exc))
            raise self._unavailable(f"{manifest.key} was not changed") from None
        self.cache.refresh(manifest)


def renamed(manifest: Manifest, **changes: Any) -> Manifest:
    """`dataclasses.replace` that re-validates names and versions."""
    if "name" in changes:
        check_name("Model name", changes["name"])
    if "version" in changes:
        check_name("Version", changes["version"])
    return replace(manifest, **changes)
