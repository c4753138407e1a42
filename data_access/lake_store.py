"""Where the lake's files live: a local folder or an S3 prefix, behind one small interface.

Every write is atomic: locally a temporary name in the same folder, fsync, then rename; on S3 a
single PUT of the whole object. Readers list only finished `*.parquet` files, so a half-written
file is never seen. Nothing is created by reading.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from data_access.exports import fsync_dir
from explainers.errors import WarehouseError

__all__ = ["LakeFile", "LakeStore", "LakeUnavailable", "open_store"]

PARQUET = ".parquet"
LOCKS = "_locks"
# S3 calls are bounded so an unreachable endpoint says "lake unavailable" quickly.
S3_CONNECT_TIMEOUT_S = 2.0
S3_REQUEST_TIMEOUT_S = 8.0
LOCK_WAIT_S = 30.0


class LakeUnavailable(WarehouseError):
    """The lake's root cannot be reached or read."""


@dataclass(frozen=True)
class LakeFile:
    """One finished Parquet file: its path relative to the lake root, size and mtime (ns)."""

    path: str
    size: int
    mtime_ns: int


def _visible(name: str) -> bool:
    return name.endswith(PARQUET) and not name.startswith((".", "_"))


class LakeStore:
    """A lake root: `local` folder, or `bucket/prefix` on S3 (reads through pyarrow's S3
    filesystem, writes as single PUTs through boto3)."""

    def __init__(self, root: str, *, s3: dict | None = None) -> None:
        self.root = root.rstrip("/")
        self._s3 = s3
        self.is_local = s3 is None
        self.fs: pafs.FileSystem = pafs.LocalFileSystem() if s3 is None else _s3_fs(s3)

    @property
    def uri(self) -> str:
        return self.root if self.is_local else f"s3://{self.root}"

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    # ------------------------------------------------------------------ reading
    def exists(self) -> bool:
        if self.is_local:
            return Path(self.root).is_dir()
        try:
            info = self.fs.get_file_info(self.root)
        except OSError as exc:
            raise LakeUnavailable(f"lake unavailable: {self.uri} cannot be reached ({exc})"
                                  ) from None
        return info.type == pafs.FileType.Directory or self._s3_has_objects()

    def _s3_has_objects(self) -> bool:
        bucket, _, prefix = self.root.partition("/")
        client = _s3_client(self._s3 or {})
        try:
            out = client.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/",
                                         MaxKeys=1)
        except Exception as exc:  # botocore errors have no common base worth importing
            raise LakeUnavailable(f"lake unavailable: {self.uri} ({exc})") from None
        return bool(out.get("KeyCount"))

    def list(self, folder: str) -> list[LakeFile]:
        """Finished Parquet files under `folder` (relative), sorted by path."""
        if self.is_local:
            return self._list_local(folder)
        selector = pafs.FileSelector(self.full(folder), recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise LakeUnavailable(f"lake unavailable: cannot list {self.uri}/{folder} ({exc})"
                                  ) from None
        prefix = len(self.root) + 1
        out = [LakeFile(i.path[prefix:], int(i.size or 0), int(i.mtime_ns or 0))
               for i in infos if i.type == pafs.FileType.File and _visible(i.base_name)]
        return sorted(out, key=lambda f: f.path)

    def _list_local(self, folder: str) -> list[LakeFile]:
        base = Path(self.root) / folder
        out: list[LakeFile] = []
        if not base.is_dir():
            return out
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_")))
            for name in filenames:
                if not _visible(name):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    st = os.stat(full)
                except FileNotFoundError:
                    continue  # replaced between listing and stat
                out.append(LakeFile(os.path.relpath(full, self.root).replace(os.sep, "/"),
                                    st.st_size, st.st_mtime_ns))
        return sorted(out, key=lambda f: f.path)

    def read_schema(self, rel: str) -> pa.Schema:
        if self.is_local:
            return pq.read_schema(self.full(rel))
        with self.fs.open_input_file(self.full(rel)) as fh:
            return pq.read_schema(fh)

    def read_table(self, rel: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.full(rel), columns=columns, filesystem=self.fs)

    # ------------------------------------------------------------------ writing
    def publish(self, rel: str, table: pa.Table) -> None:
        """Write `table` as one Parquet file at `rel`, atomically; replaces a file of that name."""
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", row_group_size=64_000)
        data = buf.getvalue()
        if self.is_local:
            _atomic_local(Path(self.full(rel)), data)
            return
        bucket, _, prefix = self.root.partition("/")
        key = f"{prefix}/{rel}" if prefix else rel
        try:
            _s3_client(self._s3 or {}).put_object(Bucket=bucket, Key=key, Body=data)
        except Exception as exc:
            raise LakeUnavailable(f"lake unavailable: could not write {self.uri}/{rel} ({exc})"
                                  ) from None

    def make_root(self) -> None:
        if self.is_local:
            Path(self.root).mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Serialise writers of one dataset. Local: an flock; S3: a lock object created with
        a conditional PUT (If-None-Match), removed afterwards; stale after 10 minutes."""
        if self.is_local:
            path = Path(self.root) / LOCKS / f"{name}.lock"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a+b") as fh:
                deadline = time.monotonic() + LOCK_WAIT_S
                while True:
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise WarehouseError(
                                f"Another fraudlens job is writing {name} in {self.uri}; "
                                "wait for it to finish, then retry") from None
                        time.sleep(0.1)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        with _s3_lock(self, name):
            yield


def _atomic_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def _s3_lock(store: LakeStore, name: str) -> Iterator[None]:
    bucket, _, prefix = store.root.partition("/")
    key = f"{prefix}/{LOCKS}/{name}.lock" if prefix else f"{LOCKS}/{name}.lock"
    client = _s3_client(store._s3 or {})
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=str(time.time()).encode(),
                              IfNoneMatch="*")
            break
        except client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise LakeUnavailable(f"lake unavailable: {store.uri} ({exc})") from None
            if _stale(client, bucket, key) or time.monotonic() > deadline:
                if time.monotonic() > deadline:
                    raise WarehouseError(f"Another fraudlens job is writing {name} in "
                                         f"{store.uri}; wait for it, then retry") from None
                client.delete_object(Bucket=bucket, Key=key)
            time.sleep(0.2)
    try:
        yield
    finally:
        client.delete_object(Bucket=bucket, Key=key)


def _stale(client, bucket: str, key: str) -> bool:
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return time.time() - float(body) > 600
    except Exception:
        return False


def _s3_client(s3: dict):
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=S3_CONNECT_TIMEOUT_S, read_timeout=S3_REQUEST_TIMEOUT_S,
                    retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("s3", endpoint_url=s3.get("endpoint_url"), config=config)


def _s3_fs(s3: dict) -> pafs.FileSystem:
    import boto3

    session = boto3.session.Session()
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    endpoint = s3.get("endpoint_url")
    kwargs: dict = {
        "region": session.region_name or "us-east-1",
        "connect_timeout": S3_CONNECT_TIMEOUT_S,
        "request_timeout": S3_REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    }
    if frozen is not None:
        kwargs.update(access_key=frozen.access_key, secret_key=frozen.secret_key,
                      session_token=frozen.token)
    else:
        kwargs["anonymous"] = True
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def open_store(workspace: Path, spec: str | None = None,
               endpoint_url: str | None = None) -> LakeStore:
    """The lake for a workspace: `spec` (or FRAUDLENS_LAKE) as `s3://bucket/prefix` or a
    folder; by default `<workspace>/lake`."""
    spec = spec or os.environ.get("FRAUDLENS_LAKE")
    if spec and spec.startswith("s3://"):
        root = spec[len("s3://"):].strip("/")
        if not root:
            raise WarehouseError("FRAUDLENS_LAKE needs a bucket: s3://bucket/prefix")
        endpoint = endpoint_url or os.environ.get("FRAUDLENS_LAKE_ENDPOINT_URL")
        return LakeStore(root, s3={"endpoint_url": endpoint})
    folder = Path(spec) if spec else Path(workspace) / "lake"
    return LakeStore(str(folder.resolve()))
