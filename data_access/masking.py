"""PII masking for display: emails, IPs, account/card/device ids, addresses. No Streamlit here.

Masking is the default for every view; unmasking is a role-gated, audited act in the app
(`app/masking_ui.py`). A masked value never contains the whole original value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

__all__ = ["PII_COLUMNS", "mask_frame", "mask_value"]

PII_COLUMNS = ("email", "ip_address", "account_id", "card_number", "device_id",
               "withdrawal_address")
_HIDDEN = "****"
_ELLIPSIS = "…"
_KEEP = 4
_PREFIX = re.compile(r"^(0x|[A-Za-z]{1,3}(?=[0-9]))")


def _keep_last(value: str) -> str:
    """`A…1234`: a short type prefix (letters or `0x`), an ellipsis, the last four characters."""
    if len(value) <= _KEEP + 2:
        return _HIDDEN
    match = _PREFIX.match(value)
    prefix = match.group(1) if match and len(value) - len(match.group(1)) > _KEEP + 2 else ""
    return f"{prefix}{_ELLIPSIS}{value[-_KEEP:]}"


def _mask_email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return _keep_last(value)
    return f"{local[0]}***@{domain}"


def _mask_ip(value: str) -> str:
    parts = value.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return f"{parts[0]}.{parts[1]}.x.x"
    groups = value.split(":")
    if len(groups) >= 3 and all(re.fullmatch(r"[0-9A-Fa-f]{0,4}", g) for g in groups):
        return f"{groups[0]}:{groups[1]}::x"
    return _keep_last(value)


def _mask_card(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) < 8:
        return _keep_last(value)
    return f"**** **** **** {digits[-4:]}"


_MASKERS = {"email": _mask_email, "ip_address": _mask_ip, "card_number": _mask_card}


def mask_value(column: str, value: object) -> str:
    """The display form of one PII value for its column (unknown columns keep the last 4)."""
    text = str(value)
    masked = _MASKERS.get(column, _keep_last)(text)
    # Belt and braces for odd inputs (e.g. an email whose local part is "*"): never echo it back.
    if len(text) >= 4 and text in masked:
        return _HIDDEN
    return masked


def mask_frame(df: pd.DataFrame, columns: Iterable[str] = PII_COLUMNS) -> pd.DataFrame:
    """A copy of ``df`` with the PII columns masked; nulls stay null, other columns untouched."""
    out = df.copy()
    for col in columns:
        if col in out.columns:
            series = out[col]
            out[col] = series.astype(object).map(
                lambda v, c=col: mask_value(c, v), na_action="ignore").astype(object)
    return out
