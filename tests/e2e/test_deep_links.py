"""A fresh server's very first session may arrive on a deep link (a bookmark, a link from a
ticket): it must open that page, without Streamlit's "Page not found" dialog.

Streamlit switches to its legacy multipage mode when a folder named `pages/` sits beside the
entry script, until the first `st.navigation` call of the process. The first session then
resolved the URL against that folder's file names, reported "page not found", and ran the
folder's page scripts without the router, so the pages live in `app_pages/`."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
LOAD_MS = 120_000


def test_no_legacy_pages_folder_beside_the_router():
    assert not (ROOT / "pages").exists(), \
        "a pages/ folder beside streamlit_app.py turns on Streamlit's legacy page discovery"


def test_the_first_session_of_a_fresh_server_opens_its_deep_link(
        browser_page: Page, app_server, workspace_copy: Path):
    # a server of its own on a private workspace, whose first session is this deep link (a
    # page whose file name is not its URL: `audit` is app_pages/audit_trail.py)
    path, heading = "audit", "Audit Trail"
    base_url = app_server(workspace_copy, {"FRAUDLENS_DEMO_MODE": "1",
                                           "FRAUDLENS_DEMO_ROLE": "admin"})
    page = browser_page
    page.goto(f"{base_url}/{path}")
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=LOAD_MS)
    page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=LOAD_MS)
    assert page.get_by_text("Page not found").count() == 0
    assert page.url.endswith(f"/{path}")
    page.goto("about:blank")  # leave before the server stops, so nothing is left loading
    app_server.stop(base_url)
