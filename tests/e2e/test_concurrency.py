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


# Every page at once, in eight sessions, while a CLI job writes a new day into the lake.
EVERY_PAGE = (("", "FraudLens"), ("patterns", "Global Patterns"),
              ("compare", "Model Comparison"), ("review", "Pattern Review"),
              ("monitoring", "Monitoring"), ("audit", "Audit Trail"),
              ("home", "FraudLens"), ("experiments", None))
COMPARE_MS = 240_000


def _new_day_file(workspace: Path, out: Path, rows: int = 300) -> Path:
    import pandas as pd

    con = Workspace(workspace).reader()
    try:
        frame = con.execute("SELECT * FROM transactions ORDER BY transaction_id LIMIT ?",
                            [rows]).df()
        last = con.execute("SELECT max(event_time) FROM transactions").fetchone()[0]
    finally:
        con.close()
    frame["transaction_id"] = [f"NEWDAY{i:06d}" for i in range(len(frame))]
    last = pd.Timestamp(last)
    last = last.tz_convert("UTC") if last.tzinfo else last.tz_localize("UTC")
    frame["event_time"] = last.floor("D") + pd.Timedelta(days=1, hours=1)
    frame.to_parquet(out, index=False)
    return out


def _journal_counts(workspace: Path) -> dict[str, int]:
    journal = sqlite3.connect(f"{(workspace / 'journal.sqlite').as_uri()}?mode=ro", uri=True)
    try:
        rows = journal.execute("SELECT target, count(*) FROM audit_log WHERE action = "
                               "'case_view' GROUP BY target").fetchall()
    finally:
        journal.close()
    return {t: int(n) for t, n in rows}


def test_eight_sessions_on_every_page_while_a_cli_job_writes(
        app_server, workspace_copy, fresh_page, tmp_path):
    import subprocess
    import sys

    base = app_server(workspace_copy, {"FRAUDLENS_DEMO_MODE": "1",
                                       "FRAUDLENS_DEMO_ROLE": "admin"})
    cases = _top_cases(workspace_copy, SESSIONS)
    new_day = _new_day_file(workspace_copy, tmp_path / "new_day.parquet")
    pages = [fresh_page() for _ in range(SESSIONS)]
    writer = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "--workspace", str(workspace_copy), "import",
         "transactions", str(new_day)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for page, (path, _) in zip(pages, EVERY_PAGE, strict=True):
            page.goto(f"{base}/{path}", wait_until="commit")
        for page, (path, heading) in zip(pages, EVERY_PAGE, strict=True):
            if heading:
                expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(
                    timeout=COMPARE_MS if path == "compare" else LOAD_MS)
            page.get_by_test_id("stStatusWidget").wait_for(
                state="detached", timeout=COMPARE_MS if path == "compare" else LOAD_MS)
            assert page.get_by_test_id("stException").count() == 0, path
            assert "This app has encountered an error" not in page.content(), path
        assert writer.wait(120) == 0, writer.stdout.read().decode()
        for page, txn in zip(pages, cases, strict=True):  # then each session opens its case
            page.goto(f"{base}/cases?txn={txn}&model=fraud_xgb@1", wait_until="commit")
        for page, txn in zip(pages, cases, strict=True):
            expect(page.get_by_role("heading", name=f"Case {txn}")).to_be_visible(
                timeout=LOAD_MS)
            page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=LOAD_MS)
            assert "This app has encountered an error" not in page.content(), txn
    finally:
        if writer.poll() is None:
            writer.kill()
        for page in pages:
            page.close()
        app_server.stop(base)
    views = _journal_counts(workspace_copy)
    assert {t: views.get(t, 0) for t in cases} == dict.fromkeys(cases, 1)
