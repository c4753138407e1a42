"""Structural checks of untrusted model bytes, before any framework parser sees them.

Pure functions over `bytes` (no IO): a size cap, bounded nesting depth, and declared lengths
checked against the bytes that remain. XGBoost UBJSON is walked iteratively (UBJSON draft 12
types, optimized `$`/`#` containers and high-precision `H` included), XGBoost JSON is scanned
iteratively for brackets outside strings, and a CatBoost `.cbm` is checked for its header
(`CBM1`, the size of its flatbuffers core) and a sane flatbuffers root. Every refusal is an
`ArtifactFormatError` naming the file and the byte offset.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from explainers.errors import ArtifactFormatError

DEFAULT_MAX_BYTES = 512 << 20  # 512 MiB: far above any fraud model, far below a host's memory
DEFAULT_MAX_DEPTH = 64  # XGBoost models nest about 6 levels; its parser recurses per level
MIN_BYTES = 16  # no real model is smaller than this
ENV_MAX_BYTES = "FRAUDLENS_MAX_ARTIFACT_BYTES"
ENV_MAX_DEPTH = "FRAUDLENS_MAX_ARTIFACT_DEPTH"


@dataclass(frozen=True)
class ArtifactLimits:
    """How big and how deeply nested an artifact may be."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH


def limits_from(environ: Mapping[str, str]) -> ArtifactLimits:
    """The limits, overridden by FRAUDLENS_MAX_ARTIFACT_BYTES / _DEPTH when set."""

    def read(key: str, default: int) -> int:
        raw = environ.get(key, "").strip()
        if not raw:
            return default
        if not raw.isdigit() or int(raw) < 1:
            raise ArtifactFormatError(f"{key}={raw!r} must be a positive whole number")
        return int(raw)

    return ArtifactLimits(read(ENV_MAX_BYTES, DEFAULT_MAX_BYTES),
                          read(ENV_MAX_DEPTH, DEFAULT_MAX_DEPTH))


def check_size(data: bytes, filename: str, limits: ArtifactLimits) -> None:
    """Refuse empty, tiny and oversize artifacts."""
    if len(data) < MIN_BYTES:
        raise ArtifactFormatError(f"{filename} is {len(data)} byte(s): too small to be a model "
                                  "(empty or truncated); export it again")
    if len(data) > limits.max_bytes:
        raise ArtifactFormatError(
            f"{filename} is {len(data):,} bytes, over the {limits.max_bytes:,}-byte limit; "
            f"raise {ENV_MAX_BYTES} if this model is genuine")


def xgboost_reads_json(data: bytes) -> bool:
    """Whether XGBoost parses these bytes as JSON: '{', optional whitespace, then '"'
    (anything else after '{' goes to its UBJSON reader)."""
    match = _JSON_SPACE.match(data, 1)
    return data[:1] == b"{" and match is not None and data[match.end():match.end() + 1] == b'"'


# -- UBJSON -------------------------------------------------------------------------------

_FIXED = {b"i": 1, b"U": 1, b"C": 1, b"I": 2, b"l": 4, b"d": 4, b"L": 8, b"D": 8}
_INTS = {b"i": ">b", b"U": ">B", b"I": ">h", b"l": ">i", b"L": ">q"}
_EMPTY = frozenset((b"Z", b"T", b"F"))
_STRINGS = frozenset((b"S", b"H"))
_CLOSE = {b"[": b"]", b"{": b"}"}


class _Frame:
    """One open container: its closer, how many items remain (None: until the closer), the
    element type of an optimized container, and whether items have keys."""

    __slots__ = ("closer", "count", "keyed", "typed")

    def __init__(self, closer: bytes, count: int | None, typed: bytes | None) -> None:
        self.closer, self.count, self.typed, self.keyed = closer, count, typed, closer == b"}"


class _Ubj:
    """A cursor over UBJSON bytes that refuses anything that does not fit."""

    def __init__(self, data: bytes, filename: str) -> None:
        self.data, self.filename, self.pos = data, filename, 0

    def fail(self, what: str) -> ArtifactFormatError:
        return ArtifactFormatError(f"{self.filename} is not a well-formed XGBoost UBJSON model: "
                                   f"{what} at byte {self.pos:,}")

    def take(self, n: int) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise self.fail(f"{n:,} byte(s) declared but only {len(self.data) - self.pos:,} "
                            "remain (truncated or a lying length)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def marker(self) -> bytes:
        return self.take(1)

    def length(self, what: str) -> int:
        """A length or count: an integer marker and its big-endian value, not negative."""
        marker = self.marker()
        if marker not in _INTS:
            raise self.fail(f"{what} must be an integer, got marker {marker!r}")
        (value,) = struct.unpack(_INTS[marker], self.take(_FIXED[marker]))
        if value < 0:
            raise self.fail(f"negative {what} {value}")
        return int(value)

    def string(self) -> bytes:
        return self.take(self.length("string length"))

    def open(self, opener: bytes) -> _Frame:
        """The header of a container just opened: optional `$type` then `#count`."""
        typed = count = None
        if self.data[self.pos:self.pos + 1] == b"$":
            self.pos += 1
            typed = self.marker()
            if typed not in _FIXED and typed not in _STRINGS:
                raise self.fail(f"optimized container of type {typed!r} is not supported")
            if self.data[self.pos:self.pos + 1] != b"#":
                raise self.fail("'$' without a '#' count")
        if self.data[self.pos:self.pos + 1] == b"#":
            self.pos += 1
            count = self.length("container count")
            per_item = _FIXED.get(typed or b"", 1) + (2 if opener == b"{" else 0)
            if count * per_item > len(self.data) - self.pos:
                raise self.fail(f"a container declares {count:,} items but only "
                                f"{len(self.data) - self.pos:,} bytes remain")
        return _Frame(_CLOSE[opener], count, typed)


def check_ubjson(data: bytes, filename: str, limits: ArtifactLimits) -> set[bytes]:
    """Walk the whole document without recursion; return the root object's keys."""
    cur = _Ubj(data, filename)
    if cur.marker() != b"{":
        raise ArtifactFormatError(f"{filename} is not an XGBoost UBJSON model (no root object)")
    stack = [cur.open(b"{")]
    root_keys: set[bytes] = set()
    while stack:
        frame = stack[-1]
        if frame.count is None:
            while data[cur.pos:cur.pos + 1] == b"N":  # no-op padding
                cur.pos += 1
            if data[cur.pos:cur.pos + 1] == frame.closer:
                cur.pos += 1
                stack.pop()
                continue
        elif frame.count == 0:
            stack.pop()
            continue
        elif frame.typed in _FIXED and not frame.keyed:  # a packed run: skip it whole
            cur.take(frame.count * _FIXED[frame.typed])
            stack.pop()
            continue
        else:
            frame.count -= 1
        if frame.keyed:
            key = cur.string()
            if len(stack) == 1:
                root_keys.add(key)
        _ubj_value(cur, frame.typed or cur.marker(), stack, limits)
    if cur.pos != len(data):
        raise cur.fail(f"{len(data) - cur.pos:,} trailing byte(s) after the model")
    return root_keys


def _ubj_value(cur: _Ubj, marker: bytes, stack: list[_Frame], limits: ArtifactLimits) -> None:
    """Consume one value; a container is pushed on `stack` (depth-checked) instead."""
    if marker in _FIXED:
        cur.take(_FIXED[marker])
    elif marker in _STRINGS:
        cur.string()
    elif marker in _CLOSE:
        if len(stack) >= limits.max_depth:
            raise cur.fail(f"nesting deeper than {limits.max_depth} levels")
        stack.append(cur.open(marker))
    elif marker not in _EMPTY:
        cur.pos -= 1
        raise cur.fail(f"unknown UBJSON type marker {marker!r}")


# -- JSON ---------------------------------------------------------------------------------

_JSON_TOKEN = re.compile(rb'[\[\]{}"]')
_JSON_STRING_END = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_SPACE = re.compile(rb"[ \t\r\n]*")
_SPACE_BYTES = frozenset(b" \t\r\n")
_JSON_CLOSE = {ord("]"): ord("["), ord("}"): ord("{")}


def check_json(data: bytes, filename: str, limits: ArtifactLimits) -> set[bytes]:
    """Brackets outside strings balanced and at most `max_depth` deep, strings terminated,
    one root object; return the root object's keys (raw, without quotes)."""
    start = _JSON_SPACE.match(data).end()  # type: ignore[union-attr]
    if data[start:start + 1] != b"{":
        raise ArtifactFormatError(f"{filename} is not an XGBoost JSON model (no root object)")
    stack: list[int] = []
    root_keys: set[bytes] = set()
    pos = start
    end = None
    while end is None:
        match = _JSON_TOKEN.search(data, pos)
        if match is None:
            raise ArtifactFormatError(f"{filename} is truncated: {len(stack)} bracket(s) "
                                      "never closed")
        char, at = data[match.start()], match.start()
        if char == ord('"'):
            closing = _JSON_STRING_END.match(data, at + 1)
            if closing is None:
                raise ArtifactFormatError(f"{filename}: a string at byte {at:,} never ends")
            if len(stack) == 1 and _before(data, at) in (b"{", b","):
                root_keys.add(data[at + 1:closing.end() - 1])
            pos = closing.end()
        elif char in _JSON_CLOSE:
            if not stack or stack.pop() != _JSON_CLOSE[char]:
                raise ArtifactFormatError(f"{filename}: unbalanced {chr(char)!r} at byte {at:,}")
            pos = at + 1
            end = pos if not stack else None
        else:
            if len(stack) >= limits.max_depth:
                raise ArtifactFormatError(f"{filename}: nesting deeper than {limits.max_depth} "
                                          f"levels at byte {at:,}; refused")
            stack.append(char)
            pos = at + 1
    if _JSON_SPACE.match(data, end).end() != len(data):  # type: ignore[union-attr]
        raise ArtifactFormatError(f"{filename}: trailing data after the model at byte {end:,}")
    return root_keys


def _before(data: bytes, at: int) -> bytes:
    """The last non-space byte before `at` (each space is stepped over once per string)."""
    i = at - 1
    while i >= 0 and data[i] in _SPACE_BYTES:
        i -= 1
    return data[i:i + 1] if i >= 0 else b""


# -- CatBoost .cbm ------------------------------------------------------------------------

CBM_MAGIC = b"CBM1"


def check_cbm(data: bytes, filename: str, limits: ArtifactLimits) -> None:
    """`CBM1`, a uint32 core size (0xFFFFFFFF: a uint64 follows), a flatbuffers core of that
    size whose root table and vtable lie inside it, then the model parts (CTR data)."""
    if data[:4] != CBM_MAGIC:
        raise ArtifactFormatError(f"{filename} is not a CatBoost .cbm model (no CBM1 header)")
    if len(data) < 8:
        raise ArtifactFormatError(f"{filename} is truncated inside its header")
    (size,) = struct.unpack_from("<I", data, 4)
    offset = 8
    if size == 0xFFFFFFFF:
        if len(data) < 16:
            raise ArtifactFormatError(f"{filename} is truncated inside its header")
        (size,) = struct.unpack_from("<Q", data, 8)
        offset = 16
    remaining = len(data) - offset
    if size < 8 or size > remaining:
        raise ArtifactFormatError(
            f"{filename} declares a {size:,}-byte model core but {remaining:,} bytes follow "
            "the header (truncated or a lying length); refused")
    core = memoryview(data)[offset:offset + size]
    _check_flatbuffer_root(core, filename)


def _check_flatbuffer_root(core: memoryview, filename: str) -> None:
    """The root table offset, its vtable and the table's extent all fall inside the core."""
    size = len(core)
    (root,) = struct.unpack_from("<I", core, 0)
    problem = None
    if root < 4 or root > size - 4:
        problem = f"root table offset {root:,} outside the {size:,}-byte core"
    else:
        (back,) = struct.unpack_from("<i", core, root)
        vtable = root - back
        if vtable < 0 or vtable > size - 4:
            problem = f"vtable offset {vtable:,} outside the core"
        else:
            vt_size, table_size = struct.unpack_from("<HH", core, vtable)
            if vt_size < 4 or vt_size % 2 or vtable + vt_size > size or root + table_size > size:
                problem = "vtable or root table runs past the end of the core"
    if problem:
        raise ArtifactFormatError(f"{filename} is not a well-formed CatBoost model: {problem}")
