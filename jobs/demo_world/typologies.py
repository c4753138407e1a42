"""What happens in one chunk: ordinary activity with legit look-alikes, and the planted fraud
typologies (account takeover, card testing, money mules, promo abuse), each as a plan of rows
(account, time, type, amount, ...) drawn from the chunk's Generator in a fixed order."""

from __future__ import annotations

import numpy as np

from jobs.demo_world.accounts import _Accounts, _choice, _pick
from jobs.demo_world.vocabulary import (
    _ASSET_P,
    _ATO,
    _BANK,
    _CARD,
    _CHANNEL_P,
    _CRYPTO,
    _CT,
    _DAY,
    _DEP,
    _HEAVY,
    _HOUR,
    _INTERNAL,
    _KYC_NEW,
    _KYC_OLD,
    _KYC_SHADY,
    _LEGIT,
    _MIN,
    _MOVER,
    _MULE,
    _OS_P,
    _OTHER,
    _PCARD,
    _PROMO,
    _SHOPPER,
    _STYLE_TXN_P,
    _TRADE,
    _WD,
)

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
