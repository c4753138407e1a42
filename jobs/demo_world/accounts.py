"""Accounts of one chunk and the analyst-only detail columns drawn from them (ids, e-mail,
IP, device, card number, withdrawal address), built as Arrow strings without a Python object
per row."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from jobs.demo_world.vocabulary import (
    _CARD,
    _CHANNEL_P,
    _COUNTRY_P,
    _FIRST,
    _IPS,
    _LAST,
    _OS_P,
    _WD,
)


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


def detail_strings(rng: np.random.Generator, plan: dict[str, np.ndarray],
                   acc: dict[str, np.ndarray], a_s: np.ndarray, s: np.ndarray,
                   new_device: np.ndarray, acct_off: int, block: int, acct_width: int,
                   txn_off: int, txn_width: int) -> tuple[pa.Table, pa.Array]:
    """Detail / PII columns in event-time order (`s`), and the transaction ids as Arrow."""
    n = len(s)
    txn = plan["txn"]
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
    })
    return strings, tx_ids


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
