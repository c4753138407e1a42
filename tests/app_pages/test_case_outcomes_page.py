"""Working a case in the Case Explorer (AppTest): an analyst records an outcome with a typology
and a note, assigns it, and the queue shows the case as decided; each save is audited."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.shell.auth import TEST_PRINCIPAL_KEY, Principal
from data_access import dispositions
from data_access.audit import AuditLog
from data_access.journal import open_journal
from data_access.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
XGB = "fraud_xgb@1"


@pytest.fixture
def ws(demo_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "workspace"
    shutil.copytree(demo_workspace, target)
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(target))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    return target


def _top_case(ws: Path) -> str:
    con = Workspace.at(ws).reader()
    try:
        return con.execute("SELECT transaction_id FROM scores WHERE model_id = ? ORDER BY "
                           "score DESC, transaction_id LIMIT 1", [XGB]).fetchone()[0]
    finally:
        con.close()


def _case_page(txn: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("ana", "ana@example.invalid", "Ana",
                                                     "analyst")
    at.run()
    at.switch_page("app_pages/case_explorer.py")
    at.query_params["txn"] = txn
    at.query_params["model"] = XGB
    return at.run()


def test_analyst_records_an_outcome_and_the_queue_shows_it_decided(ws: Path) -> None:
    txn = _top_case(ws)
    at = _case_page(txn)
    assert not at.exception
    assert any("unworked" in c.value for c in at.caption)
    at.radio(key=f"disp_outcome_{txn}").set_value("confirmed_fraud")
    at.selectbox(key=f"disp_typology_{txn}").set_value("card testing")
    at.text_area(key=f"disp_notes_{txn}").input("[click](http://127.0.0.1:9/x) seen before")
    next(b for b in at.button if b.label == "Save outcome").click()
    at.run()
    assert not at.exception and not at.error
    journal = open_journal(ws)
    saved = dispositions.disposition_history(journal, txn)
    assert list(saved[["outcome", "typology", "assignee", "author"]].iloc[0]) == [
        "confirmed_fraud", "card testing", "ana@example.invalid", "ana@example.invalid"]
    audit = AuditLog(journal).records()
    assert list(audit[audit["action"] == "disposition"]["target"]) == [txn]
    assert any("decided" in c.value for c in at.caption)
    queue = next(df.value for df in at.dataframe if "status" in df.value.columns)
    assert queue.loc[queue["transaction_id"] == txn, "status"].tolist() == ["decided"]
    assert set(queue["status"]) <= {"unworked", "assigned", "decided"}


def test_scores_never_round_to_certainty_and_missing_reads_missing() -> None:
    import pandas as pd

    from app.shell import components

    assert components.score_pct(0.99996) == ">99.9%"
    assert components.score_pct(0.00004) == "<0.1%"
    assert components.score_pct(1.0) == "100.0%" and components.score_pct(0.5) == "50.0%"
    shown = components.for_display(pd.DataFrame({"transaction_id": ["T1"], "channel": [None],
                                                 "score": [0.5]}))
    assert shown["channel"].tolist() == ["missing"] and shown["score"].tolist() == [50.0]


def test_a_busy_account_is_listed_whole_page_by_page(ws: Path) -> None:
    con = Workspace.at(ws).reader()
    try:
        account, n = con.execute("SELECT account_id, count(*) AS n FROM transactions GROUP BY 1 "
                                 "ORDER BY n DESC, account_id LIMIT 1").fetchone()
    finally:
        con.close()
    assert n > 200  # the old silent cut
    at = _case_page(_top_case(ws))
    at.text_input(key="find_account").input(account).run()
    assert not at.exception
    assert any(c.value.endswith(f"of {n}") for c in at.caption), [c.value for c in at.caption]
    details = next(d.value for d in at.dataframe if list(d.value.columns) == ["field", "value"])
    assert "None" not in details["value"].tolist()


def test_what_if_shows_before_and_after_for_every_model_and_is_audited(ws: Path) -> None:
    txn = _top_case(ws)
    at = _case_page(txn)
    at.selectbox(key=f"wi_feature_{txn}").set_value("txn_count_1h").run()
    at.number_input(key=f"wi_value_{txn}_txn_count_1h").set_value(9).run()
    at.button(key=f"wi_go_{txn}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = [m.value for m in at.markdown if "→" in m.value]
    assert len(shown) == 2  # fraud_xgb@1 and fraud_catboost@1
    records = AuditLog(open_journal(ws)).records()
    what = records[records["action"] == "what_if"]
    assert what["target"].tolist() == [txn] and '"to":"9"' in what["details"].iloc[0]
