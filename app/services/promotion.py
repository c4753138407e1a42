"""Promotion, the decision after a comparison: make a candidate its name's champion, with the
audit record written first. No Streamlit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from data_access.registry import ModelRegistry
from explainers.errors import FraudLensError

__all__ = ["AuditFn", "Promotion", "promote"]

AuditFn = Callable[[str, str, str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Promotion:
    model_id: str
    previous_stage: str
    archived: tuple[str, ...]


def promote(registry: ModelRegistry, ref: str, record: AuditFn, reason: str = "") -> Promotion:
    """Make `ref` its name's champion (the registry archives the previous one). The audit
    record is written first, so an unrecorded promotion cannot happen; a failed stage change
    is recorded as failed."""
    target = registry.resolve(ref)
    archives = [m.key for m in registry.list()
                if m.name == target.name and m.stage == "champion" and m.key != target.key]
    details = {"from": target.stage, "to": "champion", "archives": archives,
               "sha256": target.sha256, "reason": reason}
    record("stage_change", target.key, "ok", details)
    try:
        registry.set_stage(target.key, "champion")
    except FraudLensError as exc:
        record("stage_change", target.key, "failed", {**details, "error": str(exc)})
        raise
    return Promotion(target.key, target.stage, tuple(archives))
