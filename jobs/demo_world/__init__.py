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
A stream feature-store outage is planted after the training cut-off: `amount_24h_usd` is
missing for 60 hours starting 18 days before `end` (for monitoring to find).

For large worlds `iter_world_chunks` yields account-partitioned chunks with bounded memory;
`generate_world` is the single-chunk case of the same code.
"""

from __future__ import annotations

from jobs.demo_world.vocabulary import (
    ASSETS,
    CHANNELS,
    COUNTRIES,
    DEMO_END,
    DEMO_FEATURE_SCHEMA,
    DEVICE_OS,
    FEATURE_NAMES,
    KYC_LEVELS,
    OTHER_TYPOLOGY,
    PAYMENT_METHODS,
    PII_COLUMNS,
    TXN_TYPES,
    TYPOLOGIES,
)
from jobs.demo_world.world import World, generate_world, iter_world_chunks, world_fingerprint

__all__ = [
    "ASSETS",
    "CHANNELS",
    "COUNTRIES",
    "DEMO_END",
    "DEMO_FEATURE_SCHEMA",
    "DEVICE_OS",
    "FEATURE_NAMES",
    "KYC_LEVELS",
    "OTHER_TYPOLOGY",
    "PAYMENT_METHODS",
    "PII_COLUMNS",
    "TXN_TYPES",
    "TYPOLOGIES",
    "World",
    "generate_world",
    "iter_world_chunks",
    "world_fingerprint",
]
