"""SECURITY item 20: eight browser sessions working cases at once, with no errors and no
state crossing from one session to another."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import expect

from data_access.workspace import Workspace

pytestmark = pytest.mark.e2e

SESSIONS = 8
LOAD_MS = 90_000


def _top_cases(workspace: Path, n: int) -> list[str]:
    con = Workspace(workspace).reader()
    try:
        rows = con.execute("SELECT transaction_id FROM scores WHERE model_id = 'fraud_xgb@1' "
                           "ORDER BY score DESC, transaction_id LIMIT ?", [n]).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def test_eight_sessions_work_different_cases_at_once(app_server, e2e_workspace, fresh_page,
                                                     screenshot):
    base = app_server(e2e_workspace, {"FRAUDLENS_DEMO_MODE": "1",
                                      "FRAUDLENS_DEMO_ROLE": "analyst"})
    pages = []
    try:
        cases = _top_cases(e2e_workspace, SESSIONS)
        pages.extend(fresh_page() for _ in cases)
        # every session starts loading before any is checked, so their script runs overlap
        for page, txn in zip(pages, cases, strict=True):
            page.goto(f"{base}/cases?txn={txn}&model=fraud_xgb@1", wait_until="commit")
        for page, txn in zip(pages, cases, strict=True):
            expect(page.get_by_role("heading", name=f"Case {txn}")).to_be_visible(
                timeout=LOAD_MS)
            expect(page.get_by_text("What makes it look like fraud")).to_be_visible(
                timeout=LOAD_MS)
            others = [c for c in cases if c != txn]
            for other in others:
                assert page.get_by_role("heading", name=f"Case {other}").count() == 0
        screenshot(pages[-1], "concurrent_case")
    finally:
        for page in pages:  # closed first, so no page is left loading from a stopped server
            page.close()
        app_server.stop(base)  # releases the journal, which the server holds read-write
    journal = sqlite3.connect(f"{(e2e_workspace / 'journal.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        viewed = {r[0] for r in journal.execute(
            "SELECT target FROM audit_log WHERE action = 'case_view'").fetchall()}
    finally:
        journal.close()
    assert set(cases) <= viewed  # every session's view was audited as its own case
