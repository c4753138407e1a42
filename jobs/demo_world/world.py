"""One world, chunk by chunk: plan the chunk's accounts and rows (typologies), derive the
features the feature store would have served, the detail columns (accounts) and the labels."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from explainers.timeutil import to_utc
from jobs.demo_world.accounts import _Accounts, _choice, detail_strings
from jobs.demo_world.labels import label_frames
from jobs.demo_world.typologies import (
    _PLAN_DEFAULTS,
    _account_takeover,
    _card_testing,
    _legit_rows,
    _money_mule,
    _promo_abuse,
)
from jobs.demo_world.vocabulary import (
    _CARD,
    _DAY,
    _DEP,
    _FRAUD_RATE,
    _HOUR,
    _MIN,
    _OS_P,
    _ROWS_PER_ACCOUNT,
    _TYPOLOGY_MIX,
    _WD,
    ASSETS,
    CHANNELS,
    COUNTRIES,
    DEMO_END,
    DEVICE_OS,
    FEATURE_NAMES,
    KYC_LEVELS,
    PAYMENT_METHODS,
    PII_COLUMNS,
    TXN_TYPES,
)


@dataclass(frozen=True)
class World:
    """One synthetic world (or one account-partitioned chunk of it)."""

    transactions: pd.DataFrame
    labels: pd.DataFrame
    ground_truth: pd.DataFrame
    all_labels: pd.DataFrame | None = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- public API


def generate_world(rows: int = 100_000, seed: int = 7, days: int = 60,
                   end: datetime = DEMO_END) -> World:
    """The whole world in memory: the single-chunk case of `iter_world_chunks`."""
    return next(iter_world_chunks(rows, seed, chunk_rows=max(int(rows), 1), days=days, end=end))


def iter_world_chunks(rows: int, seed: int, chunk_rows: int = 1_000_000, days: int = 60,
                      end: datetime = DEMO_END) -> Iterator[World]:
    """Yield Worlds of at most `chunk_rows` transactions each, partitioned by account.

    Every chunk spans the whole time window; account ids and transaction ids are disjoint
    across chunks. Chunk i is driven by its own Generator from SeedSequence(seed).spawn, so the
    output depends only on (rows, seed, chunk_rows, days, end). Memory is one chunk at a time.
    """
    rows, chunk_rows, days = int(rows), int(chunk_rows), int(days)
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
    if days < 2:
        raise ValueError(f"days must be at least 2, got {days}")
    end_ts = to_utc(end)
    n_chunks = math.ceil(rows / chunk_rows)
    sizes = [rows // n_chunks + (1 if i < rows % n_chunks else 0) for i in range(n_chunks)]
    blocks = [_account_block(s) for s in sizes]
    acct_width = max(7, len(str(sum(blocks))))
    txn_width = max(9, len(str(rows)))
    children = np.random.SeedSequence(seed).spawn(n_chunks)
    acct_off = txn_off = 0
    for size, block, child in zip(sizes, blocks, children, strict=True):
        yield _chunk(np.random.default_rng(child), size, days, end_ts, acct_off, block,
                     acct_width, txn_off, txn_width)
        acct_off += block
        txn_off += size


def world_fingerprint(world: World) -> str:
    """sha256 over transactions, labels and ground_truth: column names, dtypes and values."""
    h = hashlib.sha256()
    for name in ("transactions", "labels", "ground_truth"):
        df: pd.DataFrame = getattr(world, name)
        h.update(f"{name}:{len(df)}:".encode())
        for col in df.columns:
            h.update(f"{col}|{df[col].dtype}|".encode())
        if len(df):
            h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- one chunk


def _account_block(size: int) -> int:
    """Account ids reserved for a chunk of `size` rows: legit accounts plus room for every
    fraud-only account (there are never more of those than fraud rows, capped below)."""
    return _n_legit_accounts(size) + _max_fraud_rows(size)


def _n_legit_accounts(size: int) -> int:
    return max(1, size // _ROWS_PER_ACCOUNT)


def _max_fraud_rows(size: int) -> int:
    return int(size * 2 * _FRAUD_RATE) + 20


def _chunk(rng: np.random.Generator, size: int, days: int, end: pd.Timestamp, acct_off: int,
           block: int, acct_width: int, txn_off: int, txn_width: int) -> World:
    span = days * _DAY
    n_fraud = min(int(rng.binomial(size, _FRAUD_RATE)), _max_fraud_rows(size), size)
    n_ato, n_ct, n_mule, n_promo, n_other = (int(x) for x in rng.multinomial(
        n_fraud, _TYPOLOGY_MIX))
    n_legit_rows = size - n_fraud + n_other  # 'other' fraud rides on ordinary rows

    accts = _Accounts()
    plans = [_legit_rows(rng, accts, _n_legit_accounts(size), n_legit_rows, n_other, span)]
    legit_n = accts.n
    plans.append(_account_takeover(rng, accts, legit_n, n_ato, span))
    plans.append(_card_testing(rng, accts, n_ct, span))
    plans.append(_money_mule(rng, accts, n_mule, span))
    plans.append(_promo_abuse(rng, accts, n_promo, span))
    plan = {k: np.concatenate([p[k] for p in plans]) for k in _PLAN_DEFAULTS}
    acc = accts.freeze()
    if accts.n > block:  # cannot happen: fraud-only accounts <= fraud rows <= the cap
        raise RuntimeError("account id block overflow")
    return _assemble(rng, plan, acc, span, end, acct_off, block, acct_width, txn_off, txn_width)


# --------------------------------------------------------------------------- assembly


def _window_count(keys: np.ndarray, query: np.ndarray, width: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Positions [lo, hi) of sorted `keys` within [query - width, query]."""
    return (np.searchsorted(keys, query - width, side="left"),
            np.searchsorted(keys, query, side="right"))


def _windowed(a: np.ndarray, t: np.ndarray, txn: np.ndarray, amount: np.ndarray,
              span: int) -> dict[str, np.ndarray]:
    """Exact windowed aggregates per account, on sorted (account, time) keys; sorted queries
    keep searchsorted cache-friendly. Results are mapped back to plan order with `inv`."""
    n = len(t)
    big = span + 10 * _DAY
    key = a * big + t
    order = np.argsort(key, kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(n)
    ks = key[order]
    txn_s = txn[order]
    lo, hi = _window_count(ks, ks, _HOUR)
    txn_count_1h = (hi - lo).astype(np.int32)[inv]
    lo, hi = _window_count(ks, ks, _DAY)
    count_24h = (hi - lo)[inv]
    cs = np.concatenate([[0.0], np.cumsum(amount[order])])
    amount_24h = (cs[hi] - cs[lo])[inv]
    lo, hi = _window_count(ks[txn_s == _CARD], ks, 10 * _MIN)
    card_10m = (hi - lo).astype(np.int32)[inv]
    dep_keys = ks[txn_s == _DEP]
    j = np.searchsorted(dep_keys, ks, side="left") - 1
    prev = dep_keys[np.maximum(j, 0)] if len(dep_keys) else np.zeros(n, np.int64)
    ok = (j >= 0) & (prev >= (ks // big) * big) & (ks - prev <= 7 * _DAY)
    since_dep = np.where(ok, (ks - prev) / _MIN, np.nan)[inv]
    return {"txn_count_1h": txn_count_1h, "count_24h": count_24h, "amount_24h": amount_24h,
            "card_10m": card_10m, "since_dep": since_dep}


# A planted stream feature-store outage, after the models' training cut-off: `amount_24h_usd`
# is not served for 60 hours starting 18 days before the window's end (a time rule, no
# random draw, so every other value of the world stays what the seed made it).
_OUTAGE_START_BEFORE_END = 18 * _DAY
_OUTAGE_LENGTH = 60 * _HOUR


def _stream_outage(t: np.ndarray, span: int) -> np.ndarray:
    start = span - _OUTAGE_START_BEFORE_END
    return (t >= start) & (t < start + _OUTAGE_LENGTH)


def _sampled(rng: np.random.Generator, plan: dict[str, np.ndarray], acc: dict[str, np.ndarray],
             t: np.ndarray, amount: np.ndarray, w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-account and per-row sampled features (and feature-store timeouts on the stream
    store), drawn in a fixed order."""
    n = len(t)
    a = plan["acct"]
    age_days = (t - acc["created"][a]) / _DAY
    avg30 = acc["scale"][a] * np.exp(0.5) * rng.lognormal(0.0, 0.2, n)
    avg30[age_days < 3] = np.nan
    ratio = amount / avg30
    ips = (1 + rng.binomial(np.maximum(w["count_24h"] - 1, 0), acc["ip_var"][a])
           + plan["ips_extra"])
    acct_reset = (t - acc["reset"][a]) / _MIN
    acct_reset[~((acct_reset >= 0) & (acct_reset <= 30 * 24 * 60))] = np.nan
    reset_min = np.where(np.isnan(plan["reset_min"]), acct_reset, plan["reset_min"])
    for arr, p in ((w["amount_24h"], 0.02), (reset_min, 0.01), (w["since_dep"], 0.015)):
        arr[rng.random(n) < p] = np.nan
    new_device = plan["new_device"].astype(np.int8)
    os_code = np.where(plan["os"] >= 0, plan["os"], acc["os"][a])
    swap = (new_device == 1) & (rng.random(n) < 0.3)
    os_code[swap] = _choice(rng, int(swap.sum()), _OS_P)
    os_code[rng.random(n) < 0.01] = -1
    country = acc["country"][a].copy()
    country[rng.random(n) < 0.01] = -1
    return {"age_days": age_days, "avg30": avg30, "ratio": ratio, "ips": ips,
            "reset_min": reset_min, "new_device": new_device, "os_code": os_code,
            "country": country}


def _features(plan: dict[str, np.ndarray], acc: dict[str, np.ndarray], s: np.ndarray,
              amount: np.ndarray, w: dict[str, np.ndarray],
              f: dict[str, np.ndarray]) -> dict[str, object]:
    """The model features in event-time order (`s`)."""
    a, txn = plan["acct"], plan["txn"]
    a_s = a[s]

    def cat(codes: np.ndarray, cats: tuple[str, ...]) -> pd.Categorical:
        return pd.Categorical.from_codes(codes[s].astype(np.int8), categories=list(cats))

    return {
        "amount_usd": amount[s], "txn_count_1h": w["txn_count_1h"][s],
        "amount_24h_usd": w["amount_24h"][s],
        "distinct_ips_24h": f["ips"][s].astype(np.int32), "card_txn_count_10m": w["card_10m"][s],
        "minutes_since_password_reset": f["reset_min"][s], "new_device": f["new_device"][s],
        "new_withdrawal_address": (plan["new_wd"] & (txn == _WD))[s].astype(np.int8),
        "minutes_since_last_deposit": w["since_dep"][s], "account_age_days": f["age_days"][s],
        "avg_amount_30d_usd": f["avg30"][s], "amount_vs_30d_avg": f["ratio"][s],
        "chargebacks_90d": acc["chargebacks"][a_s].astype(np.int32),
        "promo_redemptions_30d": acc["promo"][a_s].astype(np.int32),
        "accounts_per_device": acc["apd"][a_s].astype(np.int32),
        "txn_type": cat(txn, TXN_TYPES), "country": cat(f["country"], COUNTRIES),
        "kyc_level": cat(acc["kyc"][a], KYC_LEVELS),
        "payment_method": cat(plan["pay"], PAYMENT_METHODS),
        "asset": cat(plan["asset"], ASSETS), "device_os": cat(f["os_code"], DEVICE_OS),
        "channel": cat(plan["chan"], CHANNELS),
    }


def _assemble(rng: np.random.Generator, plan: dict[str, np.ndarray], acc: dict[str, np.ndarray],
              span: int, end: pd.Timestamp, acct_off: int, block: int, acct_width: int,
              txn_off: int, txn_width: int) -> World:
    t = plan["t"]
    t = np.clip(np.where(t >= span, 2 * (span - 1) - t, t), 0, span - 1)  # mirror overruns
    amount = np.round(np.maximum(plan["amount"], 0.5), 2)
    windowed = _windowed(plan["acct"], t, plan["txn"], amount, span)
    sampled = _sampled(rng, plan, acc, t, amount, windowed)
    windowed["amount_24h"][_stream_outage(t, span)] = np.nan

    # Everything from here on is in event-time order.
    s = np.argsort(t, kind="stable")
    start_ns = end.value - span * 1_000_000
    event_ns = start_ns + t[s] * 1_000_000
    feats = _features(plan, acc, s, amount, windowed, sampled)
    strings_table, tx_ids = detail_strings(rng, plan, acc, plan["acct"][s], s,
                                           sampled["new_device"], acct_off, block, acct_width,
                                           txn_off, txn_width)
    strings = strings_table.to_pandas()

    event_time = pd.DatetimeIndex(event_ns.astype("datetime64[ns]")).tz_localize("UTC")
    cols: dict[str, object] = {"transaction_id": strings["transaction_id"],
                               "account_id": strings["account_id"], "event_time": event_time}
    cols.update((name, feats[name]) for name in FEATURE_NAMES)
    cols.update((name, strings[name]) for name in PII_COLUMNS if name != "currency")
    tx = pd.DataFrame(cols)
    tx["currency"] = "USD"
    labels, ground_truth, all_labels = label_frames(rng, plan["typ"][s], event_ns, end,
                                                    strings["transaction_id"], tx_ids)
    return World(tx, labels, ground_truth, all_labels)
