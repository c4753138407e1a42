"""PII masking: exact display forms, nulls kept, and never the whole original value."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_access.masking import PII_COLUMNS, mask_frame, mask_value


@pytest.mark.parametrize(("column", "value", "masked"), [
    ("email", "jane.doe42@example.com", "j***@example.com"),
    ("email", "a@b.io", "a***@b.io"),
    ("email", "not-an-email-address", "…ress"),
    ("ip_address", "192.0.2.17", "192.0.x.x"),
    ("ip_address", "203.0.113.254", "203.0.x.x"),
    ("ip_address", "2001:db8::1", "2001:db8::x"),
    ("account_id", "A0001234", "A…1234"),
    ("account_id", "acct_000987654", "…7654"),
    ("card_number", "4000123412349876", "**** **** **** 9876"),
    ("card_number", "4000 1234 1234 9876", "**** **** **** 9876"),
    ("device_id", "D00012345", "D…2345"),
    ("withdrawal_address", "0x9f2c4e1a77b3d5e6f8a9", "0x…f8a9"),
    ("account_id", "A12", "****"),
    ("email", "*@example.com", "****"),
])
def test_mask_value_display_forms(column: str, value: str, masked: str):
    assert mask_value(column, value) == masked


def test_mask_frame_masks_pii_columns_only_and_keeps_nulls():
    frame = pd.DataFrame({
        "transaction_id": ["T1", "T2"],
        "email": ["jane@example.com", None],
        "card_number": [None, "4000123412349876"],
        "amount_usd": [12.5, 99.0],
        "account_id": pd.Series(["A0001234", "A0009999"], dtype="string"),
    })
    out = mask_frame(frame)
    assert list(out["email"].isna()) == [False, True]
    assert out.loc[0, "email"] == "j***@example.com"
    assert pd.isna(out.loc[0, "card_number"])
    assert out.loc[1, "card_number"] == "**** **** **** 9876"
    assert list(out["account_id"]) == ["A…1234", "A…9999"]
    assert list(out["transaction_id"]) == ["T1", "T2"]
    assert list(out["amount_usd"]) == [12.5, 99.0]
    assert frame.loc[0, "email"] == "jane@example.com"  # the input is not touched


def test_mask_frame_skips_absent_columns():
    frame = pd.DataFrame({"transaction_id": ["T1"]})
    assert mask_frame(frame).equals(frame)


@settings(max_examples=300, deadline=None)
@given(column=st.sampled_from(PII_COLUMNS), value=st.text(min_size=8, max_size=40))
def test_masked_output_never_contains_the_original(column: str, value: str):
    assert value not in mask_value(column, value)


@settings(max_examples=200, deadline=None)
@given(local=st.from_regex(r"[a-z0-9.+_]{1,20}", fullmatch=True),
       domain=st.from_regex(r"[a-z]{1,10}\.(com|io|org)", fullmatch=True))
def test_masked_email_never_contains_the_address(local: str, domain: str):
    email = f"{local}@{domain}"
    masked = mask_value("email", email)
    assert masked == f"{local[0]}***@{domain}"
    assert email not in masked


@settings(max_examples=200, deadline=None)
@given(digits=st.from_regex(r"[0-9]{12,19}", fullmatch=True))
def test_masked_card_keeps_only_last_four_digits(digits: str):
    masked = mask_value("card_number", digits)
    assert masked == f"**** **** **** {digits[-4:]}"
    assert sum(c.isdigit() for c in masked) == 4
