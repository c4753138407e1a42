"""Read model archives (`model.tar.gz`) from a registry without trusting them.

Nothing is ever extracted to disk: regular files are read into memory, after every member has
been checked. Refused, naming the member: absolute paths, `..` components, symbolic and hard
links, devices, fifos and any other non-regular member, duplicate names. Bounded: the number of
members, each member's size and the total size (callers pass the size the manifest declares,
see `archive_budget`), and the decompressed stream itself: it is inflated incrementally under a
running cap, so a gzip bomb stops at the cap and no member is read before its size is checked.
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Mapping
from typing import Any

from explainers.errors import ArtifactFormatError

MAX_MEMBERS = 64
MAX_TOTAL_BYTES = 1 << 30  # 1 GiB of file content, when the caller knows no better bound
_BLOCK = 512
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 16


def header_slack(max_members: int = MAX_MEMBERS) -> int:
    """Room for tar framing on top of file content: per member a header, a PAX header and
    padding (3 blocks), plus the end-of-archive blocks and the final record's padding."""
    return max_members * 3 * _BLOCK + 20 * _BLOCK


def archive_budget(content_bytes: int) -> int:
    """The `max_total_bytes` for an archive whose files should add up to `content_bytes`
    (e.g. the artifact size a manifest declares plus its manifest): that plus 1 % and 64 KiB."""
    return content_bytes + content_bytes // 100 + (64 << 10)


class _CappedStream(io.RawIOBase):
    """A read-only stream over a (gzipped or plain) tar that refuses to yield more than
    `limit` bytes in all: decompression is incremental, never more than asked for."""

    def __init__(self, data: bytes, limit: int, source: str) -> None:
        self.source, self.limit, self.total = source, limit, 0
        self._gz = data[:2] == _GZIP_MAGIC
        self._in = memoryview(data)
        self._d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if self._gz else None
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = len(buffer)
        if self._d is None:
            chunk = bytes(self._in[:want])
            self._in = self._in[len(chunk):]
        else:
            chunk = self._inflate(want)
        self.total += len(chunk)
        if self.total > self.limit:
            raise ArtifactFormatError(f"{self.source}: archive expands beyond "
                                      f"{self.limit:,} bytes; refused")
        buffer[:len(chunk)] = chunk
        return len(chunk)

    def _inflate(self, want: int) -> bytes:
        assert self._d is not None
        out = b""
        while len(out) < want and not self._d.eof:
            source = self._d.unconsumed_tail or bytes(self._in[:_CHUNK])
            if not self._d.unconsumed_tail:
                self._in = self._in[len(source):]
                if not source:
                    raise ArtifactFormatError(f"{self.source}: gzip stream is truncated")
            try:
                out += self._d.decompress(source, want - len(out))
            except zlib.error as exc:
                raise ArtifactFormatError(f"{self.source}: not a valid gzip stream "
                                          f"({exc})") from None
        return out

    def drain(self) -> None:
        """Read to the end, still under the cap: what follows the tar must fit too."""
        buffer = bytearray(_CHUNK)
        while self.readinto(buffer):
            pass


def _member_name(member: tarfile.TarInfo, source: str) -> str:
    raw = member.name
    name = raw.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArtifactFormatError(f"{source}: member {raw!r} has an absolute path; refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArtifactFormatError(f"{source}: member {raw!r} climbs out with '..'; refused")
    if any("\x00" in p for p in parts):
        raise ArtifactFormatError(f"{source}: member {raw!r} has a NUL in its name; refused")
    return posixpath.join(*parts) if parts else ""


def _member_kind(member: tarfile.TarInfo) -> str | None:
    """None for a plain file or folder, else a word for what it is."""
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a fifo"
    if member.isfile() or member.isdir():
        return None
    return f"an unsupported member type {member.type!r}"


def read_members(data: bytes, *, source: str = "archive", max_members: int = MAX_MEMBERS,
                 max_total_bytes: int = MAX_TOTAL_BYTES) -> dict[str, bytes]:
    """The archive's regular files as `{normalised path: bytes}`, after checking every member.

    Accepts a gzipped or plain tar, read as a stream: the decompressed bytes are capped at
    `max_total_bytes` plus the tar framing, and each member's declared size is checked
    before any of it is read. Raises `ArtifactFormatError` naming the first offending member;
    nothing is returned unless the whole archive passes.
    """
    stream = _CappedStream(data, max_total_bytes + header_slack(max_members), source)
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BufferedReader(stream, _CHUNK), mode="r|") as tar:
            _read_checked(tar, files, source, max_members, max_total_bytes)
        stream.drain()
    except (tarfile.TarError, EOFError) as exc:
        raise ArtifactFormatError(f"{source}: not a readable tar archive ({exc})") from None
    return files


def _read_checked(tar: tarfile.TarFile, files: dict[str, bytes], source: str,
                  max_members: int, max_total_bytes: int) -> None:
    seen: set[str] = set()
    total = 0
    for count, member in enumerate(tar, start=1):  # one header at a time, each checked first
        if count > max_members:
            raise ArtifactFormatError(f"{source}: more than {max_members} members; refused")
        name = _member_name(member, source)
        kind = _member_kind(member)
        if kind is not None:
            raise ArtifactFormatError(f"{source}: member {member.name!r} is {kind}; refused")
        if name and name in seen:
            raise ArtifactFormatError(f"{source}: member {member.name!r} appears twice; refused")
        seen.add(name)
        if member.isdir():
            continue
        if not name:
            raise ArtifactFormatError(f"{source}: member {member.name!r} has no name")
        total += member.size
        if member.size < 0 or total > max_total_bytes:
            raise ArtifactFormatError(f"{source}: members add up to more than "
                                      f"{max_total_bytes:,} bytes (at {member.name!r}); refused")
        fh = tar.extractfile(member)
        if fh is None:  # pragma: no cover - regular files always have a stream
            raise ArtifactFormatError(f"{source}: member {member.name!r} is unreadable")
        content = fh.read(member.size + 1)
        if len(content) != member.size:
            raise ArtifactFormatError(f"{source}: member {member.name!r} is truncated")
        files[name] = content


def build_archive(files: Mapping[str, bytes]) -> bytes:
    """A deterministic `tar.gz` of plain files (same input, same bytes): what FraudLens uploads
    as a SageMaker package's `model.tar.gz`."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    return gzip.compress(raw.getvalue(), mtime=0)
