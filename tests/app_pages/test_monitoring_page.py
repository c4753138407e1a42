"""The Monitoring page through the entry point (AppTest) on a copy of the demo workspace:
it renders for analysts, lists the alerts, and an acknowledgement lands in the audit trail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.services import monitoring
from app.shell.auth import TEST_PRINCIPAL_KEY, Principal
from data_access.audit import AuditLog
from data_access.journal import open_journal

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
PAGE = "app_pages/monitoring.py"
XGB = "fraud_xgb@1"


@pytest.fixture(scope="module")
def page_workspace(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("monitor_page") / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


@pytest.fixture
def page_env(monkeypatch: pytest.MonkeyPatch, page_workspace: Path) -> Path:
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(page_workspace))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    return page_workspace


def _open(role: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("tester", "tester@example.invalid",
                                                     "Test Analyst", role)
    at.run()
    at.switch_page(PAGE)
    at.run()
    if at.selectbox(key="monitor_model").value != XGB:
        at.selectbox(key="monitor_model").set_value(XGB).run()
    return at


def _table(at: AppTest, column: str):
    """The first table on the page with `column` (AppTest keeps no dataframe keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_analyst_sees_alerts_and_an_acknowledgement_is_audited(page_env: Path):
    at = _open("analyst")
    assert not at.exception, at.exception
    assert at.title[0].value == "Monitoring"
    alerts = _table(at, "Acknowledged")
    assert len(alerts) > 0 and alerts["Acknowledged"].eq("no").all()
    assert any("stream features: missing rate" in m for m in alerts["What"])
    chosen = at.selectbox(key="monitor_alert").value
    at.text_input(key="monitor_ack_note").input("stream store restarted")
    next(b for b in at.button if b.label == "Acknowledge alert").click()
    at.run()
    assert not at.exception, at.exception
    journal = open_journal(page_env)
    try:
        records = AuditLog(journal).records(action=monitoring.ACK_ACTION)
    finally:
        journal.close()
    assert list(records["target"]) == [chosen]
    assert records["role"].iloc[0] == "analyst"
    acked = _table(at, "Acknowledged").set_index("Alert").loc[chosen]
    assert "stream store restarted" in acked["Acknowledged"]
    assert any("Acknowledged by" in t.value for t in at.text)


def test_weeks_without_labels_read_not_yet_measurable(page_env: Path):
    at = _open("analyst")
    weekly = _table(at, "ROC AUC")
    last = weekly.iloc[-1]
    assert last["ROC AUC"] == "not yet measurable"
    assert "nan" not in " ".join(weekly.astype(str).to_numpy().ravel()).lower()


def test_a_malformed_rules_file_is_named_on_the_page(page_env: Path):
    rules = page_env / "monitoring.toml"
    rules.write_text("[drift]\nfeature_psi = 0.3\nbogus_key = 1\n", encoding="utf-8")
    try:
        at = _open("analyst")
        assert not at.exception, at.exception
        text = " ".join(c.value for c in at.code)
        assert "line 3" in text and "bogus_key" in text
    finally:
        rules.unlink()
