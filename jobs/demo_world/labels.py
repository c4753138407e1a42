"""When labels become known: chargebacks arrive 2-40 days after the event, legit labels
mature after 30-33 days; and the ground truth of the planted typologies (never read by a model,
page or export)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs.demo_world.vocabulary import _DAY, _LEGIT, _TYPOLOGY_NAMES


def label_frames(rng: np.random.Generator, typ_s: np.ndarray, event_ns: np.ndarray,
                 end: pd.Timestamp, transaction_ids: pd.Series,
                 tx_ids: pa.Array) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(labels known at `end`, every eventual label, ground truth) for rows in event order."""
    n = len(typ_s)
    fraud = typ_s != _LEGIT
    delay_days = np.where(fraud, np.clip(rng.lognormal(np.log(10), 0.6, n), 2, 40),
                          30 + rng.random(n) * 3)
    label_ns = event_ns + (delay_days * _DAY).astype(np.int64) * 1_000_000
    all_labels = pd.DataFrame({
        "transaction_id": transaction_ids, "is_fraud": fraud.astype(np.int8),
        "label_time": pd.DatetimeIndex(label_ns.astype("datetime64[ns]")).tz_localize("UTC")})
    labels = all_labels[label_ns <= end.value].reset_index(drop=True)
    gt_ids = pa.table({"transaction_id": tx_ids.filter(pa.array(fraud))}).to_pandas()
    gt_ids["typology"] = np.array(_TYPOLOGY_NAMES, dtype=object)[typ_s[fraud]]
    return labels, gt_ids, all_labels
