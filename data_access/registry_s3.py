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
render does not pay the timeout. `RemoteRootBase` and `VerifiedCache` (in `registry_remote`) are
shared with the SageMaker root.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
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
from data_access.registry_remote import RemoteRootBase, VerifiedCache, max_artifact_bytes
from explainers.errors import (
    ChecksumError,
    ManifestError,
    RegistryError,
    RegistryUnavailableError,
)

CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 5
TOTAL_ATTEMPTS = 2  # the first try and one retry
COOLDOWN_S = 30.0
LIST_DEADLINE_S = 8.0

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
    chunks, total = [], 0
    while chunk := resp["Body"].read(1 << 20):  # the final b"" lets botocore check its checksum
        total += len(chunk)
        if total > max_bytes:  # a lying Content-Length still stops at the cap
            resp["Body"].close()
            raise RegistryError(f"{where} sent more than the {max_bytes:,} bytes allowed")
        chunks.append(chunk)
    data = b"".join(chunks)
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
        self.probe_cache_path = Path(cache_dir) / VERDICTS_FILE
        self.problems: list[str] = []
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
        manifests, problems = [], []
        for key, name, version in keys:
            try:
                manifests.append(self._read_manifest(key, name, version))
            except (ManifestError, ChecksumError, RegistryError) as exc:
                if isinstance(exc, RegistryUnavailableError):
                    raise
                problems.append(str(exc))  # one bad manifest never hides the others
        self.problems = problems
        return manifests

    def _read_manifest(self, key: str, name: str, version: str) -> Manifest:
        source = f"s3://{self.bucket}/{key}"
        try:
            doc = json.loads(self._get(key, MAX_MANIFEST_BYTES))
        except (ValueError, RecursionError) as exc:
            raise ManifestError(f"{source}: not readable JSON ({_one_line(exc)})") from None
        manifest = manifest_from(doc, source)
        if (manifest.name, manifest.version) != (name, version):
            raise ManifestError(f"{source} describes {manifest.key}, not {name}@{version}")
        return manifest

    def _fetch(self, manifest: Manifest) -> bytes:
        return self._get(self.key(manifest.name, manifest.version, manifest.artifact),
                         max_artifact_bytes())

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
        verify_artifact(manifest, artifact, where=f"local {manifest.artifact}")
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
