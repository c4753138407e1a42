"""Mining fits its rules on threads and replays them all in one backtest scan: the findings do
not depend on the number of threads, and a window costs one backtest query, not one per rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from app.services import pattern_review
from data_access import findings
from data_access.workspace import Workspace
from explainers.rules import Rule


def _mine(demo_workspace: Path) -> pattern_review.MiningResult:
    ws = Workspace(demo_workspace)
    con = ws.reader()
    try:
        window = pattern_review.last_full_week(con)
        assert window is not None
        return pattern_review.mine(con, ws.registry.load("fraud_xgb@1"), window, seed=7)
    finally:
        con.close()


def test_rules_do_not_depend_on_threads_and_are_backtested_in_one_scan(
        demo_workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scans: list[str] = []
    fetch = findings.fetch_df
    monkeypatch.setattr(findings, "fetch_df",
                        lambda con, sql, params=(): scans.append(sql) or fetch(con, sql, params))
    monkeypatch.setattr(pattern_review, "RULE_THREADS", 4)
    threaded = _mine(demo_workspace)
    current = threaded.findings[threaded.findings["change"] != "gone"]
    assert len(current) >= 2 and len(scans) == 1
    monkeypatch.setattr(pattern_review, "RULE_THREADS", 1)
    alone = _mine(demo_workspace)
    pd.testing.assert_frame_equal(threaded.findings, alone.findings, check_exact=True)
    pd.testing.assert_frame_equal(threaded.members, alone.members, check_exact=True)
    # each finding's backtest is the rule's own backtest
    ws = Workspace(demo_workspace)
    con = ws.reader()
    try:
        for row in current.itertuples():
            rule = Rule.from_json(row.rule_json)
            bt = findings.backtest(con, rule.conditions, list(ws.registry.load(
                "fraud_xgb@1").schema.names), threaded.window.since, threaded.window.until)
            assert (row.backtest_alerts, row.rule_alerts_in_window) == (bt.alerts,
                                                                        bt.window_alerts)
            assert row.backtest_precision == pytest.approx(bt.precision, abs=1e-6, nan_ok=True)
    finally:
        con.close()
