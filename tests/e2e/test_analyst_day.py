"""The analyst's day (issue #17) in Chromium: three cases worked from the queue to decided, the
queue's status column and filter, the open case surviving a model switch, each view and
decision audited once, and the dispositions export holding the three decisions."""

from __future__ import annotations

import csv
import re
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.cli.main import main as fraudlens

pytestmark = pytest.mark.e2e

LOAD_MS = 60_000
TXN_ID = re.compile(r"^T\d+$")
DECISIONS = (("Confirmed fraud", "card testing"), ("Legitimate", None),
             ("Confirmed fraud", "account takeover"))


def _queue(page: Page):
    page.get_by_role("tab", name="Queue").click()
    panel = page.get_by_role("tabpanel", name="Queue")
    expect(panel.get_by_text(re.compile(r"scores first, at most 200 cases"))).to_be_visible(
        timeout=LOAD_MS)
    return panel


def _cell(panel, column: int, row: int) -> str:
    cell = panel.get_by_test_id("stDataFrame").get_by_test_id(f"glide-cell-{column}-{row}")
    expect(cell).not_to_be_empty()
    return str(cell.text_content())


def _settle(page: Page) -> None:
    page.wait_for_timeout(300)
    page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=LOAD_MS)


def _decide(page: Page, txn: str, outcome: str, typology: str | None) -> None:
    _settle(page)
    form = page.get_by_test_id("stForm").filter(has_text="Save outcome")
    expect(form).to_have_count(1, timeout=LOAD_MS)  # the previous case's form has gone
    choice = form.get_by_role("radio", name=outcome, exact=True)
    form.locator("label").filter(has=page.get_by_role("radio", name=outcome,
                                                      exact=True)).click()
    expect(choice).to_be_checked()
    if typology:
        form.get_by_role("combobox", name="Typology").click()
        page.get_by_role("option", name=typology, exact=True).click()
    form.get_by_role("textbox", name="Note").fill(f"worked {txn} [x](http://127.0.0.1:9/x)")
    form.get_by_role("button", name="Save outcome").click()
    expect(page.get_by_text("Status: decided")).to_be_visible(timeout=LOAD_MS)


def _switch_model_keeps_the_case(page: Page, txn: str) -> None:
    box = page.get_by_role("combobox", name="Model", exact=True)
    current = box.input_value()
    box.click()
    options = page.get_by_role("option")
    other = next(t for t in options.all_inner_texts() if t.strip() and t.strip() != current)
    page.get_by_role("option", name=other.strip(), exact=True).click()
    _settle(page)
    expect(page.get_by_role("heading", name=f"Case {txn}", exact=True)).to_be_visible(
        timeout=LOAD_MS)
    assert f"txn={txn}" in page.url
    box = page.get_by_role("combobox", name="Model", exact=True)
    box.click()
    page.get_by_role("option", name=current, exact=True).click()
    _settle(page)
    expect(page.get_by_role("heading", name=f"Case {txn}", exact=True)).to_be_visible()


def test_analyst_works_three_cases_from_the_queue_to_decided(
        app_server, workspace_copy: Path, browser_page: Page, screenshot, tmp_path: Path):
    page = browser_page
    base = app_server(workspace_copy, {"FRAUDLENS_DEMO_MODE": "1",
                                       "FRAUDLENS_DEMO_ROLE": "analyst"})
    page.goto(f"{base}/cases")
    panel = _queue(page)
    worked = []
    for row, (outcome, typology) in enumerate(DECISIONS):
        txn = _cell(panel, 1, row)
        assert TXN_ID.match(txn) and _cell(panel, 2, row) == "unworked"
        panel.get_by_test_id("stDataFrame").click(position={"x": 15, "y": 35 + 17 + 35 * row})
        expect(page.get_by_role("heading", name=f"Case {txn}", exact=True)).to_be_visible(
            timeout=LOAD_MS)
        if row == 0:
            _switch_model_keeps_the_case(page, txn)
        _decide(page, txn, outcome, typology)
        worked.append(txn)
        panel = _queue(page)
        _settle(page)
        assert _cell(panel, 2, row) == "decided"
    screenshot(page, "analyst_day_decided")

    page.get_by_role("button", name="decided").click()
    _settle(page)
    assert [_cell(panel, 1, i) for i in range(3)] == worked
    assert panel.get_by_text(re.compile(r"Rows 1–3 of 3")).count() == 1
    screenshot(page, "analyst_day_filtered")
    page.goto("about:blank")  # leave the app before its server stops
    app_server.stop(base)

    journal = sqlite3.connect(f"{(workspace_copy / 'journal.sqlite').as_uri()}?mode=ro",
                              uri=True)
    try:
        audit = journal.execute("SELECT action, target FROM audit_log WHERE action IN "
                                "('case_view', 'disposition')").fetchall()
    finally:
        journal.close()
    assert sorted(t for a, t in audit if a == "disposition") == sorted(worked)
    for txn in worked:  # one view per case opened (switching model back and forth: 3 for #1)
        assert sum(1 for a, t in audit if a == "case_view" and t == txn) == (
            3 if txn == worked[0] else 1)

    today = datetime.now(UTC).date()
    out = tmp_path / "dispositions.csv"
    assert fraudlens(["--workspace", str(workspace_copy), "export", "dispositions", "--since",
                      today.isoformat(), "--until", (today + timedelta(days=1)).isoformat(),
                      "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["transaction_id"] for r in rows] == worked
    assert [r["outcome"] for r in rows] == ["confirmed_fraud", "legitimate", "confirmed_fraud"]
    assert {r["author"] for r in rows} == {"demo@fraudlens.invalid"}
