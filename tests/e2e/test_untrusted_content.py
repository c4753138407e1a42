"""SECURITY item 6: a transaction field holding HTML is shown as text; nothing runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect

from data_access.workspace import Workspace

pytestmark = pytest.mark.e2e

PAYLOAD = "<img src=x onerror=alert(1)>"


def test_html_in_a_transaction_field_is_shown_as_text(app_server, demo_workspace: Path,
                                                      tmp_path: Path, browser_page, screenshot,
                                                      edit_lake_rows):
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_workspace, workspace)
    con = Workspace(workspace).reader()
    txn = con.execute("SELECT transaction_id FROM scores WHERE model_id = 'fraud_xgb@1' "
                      "ORDER BY score DESC, transaction_id LIMIT 1").fetchall()[0][0]
    con.close()

    def plant(frame, mask):
        frame.loc[mask, "currency"] = PAYLOAD
        return frame

    assert edit_lake_rows(workspace, "transactions", txn, plant) == 1
    dialogs: list[str] = []
    browser_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    base = app_server(workspace, {"FRAUDLENS_DEMO_MODE": "1", "FRAUDLENS_DEMO_ROLE": "analyst"})
    try:
        browser_page.goto(f"{base}/cases?txn={txn}&model=fraud_xgb@1")
        expect(browser_page.get_by_role("heading", name=f"Case {txn}")).to_be_visible(
            timeout=90_000)
        # the details grid holds the payload as cell text (its accessible table is hidden)
        expect(browser_page.get_by_text(PAYLOAD, exact=True).first).to_be_attached()
        assert browser_page.locator("img[src='x']").count() == 0
        screenshot(browser_page, "untrusted_html_as_text")
        browser_page.goto("about:blank")  # leave before the server stops
    finally:
        app_server.stop(base)
    assert dialogs == []
