"""Computed reports kept as JSON under `<workspace>/.cache/<kind>/`, keyed by what they were
computed from (the lake's data version, model checksums, settings), so a page reads a finished
report instead of recomputing it. Written atomically; nothing here is ever unpickled."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import typing
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.exports import atomic_write_bytes

__all__ = ["cache_path", "read_report", "read_result", "write_report", "write_result"]

CACHE_DIR = ".cache"


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


def write_result(folder: Path, result: Any) -> bool:
    """Keep `result` under `folder` (replaced whole); False when it holds something that cannot
    be kept this way, and then nothing is written."""
    frames: dict[str, pd.DataFrame] = {}
    try:
        doc = json.dumps(_encode(result, "result", frames), sort_keys=True).encode()
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=_parent(folder)))
        for name, frame in frames.items():
            frame.to_parquet(staging / f"{name}.parquet")
        (staging / "result.json").write_bytes(doc)
    except (TypeError, ValueError, OSError, pa.ArrowException):
        return False
    shutil.rmtree(folder, ignore_errors=True)
    try:
        os.replace(staging, folder)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another process kept the same result
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
