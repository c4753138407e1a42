"""A synthetic crypto-exchange fraud world for the demo workspace: seeded, vectorised numpy.

`generate_world(rows, seed)` returns a `World` of three frames:

- `transactions`: one row per transaction, sorted by `event_time` (tz-aware UTC, within
  `[end - days, end)`), `transaction_id` ("T000000123", increasing with event time inside a
  chunk), `account_id` ("A0001234"), every model feature named in `DEMO_FEATURE_SCHEMA`, and
  analyst-only detail/PII columns: `email` (@example.com), `ip_address` (documentation ranges
  192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), `device_id`, `card_number` (16-digit test
  numbers starting 4000, card purchases only, else null), `withdrawal_address` (fake 0x hex,
  withdrawals only, else null), `currency` ("USD").
  Strings use pandas' default string dtype ("str" on pandas 3, object before).
  Feature storage: float features float64 (NaN = missing); int features int32, never null;
  bool features int8 0/1, never null (schema dtype "bool"); categorical features pandas
  `category` with exactly the schema's categories (missing = NaN).
- `labels`: `transaction_id`, `is_fraud` (int8 0/1), `label_time` (UTC), only labels known as of
  `end`. Fraud labels arrive 2-40 days after the event (chargebacks), legit labels mature 30-33
  days after it, so the last weeks are partly unlabelled.
- `ground_truth`: `transaction_id`, `typology` for every fraud transaction, labelled or not
  (one of `TYPOLOGIES` or "other" for random-looking noise fraud). No model may read it.

`World.all_labels` additionally holds every transaction's eventual label (label_time may lie
after `end`), for tests and the ground-truth table only.

Feature values are what "the feature store served at scoring time". Windowed counts and sums
(`txn_count_1h`, `amount_24h_usd`, `card_txn_count_10m`, `minutes_since_last_deposit`) are
computed exactly from the generated transactions of the account (history before the window is
not simulated); the rest is sampled per account and per row, conditioned on the typology.

Planted fraud (about 1% of rows): account takeover, card testing, money mules and promo abuse,
each with its own signature, plus ~12% random-looking 'other' fraud, and legit look-alikes for
every typology so that a good model is strong but not perfect. Typology mix drifts over time
(card testing grows towards the end, promo abuse peaks during a promo campaign).

For large worlds `iter_world_chunks` yields account-partitioned chunks with bounded memory;
`generate_world` is the single-chunk case of the same code.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

DEMO_END = datetime(2026, 11, 22, tzinfo=UTC)
TYPOLOGIES = ("account_takeover", "card_testing", "money_mule", "promo_abuse")
OTHER_TYPOLOGY = "other"

COUNTRIES = ("US", "GB", "DE", "FR", "BR", "NG", "IN", "SG", "JP", "TR")
TXN_TYPES = ("deposit", "withdrawal", "trade", "card_purchase")
KYC_LEVELS = ("0", "1", "2", "3")
PAYMENT_METHODS = ("bank_transfer", "card", "crypto", "internal")
ASSETS = ("BTC", "ETH", "USDT", "SOL", "other")
DEVICE_OS = ("ios", "android", "windows", "macos", "linux")
CHANNELS = ("web", "mobile_app", "api")


def _f(name: str, dtype: str, source: str, description: str, unit: str | None = None,
       categories: tuple[str, ...] | None = None) -> dict:
    out: dict = {"name": name, "dtype": dtype, "source": source, "description": description}
    if unit is not None:
        out["unit"] = unit
    if categories is not None:
        out["categories"] = list(categories)
    return out


DEMO_FEATURE_SCHEMA: dict = {
    "target": "is_fraud",
    "features": [
        _f("amount_usd", "float", "stream", "Transaction amount in US dollars", "USD"),
        _f("txn_count_1h", "int", "stream",
           "Transactions by this account in the last hour, this one included", "count"),
        _f("amount_24h_usd", "float", "stream",
           "Total amount moved by this account in the last 24 hours, this one included", "USD"),
        _f("distinct_ips_24h", "int", "stream",
           "Different IP addresses the account used in the last 24 hours", "count"),
        _f("card_txn_count_10m", "int", "stream",
           "Card purchases by this account in the last 10 minutes", "count"),
        _f("minutes_since_password_reset", "float", "stream",
           "Minutes since the account's password was reset; empty if no reset in 30 days",
           "minutes"),
        _f("new_device", "bool", "stream",
           "The device has never been seen on this account before"),
        _f("new_withdrawal_address", "bool", "stream",
           "Withdrawal to an address this account has never used before"),
        _f("minutes_since_last_deposit", "float", "stream",
           "Minutes since the account's previous deposit; empty if none in 7 days", "minutes"),
        _f("account_age_days", "float", "batch", "Days since the account was opened", "days"),
        _f("avg_amount_30d_usd", "float", "batch",
           "The account's average transaction amount over 30 days; empty for new accounts",
           "USD"),
        _f("amount_vs_30d_avg", "float", "batch",
           "This amount divided by the account's 30-day average", "x"),
        _f("chargebacks_90d", "int", "batch",
           "Chargebacks against the account in the last 90 days", "count"),
        _f("promo_redemptions_30d", "int", "batch",
           "Promotions redeemed by the account in the last 30 days", "count"),
        _f("accounts_per_device", "int", "batch",
           "Accounts that have logged in from this account's device", "count"),
        _f("txn_type", "category", "static", "Kind of transaction", categories=TXN_TYPES),
        _f("country", "category", "static", "Country of the account's KYC documents",
           categories=COUNTRIES),
        _f("kyc_level", "category", "static",
           "Identity verification level, 0 (none) to 3 (full)", categories=KYC_LEVELS),
        _f("payment_method", "category", "static", "How the money moved",
           categories=PAYMENT_METHODS),
        _f("asset", "category", "static", "Crypto asset involved", categories=ASSETS),
        _f("device_os", "category", "static", "Operating system of the device used",
           categories=DEVICE_OS),
        _f("channel", "category", "static", "Where the transaction was made: web, app or API",
           categories=CHANNELS),
    ],
}

FEATURE_NAMES = tuple(f["name"] for f in DEMO_FEATURE_SCHEMA["features"])
PII_COLUMNS = ("email", "ip_address", "device_id", "card_number", "withdrawal_address",
               "currency")

_MIN = 60_000
_HOUR = 60 * _MIN
_DAY = 24 * _HOUR
_ROWS_PER_ACCOUNT = 40
_FRAUD_RATE = 0.01
# account_takeover, card_testing, money_mule, promo_abuse, other
_TYPOLOGY_MIX = (0.30, 0.25, 0.20, 0.15, 0.10)
_LEGIT, _ATO, _CT, _MULE, _PROMO, _OTHER = range(6)
_TYPOLOGY_NAMES = ("", *TYPOLOGIES, OTHER_TYPOLOGY)
_DEP, _WD, _TRADE, _CARD = range(4)
_NORMAL, _HEAVY, _SHOPPER, _MOVER = range(4)
# txn_type mix per legit account style: deposit, withdrawal, trade, card_purchase
_STYLE_TXN_P = ((0.24, 0.14, 0.50, 0.12), (0.07, 0.05, 0.86, 0.02), (0.10, 0.05, 0.25, 0.60),
                (0.42, 0.38, 0.15, 0.05))
_BANK, _PCARD, _CRYPTO, _INTERNAL = range(4)

_COUNTRY_P = (0.30, 0.12, 0.10, 0.07, 0.09, 0.06, 0.10, 0.05, 0.06, 0.05)
_OS_P = (0.30, 0.35, 0.20, 0.10, 0.05)
_CHANNEL_P = (0.47, 0.45, 0.08)
_ASSET_P = (0.35, 0.25, 0.15, 0.10, 0.15)
_KYC_OLD = (0.05, 0.22, 0.53, 0.20)
_KYC_NEW = (0.30, 0.45, 0.22, 0.03)
_KYC_SHADY = (0.50, 0.38, 0.12, 0.0)
_FIRST = ("alex", "sam", "maria", "li", "omar", "yuki", "ana", "ivan", "chen", "fatima",
          "noah", "emma", "raj", "sofia", "kofi", "lena", "diego", "mia", "tariq", "zoe")
_LAST = ("smith", "garcia", "kim", "okafor", "silva", "muller", "khan", "tanaka", "rossi",
         "dubois", "nguyen", "patel", "lopez", "novak", "haddad", "berg")
_IP_PREFIXES = ("192.0.2.", "198.51.100.", "203.0.113.")
_IPS = tuple(p + str(h) for p in _IP_PREFIXES for h in range(1, 255))


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
    end_ts = pd.Timestamp(end)
    end_ts = end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")
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


# --------------------------------------------------------------------------- helpers


def _account_block(size: int) -> int:
    """Account ids reserved for a chunk of `size` rows: legit accounts plus room for every
    fraud-only account (there are never more of those than fraud rows, capped below)."""
    return _n_legit_accounts(size) + _max_fraud_rows(size)


def _n_legit_accounts(size: int) -> int:
    return max(1, size // _ROWS_PER_ACCOUNT)


def _max_fraud_rows(size: int) -> int:
    return int(size * 2 * _FRAUD_RATE) + 20


def _fmt_digits(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    """Vectorised f"{prefix}{value:0{width}d}" as an Arrow string array."""
    v = np.asarray(values, dtype=np.int64)
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    mat = np.empty((len(v), len(prefix) + width), dtype=np.uint8)
    mat[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    mat[:, len(prefix):] = (v[:, None] // pw) % 10 + 48
    return _fixed_width_strings(mat)


def _fmt_hex(prefix: str, raw: np.ndarray) -> pa.Array:
    """Rows of bytes (n, k) to f"{prefix}{hex}" strings, as an Arrow string array."""
    table = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    n, k = raw.shape
    mat = np.empty((n, len(prefix) + 2 * k), dtype=np.uint8)
    mat[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    mat[:, len(prefix)::2] = table[raw >> 4]
    mat[:, len(prefix) + 1::2] = table[raw & 15]
    return _fixed_width_strings(mat)


def _fixed_width_strings(mat: np.ndarray) -> pa.Array:
    """Each row of an ASCII byte matrix becomes one string, without Python objects."""
    n, width = mat.shape
    large = n * width >= 2**31 - 1
    offsets = np.arange(n + 1, dtype=np.int64 if large else np.int32) * width
    cls = pa.LargeStringArray if large else pa.StringArray
    return cls.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(mat)))


def _take(values: pa.Array, idx: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """values[idx] in Arrow; rows where `valid` is False become null."""
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    return values.take(pa.array(np.asarray(idx, dtype=np.int64), mask=mask))


def _pick(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """One categorical draw per row from a (n, k) matrix of row probabilities."""
    cum = np.cumsum(p, axis=1)
    u = rng.random(len(p)) * cum[:, -1]
    return np.minimum((u[:, None] >= cum).sum(axis=1), p.shape[1] - 1).astype(np.int8)


def _choice(rng: np.random.Generator, n: int, p: tuple[float, ...]) -> np.ndarray:
    return rng.choice(len(p), size=n, p=np.asarray(p) / np.sum(p)).astype(np.int8)


class _Accounts:
    """Column arrays of the accounts of one chunk (legit first, fraud-only appended)."""

    COLS = ("created", "country", "kyc", "os", "chan", "scale", "chargebacks", "promo", "apd",
            "ip_var", "ip", "ip2", "reset", "device", "card", "wallet", "email_name",
            "email_tag")

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.n = 0

    def add(self, rng: np.random.Generator, created: np.ndarray, kyc_p: tuple[float, ...],
            scale: np.ndarray, **override: np.ndarray) -> np.ndarray:
        n = len(created)
        cols = {
            "created": created.astype(np.int64),
            "country": _choice(rng, n, _COUNTRY_P),
            "kyc": _choice(rng, n, kyc_p),
            "os": _choice(rng, n, _OS_P),
            "chan": _choice(rng, n, _CHANNEL_P),
            "scale": scale.astype(np.float64),
            "chargebacks": (rng.random(n) < 0.025).astype(np.int32)
            * (1 + rng.poisson(0.3, n)).astype(np.int32),
            "promo": np.zeros(n, dtype=np.int32),
            "apd": np.ones(n, dtype=np.int32),
            "ip_var": rng.uniform(0.02, 0.3, n),
            "ip": rng.integers(0, len(_IPS), n),
            "ip2": rng.integers(0, len(_IPS), n),
            "reset": np.full(n, np.nan),
            "device": rng.integers(0, 10**8, n),
            "card": rng.integers(0, 10**12, n),
            "wallet": rng.integers(0, 2**62, n),
            "email_name": rng.integers(0, len(_FIRST) * len(_LAST) * 1000, n),
            "email_tag": np.full(n, -1, dtype=np.int64),
        }
        for k, v in override.items():
            cols[k] = v.astype(cols[k].dtype)
        self.parts.append(cols)
        idx = np.arange(self.n, self.n + n)
        self.n += n
        return idx

    def freeze(self) -> dict[str, np.ndarray]:
        return {c: np.concatenate([p[c] for p in self.parts]) for c in self.COLS}


_PLAN_DEFAULTS: dict[str, tuple[type, float]] = {
    "acct": (np.int64, 0), "t": (np.int64, 0), "typ": (np.int8, _LEGIT),
    "txn": (np.int8, _TRADE), "pay": (np.int8, _INTERNAL), "amount": (np.float64, 1.0),
    "chan": (np.int8, 0), "asset": (np.int8, 0), "new_device": (np.int8, 0),
    "new_wd": (np.int8, 0), "reset_min": (np.float64, np.nan), "ips_extra": (np.int32, 0),
    "fresh_card": (np.bool_, False), "foreign_ip": (np.bool_, False), "os": (np.int8, -1),
}


def _plan(n: int, **cols: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for k, (dt, default) in _PLAN_DEFAULTS.items():
        out[k] = np.asarray(cols.pop(k), dtype=dt) if k in cols else np.full(n, default, dt)
    if cols:
        raise KeyError(f"unknown plan columns {sorted(cols)}")
    return out


def _assets_for(rng: np.random.Generator, txn: np.ndarray) -> np.ndarray:
    asset = _choice(rng, len(txn), _ASSET_P)
    card = txn == _CARD
    asset[card] = _choice(rng, int(card.sum()), (0.5, 0.2, 0.3, 0.0, 0.0))
    return asset


def _payment_for(rng: np.random.Generator, txn: np.ndarray) -> np.ndarray:
    p = np.zeros((len(txn), 4))
    p[txn == _DEP] = (0.50, 0.18, 0.32, 0.0)
    p[txn == _WD] = (0.40, 0.0, 0.60, 0.0)
    p[txn == _TRADE] = (0.0, 0.0, 0.0, 1.0)
    p[txn == _CARD] = (0.0, 1.0, 0.0, 0.0)
    return _pick(rng, p)


def _time_draw(rng: np.random.Generator, n: int, span: int, shape: str,
               margin: int = 2 * _HOUR) -> np.ndarray:
    """Incident start times in ms since window start (leaving `margin` before the end for the
    incident to play out); the shape makes typologies drift over time."""
    if shape == "growing":  # card testing ramps up in the last weeks
        u = rng.beta(2.6, 1.0, n)
    elif shape == "fading":
        u = rng.beta(1.0, 1.4, n)
    elif shape == "campaign":  # promo abuse peaks during a promo campaign
        camp = rng.random(n) < 0.6
        u = np.where(camp, rng.uniform(0.25, 0.55, n), rng.random(n))
    else:
        u = rng.random(n)
    return (u * (span - margin)).astype(np.int64)


def _group_sizes(rng: np.random.Generator, total: int, lo: int, mean_extra: float) -> np.ndarray:
    """Group sizes (lo + Poisson) summing exactly to `total` (the last one is cut)."""
    if total <= 0:
        return np.zeros(0, dtype=np.int64)
    sizes = lo + rng.poisson(mean_extra, total)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, total)) + 1
    sizes = sizes[:k]
    sizes[-1] -= int(cs[k - 1] - total)
    return sizes.astype(np.int64)


# --------------------------------------------------------------------------- one chunk


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


def _legit_rows(rng: np.random.Generator, accts: _Accounts, n_acc: int, n_rows: int,
                n_other: int, span: int) -> dict[str, np.ndarray]:
    # Accounts: 15% opened inside the window, the rest older (median ~14 months).
    inside = rng.random(n_acc) < 0.15
    created = np.where(inside, rng.uniform(0, span - _DAY, n_acc),
                       -np.maximum(rng.lognormal(np.log(400), 0.9, n_acc), 1.0) * _DAY)
    activity = rng.lognormal(0.0, 1.3, n_acc)
    activity[inside] *= 0.5
    # Styles: normal, heavy trader, small-card shopper, fast mover (deposit, then withdraw soon).
    style = np.zeros(n_acc, dtype=np.int8)
    style[activity > np.quantile(activity, 0.97)] = _HEAVY
    style[(style == 0) & (rng.random(n_acc) < 0.012)] = _SHOPPER
    style[(style == 0) & (rng.random(n_acc) < np.where(inside, 0.12, 0.01))] = _MOVER
    heavy = style == _HEAVY
    kyc_p = np.where(inside[:, None], _KYC_NEW, _KYC_OLD)
    scale = rng.lognormal(np.log(120), 1.0, n_acc) * np.array([1.0, 2.0, 0.5, 4.0])[style]
    promo = np.where(rng.random(n_acc) < 0.06, rng.integers(1, 4, n_acc), 0)
    apd = np.where(rng.random(n_acc) < 0.05, rng.integers(2, 4, n_acc), 1)
    apd = np.where(rng.random(n_acc) < 0.012, rng.integers(3, 12, n_acc), apd)
    hunter = rng.random(n_acc) < 0.012  # legit promo hunters, half of them on shared devices
    promo = np.where(hunter, rng.integers(2, 8, n_acc), promo)
    apd = np.where(hunter & (rng.random(n_acc) < 0.5), rng.integers(2, 9, n_acc), apd)
    reset = np.where(rng.random(n_acc) < 0.05, rng.uniform(-30 * _DAY, span, n_acc), np.nan)
    chan = _choice(rng, n_acc, _CHANNEL_P)
    chan[(heavy | (style == _SHOPPER)) & (rng.random(n_acc) < 0.4)] = 2
    idx = accts.add(rng, created, _KYC_OLD, scale, kyc=_pick(rng, kyc_p), promo=promo, apd=apd,
                    reset=reset, chan=chan)

    # Rows: skewed activity, clustered into sessions (heavy traders: long busy sessions).
    acct = rng.choice(n_acc, size=n_rows, p=activity / activity.sum())
    per_acct = np.bincount(acct, minlength=n_acc)
    sess_mean = np.array([1.6, 8.0, 4.0, 2.5])[style]
    n_sess = np.maximum(1, np.ceil(per_acct / sess_mean)).astype(np.int64)
    sess_off = np.concatenate([[0], np.cumsum(n_sess)[:-1]])
    sess_acct = np.repeat(np.arange(n_acc), n_sess)
    lo = np.maximum(created, 0.0)
    sess_start = lo[sess_acct] + rng.random(len(sess_acct)) * (span - lo[sess_acct])
    dur = np.where(heavy, rng.uniform(30, 180, n_acc), rng.uniform(2, 45, n_acc)) * _MIN
    sess = sess_off[acct] + (rng.random(n_rows) * n_sess[acct]).astype(np.int64)
    t = (sess_start[sess] + rng.random(n_rows) * dur[acct]).astype(np.int64)

    txn = _pick(rng, np.array(_STYLE_TXN_P)[style[acct]])
    mult = np.array([1.5, 1.8, 1.0, 0.5])[txn]
    amount = scale[acct] * rng.lognormal(0.0, 1.0, n_rows) * mult
    p_tiny = np.where(style[acct] == _SHOPPER, 0.5, 0.1)
    tiny = (txn == _CARD) & (rng.random(n_rows) < p_tiny)  # small legit card purchases
    amount[tiny] = rng.uniform(0.5, 5.0, int(tiny.sum()))
    row_chan = np.where(rng.random(n_rows) < 0.88, chan[acct], _choice(rng, n_rows, _CHANNEL_P))
    new_device = (rng.random(n_rows) < 0.02).astype(np.int8)
    new_wd = ((txn == _WD) & (rng.random(n_rows) < 0.08)).astype(np.int8)
    ips_extra = np.zeros(n_rows, dtype=np.int32)
    reset_min = np.full(n_rows, np.nan)
    typ = np.full(n_rows, _LEGIT, dtype=np.int8)

    # Look-alikes of account takeover: a user resets the password, logs in on a new phone
    # and withdraws to a new address.
    old = created[acct] < -30 * _DAY
    la = np.flatnonzero(old & (rng.random(n_rows) < 0.005))
    k = len(la)
    txn[la] = np.where(rng.random(k) < 0.85, _WD, txn[la])
    new_device[la] = rng.random(k) < 0.75
    new_wd[la] = (txn[la] == _WD) & (rng.random(k) < 0.75)
    reset_min[la] = np.where(rng.random(k) < 0.7, rng.uniform(2, 120, k), np.nan)
    ips_extra[la] = rng.integers(0, 3, k)
    amount[la] *= rng.lognormal(np.log(2.0), 0.6, k)

    # 'other' fraud: ordinary-looking rows, a few randomly perturbed.
    oth = rng.choice(n_rows, size=n_other, replace=False) if n_other else np.zeros(0, np.int64)
    k = len(oth)
    typ[oth] = _OTHER
    amount[oth] *= np.where(rng.random(k) < 0.4, rng.lognormal(0.7, 0.8, k), 1.0)
    new_device[oth] |= rng.random(k) < 0.25
    ips_extra[oth] += (rng.random(k) < 0.3) * rng.integers(1, 4, k)
    row_chan[oth] = np.where(rng.random(k) < 0.3, _choice(rng, k, _CHANNEL_P), row_chan[oth])

    return _plan(n_rows, acct=idx[acct], t=t, typ=typ, txn=txn, pay=_payment_for(rng, txn),
                 amount=amount, chan=row_chan, asset=_assets_for(rng, txn),
                 new_device=new_device, new_wd=new_wd, reset_min=reset_min, ips_extra=ips_extra)


def _account_takeover(rng: np.random.Generator, accts: _Accounts, legit_n: int, n: int,
                      span: int) -> dict[str, np.ndarray]:
    """A fraudster on a new device, right after resetting the password, empties an older
    account to a new withdrawal address: 1-3 withdrawals within the hour."""
    if n == 0:
        return _plan(0)
    acc = accts.freeze()
    created = acc["created"][:legit_n]
    victims_pool = np.flatnonzero(created < -90 * _DAY)
    if len(victims_pool) == 0:
        victims_pool = np.arange(legit_n)
    sizes = _group_sizes(rng, n, 1, 0.6)
    g = len(sizes)
    victim = rng.choice(victims_pool, size=g)
    t0 = _time_draw(rng, g, span, "uniform")
    reset_at = t0 - rng.uniform(2, 30, g) * _MIN
    grp = np.repeat(np.arange(g), sizes)
    t = t0[grp] + (rng.random(n) * 30 * _MIN).astype(np.int64)
    a = victim[grp]
    txn = np.where(rng.random(n) < 0.92, _WD, _TRADE).astype(np.int8)
    reset_min = np.where(rng.random(n) < 0.7, (t - reset_at[grp]) / _MIN,
                         np.where(rng.random(n) < 0.5, np.nan, rng.uniform(60, 3000, n)))
    amount = (acc["scale"][a] * np.exp(0.5) * rng.lognormal(np.log(5.0), 0.8, n)
              / np.maximum(sizes[grp], 1))
    return _plan(n, acct=a, t=t, typ=np.full(n, _ATO), txn=txn, pay=_payment_for(rng, txn),
                 amount=amount, chan=_choice(rng, n, (0.6, 0.35, 0.05)),
                 asset=_choice(rng, n, (0.45, 0.25, 0.25, 0.05, 0.0)),
                 new_device=rng.random(n) < 0.8,
                 new_wd=(txn == _WD) & (rng.random(n) < 0.85), reset_min=reset_min,
                 ips_extra=np.where(rng.random(n) < 0.75, 1 + rng.poisson(1.5, n), 0),
                 foreign_ip=np.ones(n, bool), os=_choice(rng, n, _OS_P))


def _card_testing(rng: np.random.Generator, accts: _Accounts, n: int,
                  span: int) -> dict[str, np.ndarray]:
    """Bursts of tiny card purchases, each with a different stolen card, often over the API."""
    if n == 0:
        return _plan(0)
    sizes = _group_sizes(rng, n, 3, 7.0)
    g = len(sizes)
    t0 = _time_draw(rng, g, span, "growing")
    young = rng.random(g) < 0.65
    created = np.where(young, t0 - rng.uniform(0.05, 3, g) * _DAY,
                       t0 - rng.uniform(30, 700, g) * _DAY)
    chan = np.where(rng.random(g) < 0.6, 2, _choice(rng, g, (0.7, 0.3)))
    idx = accts.add(rng, created, _KYC_SHADY, rng.lognormal(np.log(30), 0.5, g), chan=chan,
                    chargebacks=rng.poisson(0.4, g))
    grp = np.repeat(np.arange(g), sizes)
    burst_len = np.where(rng.random(g) < 0.7, rng.uniform(3, 20, g),
                         rng.uniform(30, 240, g)) * _MIN  # some testers go slow
    t = t0[grp] + (rng.random(n) * burst_len[grp]).astype(np.int64)
    amount = np.where(rng.random(n) < 0.92, rng.uniform(0.5, 5.0, n), rng.uniform(5, 25, n))
    txn = np.full(n, _CARD, dtype=np.int8)
    return _plan(n, acct=idx[grp], t=t, typ=np.full(n, _CT), txn=txn, pay=np.full(n, _PCARD),
                 amount=amount, chan=chan[grp], asset=_assets_for(rng, txn),
                 new_device=rng.random(n) < 0.2, fresh_card=np.ones(n, bool),
                 ips_extra=np.where(rng.random(n) < 0.4, rng.integers(1, 4, n), 0))


def _money_mule(rng: np.random.Generator, accts: _Accounts, n: int,
                span: int) -> dict[str, np.ndarray]:
    """Young, barely verified accounts: a large deposit, withdrawn again within hours."""
    if n == 0:
        return _plan(0)
    sizes = _group_sizes(rng, n, 2, 1.2)
    g = len(sizes)
    t0 = _time_draw(rng, g, span, "fading", margin=8 * _HOUR)
    created = t0 - rng.uniform(0.3, 12.5, g) * _DAY
    scale = rng.lognormal(np.log(1500), 0.7, g)
    idx = accts.add(rng, created, (0.45, 0.38, 0.17, 0.0), scale)
    grp = np.repeat(np.arange(g), sizes)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    pos = np.arange(n) - first[grp]
    n_dep = np.maximum(1, sizes // 3)
    is_dep = pos < n_dep[grp]
    # deposits within the first 30 minutes, withdrawals 5 minutes to 6 hours after them
    wait_min = np.where(rng.random(g) < 0.8, rng.lognormal(np.log(40), 1.0, g).clip(5, 360),
                        rng.uniform(360, 1200, g))[grp] * rng.uniform(0.8, 1.2, n)
    t = t0[grp] + np.where(is_dep, rng.random(n) * 30 * _MIN, 30 * _MIN + wait_min * _MIN)
    txn = np.where(is_dep, _DEP, _WD).astype(np.int8)
    pay = np.where(is_dep, np.where(rng.random(n) < 0.6, _BANK, _CRYPTO),
                   np.where(rng.random(n) < 0.8, _CRYPTO, _BANK)).astype(np.int8)
    amount = scale[grp] * rng.lognormal(0.0, 0.4, n) * np.where(is_dep, 1.0, 0.9)
    return _plan(n, acct=idx[grp], t=t.astype(np.int64), typ=np.full(n, _MULE), txn=txn,
                 pay=pay, amount=amount, chan=_choice(rng, n, (0.5, 0.45, 0.05)),
                 asset=_choice(rng, n, (0.3, 0.2, 0.4, 0.1, 0.0)),
                 new_device=rng.random(n) < 0.1, new_wd=(~is_dep) & (rng.random(n) < 0.55),
                 ips_extra=np.where(rng.random(n) < 0.3, 1, 0))


def _promo_abuse(rng: np.random.Generator, accts: _Accounts, n: int,
                 span: int) -> dict[str, np.ndarray]:
    """Rings of fresh accounts on one shared device, each redeeming many promotions."""
    if n == 0:
        return _plan(0)
    per_acct = _group_sizes(rng, n, 1, 1.0)
    m = len(per_acct)
    ring_sizes = _group_sizes(rng, m, 2, 5.0)
    r = len(ring_sizes)
    ring = np.repeat(np.arange(r), ring_sizes)
    ring_t0 = _time_draw(rng, r, span, "campaign")
    acct_t0 = ring_t0[ring] + (rng.random(m) * 2 * _DAY).astype(np.int64)
    acct_t0 = np.minimum(acct_t0, span - 2 * _HOUR)
    created = acct_t0 - rng.uniform(0.05, 10, m) * _DAY
    ring_device = rng.integers(0, 10**8, r)
    ring_os = _choice(rng, r, _OS_P)
    idx = accts.add(rng, created, _KYC_SHADY, rng.lognormal(np.log(70), 0.5, m),
                    promo=1 + rng.poisson(2.5, m),
                    apd=ring_sizes[ring] + rng.integers(0, 3, m),
                    device=ring_device[ring], os=ring_os[ring],
                    email_tag=ring, email_name=rng.integers(0, 10**6, r)[ring])
    grp = np.repeat(np.arange(m), per_acct)
    t = acct_t0[grp] + (rng.random(n) * 90 * _MIN).astype(np.int64)
    txn = np.where(rng.random(n) < 0.45, _DEP, _TRADE).astype(np.int8)
    amount = rng.lognormal(np.log(80), 0.6, n).clip(10, 600)
    return _plan(n, acct=idx[grp], t=t, typ=np.full(n, _PROMO), txn=txn,
                 pay=_payment_for(rng, txn), amount=amount,
                 chan=_choice(rng, n, (0.35, 0.6, 0.05)), asset=_assets_for(rng, txn),
                 new_device=rng.random(n) < 0.15)


# --------------------------------------------------------------------------- assembly


def _window_count(keys: np.ndarray, query: np.ndarray, width: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """Positions [lo, hi) of sorted `keys` within [query - width, query]."""
    return (np.searchsorted(keys, query - width, side="left"),
            np.searchsorted(keys, query, side="right"))


def _assemble(rng: np.random.Generator, plan: dict[str, np.ndarray], acc: dict[str, np.ndarray],
              span: int, end: pd.Timestamp, acct_off: int, block: int, acct_width: int,
              txn_off: int, txn_width: int) -> World:
    n = len(plan["t"])
    a = plan["acct"]
    t = plan["t"]
    t = np.clip(np.where(t >= span, 2 * (span - 1) - t, t), 0, span - 1)  # mirror overruns
    txn = plan["txn"]
    amount = np.round(np.maximum(plan["amount"], 0.5), 2)
    typ = plan["typ"]

    # Exact windowed aggregates per account, on sorted (account, time) keys; sorted queries
    # keep searchsorted cache-friendly. Results are mapped back to plan order with `inv`.
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

    # Per-account and per-row sampled features.
    age_days = (t - acc["created"][a]) / _DAY
    avg30 = acc["scale"][a] * np.exp(0.5) * rng.lognormal(0.0, 0.2, n)
    avg30[age_days < 3] = np.nan
    ratio = amount / avg30
    ips = 1 + rng.binomial(np.maximum(count_24h - 1, 0), acc["ip_var"][a]) + plan["ips_extra"]
    acct_reset = (t - acc["reset"][a]) / _MIN
    acct_reset[~((acct_reset >= 0) & (acct_reset <= 30 * 24 * 60))] = np.nan
    reset_min = np.where(np.isnan(plan["reset_min"]), acct_reset, plan["reset_min"])
    # feature-store timeouts on the stream store
    for arr, p in ((amount_24h, 0.02), (reset_min, 0.01), (since_dep, 0.015)):
        arr[rng.random(n) < p] = np.nan
    new_device = plan["new_device"].astype(np.int8)
    os_code = np.where(plan["os"] >= 0, plan["os"], acc["os"][a])
    swap = (new_device == 1) & (rng.random(n) < 0.3)
    os_code[swap] = _choice(rng, int(swap.sum()), _OS_P)
    os_code[rng.random(n) < 0.01] = -1
    country = acc["country"][a].copy()
    country[rng.random(n) < 0.01] = -1

    # Everything from here on is in event-time order.
    s = np.argsort(t, kind="stable")
    a_s = a[s]
    start_ns = end.value - span * 1_000_000
    event_ns = start_ns + t[s] * 1_000_000

    def cat(codes: np.ndarray, cats: tuple[str, ...]) -> pd.Categorical:
        return pd.Categorical.from_codes(codes[s].astype(np.int8), categories=list(cats))

    feats = {
        "amount_usd": amount[s], "txn_count_1h": txn_count_1h[s], "amount_24h_usd": amount_24h[s],
        "distinct_ips_24h": ips[s].astype(np.int32), "card_txn_count_10m": card_10m[s],
        "minutes_since_password_reset": reset_min[s], "new_device": new_device[s],
        "new_withdrawal_address": (plan["new_wd"] & (txn == _WD))[s].astype(np.int8),
        "minutes_since_last_deposit": since_dep[s], "account_age_days": age_days[s],
        "avg_amount_30d_usd": avg30[s], "amount_vs_30d_avg": ratio[s],
        "chargebacks_90d": acc["chargebacks"][a_s].astype(np.int32),
        "promo_redemptions_30d": acc["promo"][a_s].astype(np.int32),
        "accounts_per_device": acc["apd"][a_s].astype(np.int32),
        "txn_type": cat(txn, TXN_TYPES), "country": cat(country, COUNTRIES),
        "kyc_level": cat(acc["kyc"][a], KYC_LEVELS),
        "payment_method": cat(plan["pay"], PAYMENT_METHODS),
        "asset": cat(plan["asset"], ASSETS), "device_os": cat(os_code, DEVICE_OS),
        "channel": cat(plan["chan"], CHANNELS),
    }

    # Detail / PII columns, built as Arrow strings (no Python object per row).
    n_acc = len(acc["created"])
    txn_s = txn[s]
    ip_idx = np.where(rng.random(n) < acc["ip_var"][a_s], acc["ip2"][a_s], acc["ip"][a_s])
    foreign = plan["foreign_ip"][s]
    ip_idx[foreign] = rng.integers(0, len(_IPS), int(foreign.sum()))
    new_dev_s = new_device[s] == 1
    device_num = acc["device"][a_s]
    device_num[new_dev_s] = rng.integers(0, 10**8, int(new_dev_s.sum()))
    is_card = txn_s == _CARD
    card_num = np.where(plan["fresh_card"][s], rng.integers(0, 10**12, n), acc["card"][a_s])
    cards = _fmt_digits("4000", card_num[is_card], 12)
    is_wd = txn_s == _WD
    fresh = is_wd & (plan["new_wd"][s] == 1)
    n_fresh = int(fresh.sum())
    addr_pool = pa.concat_arrays([
        _fmt_hex("0x", _addr_bytes(acc["wallet"])),
        _fmt_hex("0x", rng.integers(0, 256, (n_fresh, 20), dtype=np.uint8))])
    addr_idx = a_s.copy()
    addr_idx[fresh] = n_acc + np.arange(n_fresh)
    acct_ids = _fmt_digits("A", acct_off + rng.permutation(block)[:n_acc], acct_width)
    tx_ids = _fmt_digits("T", txn_off + np.arange(n), txn_width)
    strings = pa.table({
        "transaction_id": tx_ids,
        "account_id": _take(acct_ids, a_s),
        "email": _take(pa.array(_emails(acc), type=pa.string()), a_s),
        "ip_address": _take(pa.array(_IPS, type=pa.string()), ip_idx),
        "device_id": _fmt_digits("D", device_num, 8),
        "card_number": _take(cards, np.cumsum(is_card) - 1, is_card),
        "withdrawal_address": _take(addr_pool, addr_idx, is_wd),
    }).to_pandas()

    event_time = pd.DatetimeIndex(event_ns.astype("datetime64[ns]")).tz_localize("UTC")
    cols: dict[str, object] = {"transaction_id": strings["transaction_id"],
                               "account_id": strings["account_id"], "event_time": event_time}
    cols.update((name, feats[name]) for name in FEATURE_NAMES)
    cols.update((name, strings[name]) for name in PII_COLUMNS if name != "currency")
    tx = pd.DataFrame(cols)
    tx["currency"] = "USD"

    # Labels: chargebacks arrive 2-40 days late, legit labels mature after 30-33 days.
    fraud = typ[s] != _LEGIT
    delay_days = np.where(fraud, np.clip(rng.lognormal(np.log(10), 0.6, n), 2, 40),
                          30 + rng.random(n) * 3)
    label_ns = event_ns + (delay_days * _DAY).astype(np.int64) * 1_000_000
    all_labels = pd.DataFrame({
        "transaction_id": strings["transaction_id"], "is_fraud": fraud.astype(np.int8),
        "label_time": pd.DatetimeIndex(label_ns.astype("datetime64[ns]")).tz_localize("UTC")})
    labels = all_labels[label_ns <= end.value].reset_index(drop=True)
    gt_ids = pa.table({"transaction_id": tx_ids.filter(pa.array(fraud))}).to_pandas()
    gt_ids["typology"] = np.array(_TYPOLOGY_NAMES, dtype=object)[typ[s][fraud]]
    return World(tx, labels, gt_ids, all_labels)


def _addr_bytes(seed_values: np.ndarray) -> np.ndarray:
    """20 pseudo-random bytes per account, derived from an account-level random number."""
    v = seed_values.astype(np.uint64)
    out = np.empty((len(v), 20), dtype=np.uint8)
    x = v * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    for i in range(20):
        x ^= x >> np.uint64(29)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(32)
        out[:, i] = (x >> np.uint64(24)).astype(np.uint8)
    return out


def _emails(acc: dict[str, np.ndarray]) -> np.ndarray:
    nf, nl = len(_FIRST), len(_LAST)
    out = np.empty(len(acc["email_name"]), dtype=object)
    for i, (code, tag) in enumerate(zip(acc["email_name"].tolist(), acc["email_tag"].tolist(),
                                        strict=True)):
        first, last = _FIRST[code % nf], _LAST[(code // nf) % nl]
        num = code // (nf * nl)
        if tag >= 0:  # promo rings: plus-addressing on one mailbox
            out[i] = f"{first}{num % 100}+promo{i % 97}@example.com"
        else:
            out[i] = f"{first}.{last}{num}@example.com"
    return out
