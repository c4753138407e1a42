"""The demo world's vocabulary: feature schema, category levels, typology codes, time units
and the sampling probabilities the parts of the world share."""

from __future__ import annotations

from datetime import UTC, datetime

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
           "The device is new to this account"),
        _f("new_withdrawal_address", "bool", "stream",
           "The withdrawal goes to an address new to this account"),
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
