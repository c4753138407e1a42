"""Promotion, the decision after a comparison: make a candidate its name's champion, with the
audit record written first. No Streamlit."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from data_access.registry import ModelRegistry
from explainers.errors import FraudLensError, ValidationError

__all__ = ["MIN_REASON_CHARS", "AuditFn", "Promotion", "PromotionRequest", "checked_request",
           "promote"]

MIN_REASON_CHARS = 10

AuditFn = Callable[[str, str, str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Promotion:
    model_id: str
    previous_stage: str
    archived: tuple[str, ...]


@dataclass(frozen=True)
class PromotionRequest:
    """A promotion asked for, not yet confirmed: which model, and why."""

    model_id: str
    reason: str


def checked_request(ref: str | None, reason: str | None) -> PromotionRequest:
    """A promotion needs a chosen model (no default: the page may recommend another one) and
    a stated reason of at least MIN_REASON_CHARS characters."""
    if not ref:
        raise ValidationError("Choose the model to promote.")
    text = (reason or "").strip()
    if len(text) < MIN_REASON_CHARS:
        raise ValidationError(f"State a reason of at least {MIN_REASON_CHARS} characters; it "
                              "goes into the audit trail.")
    return PromotionRequest(ref, text)


def promote(registry: ModelRegistry, ref: str, record: AuditFn, reason: str) -> Promotion:
    """Make `ref` its name's champion (the registry archives the previous one). The audit
    record is written first, so an unrecorded promotion cannot happen; a failed stage change
    is recorded as failed. Refused without a reason (`checked_request`)."""
    reason = checked_request(ref, reason).reason
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
