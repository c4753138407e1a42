"""Signed checkpoints that anchor the audit chain outside the journal (SECURITY.md item 23).

After every audit append, one line goes to `<workspace>/audit-checkpoints.jsonl` (opened with
O_APPEND, fsynced): the chain's head hash and record count at that moment, signed with
HMAC-SHA256. `fraudlens audit verify` then notices what the hash chain alone cannot: the newest
records deleted, the whole journal emptied or replaced by another one, or a forged checkpoint.

Line format (canonical JSON, keys sorted, one per line):
`{"count":N,"head":"<sha256 hex>","mac":"<hmac hex>","seq":N,"ts":"<UTC ISO>","v":1}` where
`mac` = HMAC-SHA256(key, canonical JSON of the line without `mac`).

The key: `$FRAUDLENS_AUDIT_KEY`, else the one the app or CLI passes in (`[audit] hmac_key` in
`.streamlit/secrets.toml`), else `<workspace>/.audit-key`, generated once with mode 0600. A key
file beside the journal only protects against accidental or naive tampering: whoever can write
both files and read the key can rewrite history consistently.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
import threading
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from data_access.exports import fsync_dir
from explainers.errors import AuditError

__all__ = [
    "CHECKPOINT_FILE",
    "KEY_ENV",
    "KEY_FILE",
    "AuditKeyError",
    "Checkpoint",
    "CheckpointLog",
    "CheckpointScan",
    "head_prefix",
    "resolve_audit_key",
]

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
KEY_FILE = ".audit-key"
KEY_ENV = "FRAUDLENS_AUDIT_KEY"
MIN_KEY_BYTES = 32
_FIELDS = {"v", "seq", "count", "head", "ts", "mac"}
_HEX = re.compile(r"^[0-9a-f]{64}$")
_MAX_PROBLEMS = 5


class AuditKeyError(AuditError):
    """The checkpoint signing key is missing, too short or not private."""


def _canonical(value: dict[str, object]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _configured(source: str, value: str | bytes) -> bytes:
    key = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"{source} is shorter than {MIN_KEY_BYTES} bytes; generate one with "
            "`python -c 'import secrets; print(secrets.token_hex(32))'`")
    return key


def _read_key_file(path: Path) -> bytes:
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise AuditKeyError(f"{path} is not a regular file; remove it to generate a new key")
    if info.st_mode & 0o077:
        raise AuditKeyError(f"{path} is readable by other users; run `chmod 600 {path}`")
    return _configured(str(path), path.read_bytes().strip())


def _create_key_file(path: Path) -> bytes:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:  # another process made it first
        return _read_key_file(path)
    try:
        os.write(fd, secrets.token_hex(32).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return _read_key_file(path)


def resolve_audit_key(workspace: Path, configured: str | bytes | None = None, *,
                      checkpoints_exist: bool = False) -> bytes:
    """$FRAUDLENS_AUDIT_KEY, else `configured`, else `<workspace>/.audit-key` (made on first
    use, mode 0600). A key file is not made up when checkpoints already exist: they were
    signed with a key that is now missing, and a new one would hide that."""
    env = os.environ.get(KEY_ENV)
    if env:
        return _configured(f"${KEY_ENV}", env)
    if configured:
        return _configured("The configured audit key ([audit] hmac_key)", configured)
    path = Path(workspace) / KEY_FILE
    if path.exists() or path.is_symlink():
        return _read_key_file(path)
    if checkpoints_exist:
        raise AuditKeyError(
            f"The audit checkpoint key is missing ({path}, ${KEY_ENV} and [audit] hmac_key are "
            "all unset) but signed checkpoints exist; restore the key. A new key would make "
            "every existing checkpoint look forged.")
    return _create_key_file(path)


@dataclass(frozen=True)
class Checkpoint:
    """One verified line of the checkpoint log."""

    line: int
    seq: int
    count: int
    head: str
    ts: str


def head_prefix(head: str) -> int:
    """The first 64 bits of a head hash: what a scan keeps per checkpoint (forging a chain
    that matches them at a checkpointed seq is as hard as a 64-bit preimage)."""
    return int(head[:16], 16)


@dataclass(frozen=True, eq=False)
class CheckpointScan:
    """The checkpoint log, checked: the newest valid checkpoint (largest count; concurrent
    appends may finish out of order), every valid one compactly (sorted by seq: `seqs`,
    `heads` as `head_prefix`, `lines`), and what is wrong with the others (first few)."""

    newest: Checkpoint | None
    problems: tuple[str, ...]
    bad_lines: int
    seqs: np.ndarray
    heads: np.ndarray
    lines: np.ndarray


class CheckpointLog:
    """The append-only, HMAC-signed checkpoint log of one workspace."""

    def __init__(self, path: Path, key_source: Callable[[], bytes]) -> None:
        self.path = Path(path)
        self._key_source = key_source
        self._key: bytes | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_workspace(cls, folder: Path, configured: str | bytes | None = None
                      ) -> CheckpointLog:
        log = cls(Path(folder) / CHECKPOINT_FILE, lambda: b"")
        log._key_source = lambda: resolve_audit_key(
            folder, configured, checkpoints_exist=log.has_entries())
        return log

    def key(self) -> bytes:
        with self._lock:
            if self._key is None:
                self._key = self._key_source()
            return self._key

    def has_entries(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def _mac(self, fields: dict[str, object]) -> str:
        return hmac.new(self.key(), _canonical(fields).encode("utf-8"), hashlib.sha256
                        ).hexdigest()

    def append(self, seq: int, head: str, now: datetime | None = None) -> None:
        """Write one signed checkpoint line (O_APPEND, then fsync)."""
        fields: dict[str, object] = {
            "v": 1, "seq": int(seq), "count": int(seq), "head": head,
            "ts": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="microseconds"),
        }
        line = (_canonical({**fields, "mac": self._mac(fields)}) + "\n").encode("ascii")
        created = not self.path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
            try:
                os.write(fd, line)  # one write: O_APPEND keeps concurrent lines whole
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise AuditError(f"Could not write the audit checkpoint {self.path}: {exc}"
                             ) from None

    def scan(self) -> CheckpointScan:
        """Read and check every line (streamed: memory grows by 24 bytes per checkpoint);
        problems name the line and what is wrong with it."""
        seqs, heads, lines = array("q"), array("Q"), array("q")
        problems: list[str] = []
        bad, newest = 0, None
        try:
            with self.path.open("rb") as f:
                for number, text in enumerate(f, start=1):
                    found = self._check_line(number, text.rstrip(b"\n"))
                    if isinstance(found, str):
                        bad += 1
                        if len(problems) < _MAX_PROBLEMS:
                            problems.append(found)
                        continue
                    seqs.append(found.seq)
                    heads.append(head_prefix(found.head))
                    lines.append(number)
                    if newest is None or found.count > newest.count:
                        newest = found
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise AuditError(f"Could not read the audit checkpoints {self.path}: {exc}"
                             ) from None
        s, h, n = (np.frombuffer(a, dtype=t) for a, t in
                   ((seqs, np.int64), (heads, np.uint64), (lines, np.int64)))
        order = np.argsort(s, kind="stable")
        s, h, n = s[order], h[order], n[order]
        clash = np.flatnonzero((s[1:] == s[:-1]) & (h[1:] != h[:-1]))
        if clash.size:
            i = int(clash[0])
            bad += 1
            problems.insert(0, f"checkpoint lines {n[i]} and {n[i + 1]} of {self.path.name} "
                               f"disagree about record {s[i]}: the journal was replaced at "
                               "some point")
        return CheckpointScan(newest, tuple(problems), bad, s, h, n)

    def _check_line(self, number: int, text: bytes) -> Checkpoint | str:
        where = f"checkpoint line {number} of {self.path.name}"
        try:
            doc = json.loads(text.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return f"{where} is not valid JSON (truncated or altered)"
        if not isinstance(doc, dict) or set(doc) != _FIELDS or doc.get("v") != 1:
            return f"{where} does not have the checkpoint fields"
        mac = doc.pop("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(doc)):
            return (f"{where} has an invalid signature: the checkpoint was forged or altered "
                    "(or signed with another key)")
        seq, count, head, ts = doc["seq"], doc["count"], doc["head"], doc["ts"]
        if not (isinstance(seq, int) and isinstance(count, int) and isinstance(head, str)
                and isinstance(ts, str)) or seq != count or seq < 1 or not _HEX.match(head):
            return f"{where} holds inconsistent values"
        return Checkpoint(number, seq, count, head, ts)


