"""Computed reports kept as JSON under `<workspace>/.cache/<kind>/`, keyed by what they were
computed from (the lake's data version, model checksums, settings), so a page reads a finished
report instead of recomputing it. Written atomically; nothing here is ever unpickled."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from data_access.exports import atomic_write_bytes

__all__ = ["cache_path", "read_report", "write_report"]

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
