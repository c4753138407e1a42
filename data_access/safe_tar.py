"""Read model archives (`model.tar.gz`) from a registry without trusting them.

Nothing is ever extracted to disk: regular files are read into memory, after every member has
been checked. Refused, naming the member: absolute paths, `..` components, symbolic and hard
links, devices, fifos and any other non-regular member, duplicate names. Bounded: the number of
members, each member's size and the total size, and the decompressed stream itself (a gzip bomb
stops at the cap, before tarfile sees it).
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Mapping

from explainers.errors import ArtifactFormatError

MAX_MEMBERS = 64
MAX_TOTAL_BYTES = 1 << 30  # 1 GiB of file content
_HEADER_SLACK = 1 << 20  # room for tar headers and padding on top of the content cap
_GZIP_MAGIC = b"\x1f\x8b"


def _gunzip_capped(data: bytes, limit: int, source: str) -> bytes:
    """Decompress at most `limit` bytes; more than that is refused, not truncated."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ArtifactFormatError(f"{source}: not a valid gzip stream ({exc})") from None
    if len(out) > limit or d.unconsumed_tail:
        raise ArtifactFormatError(f"{source}: archive expands beyond {limit:,} bytes; refused")
    if not d.eof:
        raise ArtifactFormatError(f"{source}: gzip stream is truncated")
    return out


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

    Accepts a gzipped or plain tar. Raises `ArtifactFormatError` naming the first offending
    member; nothing is returned unless the whole archive passes.
    """
    if data[:2] == _GZIP_MAGIC:
        data = _gunzip_capped(data, max_total_bytes + _HEADER_SLACK, source)
    elif len(data) > max_total_bytes + _HEADER_SLACK:
        raise ArtifactFormatError(f"{source}: archive larger than {max_total_bytes:,} bytes")
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            _read_checked(tar, files, source, max_members, max_total_bytes)
    except tarfile.TarError as exc:
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
        files[name] = fh.read()


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
