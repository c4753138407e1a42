"""One UTC normaliser for every timestamp the product reads or compares."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["to_utc"]


def to_utc(value: Any) -> pd.Timestamp:
    """`value` (a date, datetime, string or Timestamp) as a UTC Timestamp: naive values are
    taken to be UTC already, aware ones are converted."""
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
