"""Computed reports kept as JSON under `<workspace>/.cache/<kind>/`, keyed by what they were
computed from (the lake's data version, model checksums, settings), so a page reads a finished
report instead of recomputing it. Written atomically; nothing here is ever unpickled.

Typed results are kept per data version (`keep`, `read_kept`, `read_newest`):
`<workspace>/.cache/<kind>/<digest of the stable parts>/<digest of the data version>/`, each
folder holding the result and `kept.json` (the data version and when it was written). A page
shows the result for the lake's current data at once, else the newest one kept for earlier
data (with its age), and computes only when nothing is kept. At most KEEP_VERSIONS data
versions are kept per stable key; older ones are removed when a newer one is written."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.exports import atomic_write_bytes

__all__ = ["KEEP_VERSIONS", "Kept", "ago", "cache_path", "has_kept", "keep", "kept_folder",
           "read_kept", "read_newest", "read_report", "read_result", "write_report",
           "write_result"]

CACHE_DIR = ".cache"
KEEP_VERSIONS = 3  # data versions kept per stable key
META_FILE = "kept.json"


def cache_path(workspace: str | Path, kind: str, *parts: object) -> Path:
    """Where the report of `kind` computed from `parts` lives (a digest of them names it)."""
    digest = hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:24]
    return Path(workspace) / CACHE_DIR / kind / f"{digest}.json"


def read_report(path: Path) -> dict[str, Any] | None:
    """The stored report, or None when there is none or it cannot be read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(report, sort_keys=True).encode("utf-8"))


# ----------------------------------------------------------------- typed results on disk
# A frozen-dataclass result (frames, timestamps, nested results) kept as JSON plus one Parquet
# file per DataFrame, so a page's first visit after a restart reads it instead of recomputing.


def _encode(value: Any, path: str, frames: dict[str, pd.DataFrame]) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__dc__": {f.name: _encode(getattr(value, f.name), f"{path}.{f.name}", frames)
                           for f in dataclasses.fields(value)}}
    if isinstance(value, pd.DataFrame):
        name = f"frame{len(frames)}"
        frames[name] = value
        return {"__df__": name}
    if isinstance(value, datetime):
        return {"__ts__": pd.Timestamp(value).isoformat()}
    if isinstance(value, date):
        return {"__date__": value.isoformat()}
    if isinstance(value, tuple | list):
        return {"__tuple__" if isinstance(value, tuple) else "__list__":
                [_encode(v, f"{path}[{i}]", frames) for i, v in enumerate(value)]}
    if isinstance(value, Mapping):
        return {"__map__": [[_encode(k, path, frames), _encode(v, f"{path}[{k}]", frames)]
                            for k, v in value.items()]}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{path}: cannot keep a {type(value).__name__}")


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint):
        return hint
    return next((a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)), None)


def _item_hint(hint: Any, i: int) -> Any:
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    return args[i] if i < len(args) else None


def _decode(value: Any, hint: Any, frames: dict[str, pd.DataFrame]) -> Any:
    if not isinstance(value, dict):
        return value
    if "__dc__" in value:
        cls = _dataclass_in(hint)
        if cls is None:
            raise TypeError("a stored result does not match its type")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _decode(v, hints.get(k), frames) for k, v in value["__dc__"].items()})
    if "__df__" in value:
        return frames[value["__df__"]]
    if "__ts__" in value:
        return pd.Timestamp(value["__ts__"])
    if "__date__" in value:
        return date.fromisoformat(value["__date__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value or "__list__" in value:
        items = [_decode(v, _item_hint(hint, i), frames)
                 for i, v in enumerate(value.get("__tuple__", value.get("__list__")))]
        return tuple(items) if "__tuple__" in value else items
    if "__map__" in value:
        args = typing.get_args(hint)
        kh, vh = (args[0], args[1]) if len(args) == 2 else (None, None)
        return {_decode(k, kh, frames): _decode(v, vh, frames) for k, v in value["__map__"]}
    raise TypeError("a stored result holds an unknown tag")


def write_result(folder: Path, result: Any, meta: Mapping[str, Any] | None = None) -> bool:
    """Keep `result` under `folder` (replaced whole; `meta` beside it as `kept.json`); False
    when it holds something that cannot be kept this way, and then nothing is written."""
    frames: dict[str, pd.DataFrame] = {}
    staging: Path | None = None
    try:
        doc = json.dumps(_encode(result, "result", frames), sort_keys=True).encode()
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=_parent(folder)))
        for name, frame in frames.items():
            frame.to_parquet(staging / f"{name}.parquet")
        if meta is not None:
            (staging / META_FILE).write_bytes(json.dumps(dict(meta), sort_keys=True).encode())
        (staging / "result.json").write_bytes(doc)
    except (TypeError, ValueError, OSError, pa.ArrowException):
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        return False
    aside = folder.with_name(f".{folder.name}.old.{staging.name}")
    with contextlib.suppress(OSError):  # none kept yet
        os.replace(folder, aside)  # the old copy steps aside in one rename, not file by file
    try:
        os.replace(staging, folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process kept the same result
    shutil.rmtree(aside, ignore_errors=True)
    return True


def read_result(folder: Path, cls: type) -> Any | None:
    """The result kept under `folder`, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        frames = {p.stem: pd.read_parquet(p) for p in folder.glob("*.parquet")}
        return _decode(doc, cls, frames)
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException):
        return None


def _parent(folder: Path) -> Path:
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent


# ----------------------------------------------------------------- kept per data version


@dataclass(frozen=True)
class Kept:
    """A kept result with the lake data version it was computed on and when it was written
    (UTC); `current`: it is for the data version that was asked for."""

    result: Any
    data_version: str
    written_at: datetime
    current: bool

    def age_text(self, now: datetime | None = None) -> str:
        """When it was written and how long ago: "2025-06-01 12:00 UTC (3 h ago)"."""
        seconds = ((now or datetime.now(UTC)) - self.written_at).total_seconds()
        return f"{self.written_at:%Y-%m-%d %H:%M} UTC ({ago(seconds)})"


def ago(seconds: float) -> str:
    """"just now", "5 min ago", "3 h ago", "2 days ago"."""
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86400)} days ago"


def _digest(parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def kept_folder(workspace: str | Path, kind: str, stable: tuple[object, ...],
                data_version: str | None = None) -> Path:
    """The folder of every data version kept for `stable` (the parts that do not change with
    the data: checksums, settings), or of the one for `data_version`."""
    folder = Path(workspace) / CACHE_DIR / kind / _digest([str(p) for p in stable])
    return folder if data_version is None else folder / _digest(str(data_version))


def keep(workspace: str | Path, kind: str, stable: tuple[object, ...], data_version: str,
         result: Any, *, now: datetime | None = None) -> bool:
    """Keep `result` as computed on `data_version` (replacing one kept for it), then remove
    all but the KEEP_VERSIONS newest data versions of `stable`. False when it cannot be
    kept (nothing is written)."""
    written = (now or datetime.now(UTC)).astimezone(UTC)
    folder = kept_folder(workspace, kind, stable, data_version)
    done = write_result(folder, result, {"data_version": str(data_version),
                                          "written_at": written.isoformat()})
    if done:
        for _, stale in _versions(folder.parent)[KEEP_VERSIONS:]:
            shutil.rmtree(stale, ignore_errors=True)
    return done


def _meta(folder: Path) -> tuple[str, datetime] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        written = datetime.fromisoformat(meta["written_at"])
        if written.tzinfo is None:
            written = written.replace(tzinfo=UTC)
        return str(meta["data_version"]), written
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _versions(folder: Path) -> list[tuple[tuple[str, datetime], Path]]:
    """The kept data versions under a stable key's folder, newest first (staging folders and
    unreadable ones left out)."""
    try:
        found = [(m, p) for p in folder.iterdir()
                 if p.is_dir() and not p.name.startswith(".") and (m := _meta(p)) is not None]
    except OSError:
        return []
    return sorted(found, key=lambda f: f[0][1], reverse=True)


def has_kept(workspace: str | Path, kind: str, stable: tuple[object, ...],
             data_version: str) -> bool:
    """Whether a result is kept for exactly `data_version` (without reading it)."""
    meta = _meta(kept_folder(workspace, kind, stable, data_version))
    return meta is not None and meta[0] == str(data_version)


def read_kept(workspace: str | Path, kind: str, stable: tuple[object, ...], data_version: str,
              cls: type) -> Kept | None:
    """The result kept for exactly `data_version`, or None."""
    folder = kept_folder(workspace, kind, stable, data_version)
    meta = _meta(folder)
    if meta is None or meta[0] != str(data_version):
        return None
    result = read_result(folder, cls)
    return None if result is None else Kept(result, meta[0], meta[1], True)


def read_newest(workspace: str | Path, kind: str, stable: tuple[object, ...], cls: type,
                data_version: str | None = None) -> Kept | None:
    """The result kept for `data_version` when there is one, else the newest one kept for
    `stable` at any data version (`current` False), else None."""
    if data_version is not None:
        exact = read_kept(workspace, kind, stable, data_version, cls)
        if exact is not None:
            return exact
    for (version, written), folder in _versions(kept_folder(workspace, kind, stable)):
        result = read_result(folder, cls)
        if result is not None:
            return Kept(result, version, written, version == data_version)
    return None
