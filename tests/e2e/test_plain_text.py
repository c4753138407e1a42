"""SECURITY 24 in Chromium: values from data are shown as plain text on every page. Markdown,
image, link and HTML payloads are planted in every string column of a transaction and in a
finding's annotation; every page is opened; the browser must make no request to any host but
the app, and render no <img>/<a> pointing elsewhere. Also: navigation icons are Material
Symbols (no emoji), and /home opens Home."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, expect

from data_access.workspace import Workspace

pytestmark = pytest.mark.e2e

LOAD_MS = 120_000
PAYLOAD = ("![x](http://127.0.0.1:9/pixel.png) [click](http://127.0.0.1:9/x) "
           "<img src=http://127.0.0.1:9/h.png onerror=alert(1)> **bold** _it_ `code`")
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")


def _top_case(workspace: Path) -> str:
    con = Workspace(workspace).reader()
    try:
        return con.execute("SELECT transaction_id FROM scores WHERE model_id = 'fraud_xgb@1' "
                           "ORDER BY score DESC, transaction_id LIMIT 1").fetchone()[0]
    finally:
        con.close()


def _plant_transaction(workspace: Path, txn: str, edit_lake_rows) -> list[str]:
    import pandas as pd

    planted: list[str] = []

    def change(frame: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
        for col in frame.columns:
            if col == "transaction_id":
                continue
            kind = frame[col].dtype
            if isinstance(kind, pd.CategoricalDtype) or pd.api.types.is_string_dtype(kind) \
                    or pd.api.types.is_object_dtype(kind):
                frame[col] = frame[col].astype(object)
                frame.loc[mask, col] = PAYLOAD
                planted.append(col)
        return frame

    assert edit_lake_rows(workspace, "transactions", txn, change) >= 1
    return sorted(set(planted))


def _plant_annotation(workspace: Path) -> str:
    from app.services import overview, pattern_review
    from data_access import review_journal
    from data_access.journal import open_journal

    ws = Workspace(workspace)
    model_id = overview.model_infos(
        [{**m.to_dict(), "model_id": m.key} for m in ws.registry.list()])[0].model_id
    con = ws.reader()
    try:
        window = pattern_review.last_full_week(con)
        result = pattern_review.mine(con, ws.registry.load(model_id), window, seed=7)
    finally:
        con.close()
    journal = open_journal(workspace)
    try:
        review_journal.store_findings(journal, model_id, window.since, window.until,
                                      result.findings, result.members, "planter")
        finding = str(result.findings["finding_id"].iloc[0])
        review_journal.annotate(journal, finding, title=PAYLOAD, status="new", owner=PAYLOAD,
                                notes=PAYLOAD, author="planter@example.invalid")
    finally:
        journal.close()
    return finding


def _outside_links(page: Page, base: str) -> list[str]:
    refs = page.evaluate(
        "() => [...document.querySelectorAll('img[src], a[href], link[href], script[src], "
        "iframe[src], source[src]')].map(e => e.getAttribute('src') || e.getAttribute('href'))")
    host = urlparse(base).netloc
    return [r for r in refs if urlparse(r).scheme in ("http", "https")
            and urlparse(r).netloc != host]


def test_planted_markup_stays_text_and_nothing_is_fetched_from_elsewhere(
        app_server, workspace_copy: Path, edit_lake_rows, browser_page: Page, screenshot):
    txn = _top_case(workspace_copy)
    columns = _plant_transaction(workspace_copy, txn, edit_lake_rows)
    assert columns, "the transaction has no string column to plant in"
    _plant_annotation(workspace_copy)
    base = app_server(workspace_copy, {"FRAUDLENS_DEMO_MODE": "1",
                                       "FRAUDLENS_DEMO_ROLE": "admin"})
    page = browser_page
    host = urlparse(base).netloc
    elsewhere: list[str] = []
    page.on("request", lambda r: elsewhere.append(r.url)
            if urlparse(r.url).scheme in ("http", "https", "ws", "wss")
            and urlparse(r.url).netloc != host else None)
    visits = [("home", "FraudLens"), (f"cases?txn={txn}&model=fraud_xgb@1", f"Case {txn}"),
              ("patterns", "Global Patterns"), ("review", "Pattern Review"),
              ("monitoring", "Monitoring"), ("audit", "Audit Trail"),
              ("compare", "Model Comparison")]
    for path, heading in visits:
        page.goto(f"{base}/{path}")
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(
            timeout=LOAD_MS)
        page.wait_for_timeout(500)
        page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=LOAD_MS)
        assert _outside_links(page, base) == [], path
        assert "Page not found" not in page.content(), path
        if path.startswith("cases"):
            screenshot(page, "plain_text_case")
    assert elsewhere == [], f"the browser fetched from other hosts: {elsewhere[:5]}"

    nav = page.get_by_test_id("stSidebarNav")
    assert not EMOJI.search(nav.inner_text()), nav.inner_text()
    icons = nav.get_by_test_id("stIconMaterial")
    assert icons.count() >= 5
