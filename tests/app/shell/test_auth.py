"""The router and the role gate, driven through Streamlit's AppTest (SECURITY items 1-4, 14-15).

Signed-in users come in through `AppTest.user` (what Streamlit's OIDC puts in `st.user`) with
`[auth]` secrets set, so the real claim → role mapping runs.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import streamlit
from streamlit.testing.v1 import AppTest

import data_access.journal
import data_access.warehouse
import data_access.workspace
from app.shell.auth import TEST_PRINCIPAL_KEY, Principal, role_from_claims
from data_access.audit import AuditLog
from data_access.journal import open_journal

ROOT = Path(__file__).resolve().parents[3]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 60
SECRETS = {
    "auth": {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": "x" * 48,
        "client_id": "fraudlens",
        "client_secret": "test-secret",
        "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration",
    },
    "fraudlens": {"roles": {"claim": "groups", "mapping": {
        "fraud-analysts": "analyst", "ml-engineers": "mle", "fraudlens-admins": "admin"}}},
}


def _user(groups: list[str], email: str = "ana@example.com") -> dict[str, object]:
    return {"is_logged_in": True, "sub": email, "email": email, "name": email.split("@")[0],
            "groups": groups}


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, workspace_copy: Path) -> Path:
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace_copy))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    monkeypatch.delenv("FRAUDLENS_DEMO_ROLE", raising=False)
    return workspace_copy


@pytest.fixture
def nav_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, str, str]]]:
    """Every st.navigation call of a run: (title, url_path, visibility) per page."""
    calls: list[list[tuple[str, str, str]]] = []
    real = streamlit.navigation

    def recording(pages, **kwargs):
        calls.append([(p.title, p.url_path, p.visibility) for p in pages])
        return real(pages, **kwargs)

    monkeypatch.setattr(streamlit, "navigation", recording)
    return calls


def _app(user: dict[str, object] | None = None, secrets: dict | None = SECRETS) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if secrets:
        at.secrets = {k: dict(v) for k, v in secrets.items()}
    at.user = user if user is not None else {"is_logged_in": False}
    return at


def _records(ws: Path, action: str | None = None) -> pd.DataFrame:
    con = open_journal(ws)
    try:
        return AuditLog(con).records(action=action)
    finally:
        con.close()


def _only_sign_in(pages: list[tuple[str, str, str]]) -> bool:
    """Every registered page is the sign-in page; only one is visible (deep links alias it)."""
    return ({title for title, _, _ in pages} == {"Sign in"}
            and [vis for _, _, vis in pages].count("visible") == 1)


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.error, *at.warning, *at.info, *at.success, *at.markdown,
                               *at.title, *at.caption, *at.text)]
    return "\n".join(str(p) for p in parts)


def test_no_auth_and_no_demo_flag_refuses_to_start(app_env: Path, nav_calls):
    at = _app(secrets=None).run()
    assert not at.exception
    assert "refuses to start" in at.error[0].value
    assert "[auth]" in at.error[0].value and "FRAUDLENS_DEMO_MODE" in at.error[0].value
    assert nav_calls == []


def test_short_cookie_secret_is_refused(app_env: Path, nav_calls):
    secrets = {**SECRETS, "auth": {**SECRETS["auth"], "cookie_secret": "too-short-secret"}}
    at = _app(_user(["fraudlens-admins"]), secrets=secrets).run()
    assert "cookie_secret" in at.error[0].value and "32 bytes" in at.error[0].value
    assert nav_calls == []


def test_demo_mode_shows_banner_and_signs_in_demo_principal(app_env: Path, monkeypatch,
                                                            nav_calls):
    monkeypatch.setenv("FRAUDLENS_DEMO_MODE", "1")
    monkeypatch.setenv("FRAUDLENS_DEMO_ROLE", "analyst")
    at = _app(secrets=None).run()
    assert any("Demo mode" in w.value and "loopback only" in w.value for w in at.warning)
    visible = {title for title, _, vis in nav_calls[-1] if vis == "visible"}
    assert "Audit Trail" not in visible and "Sign in" not in visible
    assert "Home" in visible


def test_demo_mode_refuses_a_non_loopback_address(app_env: Path, monkeypatch, nav_calls):
    monkeypatch.setenv("FRAUDLENS_DEMO_MODE", "1")
    before = streamlit.get_option("server.address")
    streamlit.config.set_option("server.address", "0.0.0.0")
    try:
        at = _app(secrets=None).run()
    finally:
        streamlit.config.set_option("server.address", before)
    assert "loopback" in at.error[0].value and "0.0.0.0" in at.error[0].value
    assert nav_calls == []


def test_signed_out_visitor_sees_only_sign_in_and_no_warehouse_opens(app_env: Path, monkeypatch,
                                                                     nav_calls):
    opened: list[object] = []
    real_reader, real_journal = data_access.warehouse.open_reader, open_journal
    monkeypatch.setattr(data_access.workspace, "open_reader",
                        lambda *a, **k: opened.append(a) or real_reader(*a, **k))
    monkeypatch.setattr(data_access.journal, "open_journal",
                        lambda *a, **k: opened.append(a) or real_journal(*a, **k))
    import app.shell.resources as resources

    monkeypatch.setattr(resources, "open_journal",
                        lambda *a, **k: opened.append(a) or real_journal(*a, **k))
    streamlit.cache_resource.clear()
    at = _app().run()
    assert not at.exception
    assert len(nav_calls) == 1 and _only_sign_in(nav_calls[0])
    assert [b.label for b in at.button] == ["Sign in"]
    assert "Sign in with your company account" in _texts(at)
    assert opened == []
    # a deep link to a protected page still renders only the sign-in page
    at.query_params["case"] = "T000001"
    at.run()
    assert _only_sign_in(nav_calls[-1])
    assert opened == []


def test_injected_test_principal_is_ignored_without_testing_flag(app_env: Path, monkeypatch,
                                                                 nav_calls):
    monkeypatch.delenv("FRAUDLENS_TESTING")
    at = _app()
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("eve", "eve@example.com", "Eve", "admin")
    at.run()
    assert len(nav_calls) == 1 and _only_sign_in(nav_calls[0])


def test_injected_test_principal_is_ignored_in_a_served_app(app_env: Path, monkeypatch,
                                                           nav_calls):
    """Injection only works under AppTest (a mock Runtime), never under `streamlit run`."""
    import app.shell.auth

    monkeypatch.setattr(app.shell.auth, "_served", lambda: True)
    at = _app()
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("eve", "eve@example.com", "Eve", "admin")
    at.run()
    assert len(nav_calls) == 1 and _only_sign_in(nav_calls[0])


def test_injected_test_principal_is_used_with_testing_flag(app_env: Path, nav_calls):
    at = _app()
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("ann", "ann@example.com", "Ann", "admin")
    at.run()
    visible = {title for title, _, vis in nav_calls[-1] if vis == "visible"}
    assert "Audit Trail" in visible


def test_analyst_navigation_lacks_compare_and_audit(app_env: Path, nav_calls):
    at = _app(_user(["fraud-analysts", "unrelated-group"])).run()
    assert not at.exception
    pages = nav_calls[-1]
    visible = {title for title, _, vis in pages if vis == "visible"}
    hidden = {url for _, url, vis in pages if vis == "hidden"}
    assert visible <= {"Home", "Case Explorer", "Global Patterns", "Pattern Review", "Monitoring"}
    assert {"Home", "Monitoring"} <= visible  # monitoring is for analysts and up
    assert "experiments" in hidden  # experiments are for ML engineers
    if (ROOT / "app_pages/case_explorer.py").is_file():
        assert "Case Explorer" in visible
    assert "audit" in hidden
    if (ROOT / "app_pages/model_comparison.py").is_file():
        assert "compare" in hidden
    assert "role: analyst" in _texts(at)


def test_highest_mapped_group_wins():
    mapping = {"fraud-analysts": "analyst", "ml-engineers": "mle", "fraudlens-admins": "admin"}
    assert role_from_claims({"groups": ["fraud-analysts", "ml-engineers"]}, "groups",
                            mapping) == "mle"
    assert role_from_claims({"groups": "fraudlens-admins fraud-analysts"}, "groups",
                            mapping) == "admin"
    assert role_from_claims({"groups": ["admins"]}, "groups", mapping) == "none"
    assert role_from_claims({"role": "admin"}, "groups", mapping) == "none"


def test_analyst_opening_audit_page_is_denied_and_audited(app_env: Path):
    at = _app(_user(["fraud-analysts"])).run()
    at.switch_page("app_pages/audit_trail.py").run()
    assert not at.exception
    assert "You don't have access to Audit Trail (role analyst)" in at.error[0].value
    assert not at.dataframe
    denied = _records(app_env, "access_denied")
    assert len(denied) == 1
    row = denied.iloc[0]
    assert (row.actor, row.role, row.target, row.outcome) == (
        "ana@example.com", "analyst", "Audit Trail", "denied")


def test_router_denies_even_if_the_page_forgot_its_gate(app_env: Path, monkeypatch):
    """The router checks the selected page's permission before running it."""
    import app.shell.auth

    monkeypatch.setattr(app.shell.auth, "require", lambda permission, page: None)
    at = _app(_user(["fraud-analysts"])).run()
    at.switch_page("app_pages/audit_trail.py").run()
    assert "You don't have access to Audit Trail (role analyst)" in at.error[0].value
    assert not at.dataframe
    assert len(_records(app_env, "access_denied")) == 1


def test_audit_page_denies_by_itself_when_opened_directly(app_env: Path):
    """The page's own `require` holds even without the router in front of it."""
    at = AppTest.from_file(str(ROOT / "app_pages/audit_trail.py"), default_timeout=TIMEOUT)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("ana", "ana@example.com", "Ana", "mle")
    at.run()
    assert "You don't have access to Audit Trail (role mle)" in at.error[0].value
    assert not at.dataframe
    assert len(_records(app_env, "access_denied")) == 1


def test_user_without_mapped_group_is_denied_and_audited(app_env: Path, nav_calls):
    at = _app(_user(["marketing"], email="mallory@example.com")).run()
    assert "no FraudLens role" in at.error[0].value
    assert nav_calls == []
    denied = _records(app_env, "access_denied")
    assert list(denied.actor) == ["mallory@example.com"]
    assert list(denied.role) == ["none"]


def test_admin_sees_audit_page_and_verifies_chain(app_env: Path, nav_calls):
    con = open_journal(app_env)
    try:
        AuditLog(con).append("seed@example.com", "analyst", "case_view", "T1")
    finally:
        con.close()
    at = _app(_user(["fraudlens-admins"], email="root@example.com")).run()
    assert "Audit Trail" in {title for title, _, vis in nav_calls[-1] if vis == "visible"}
    at.switch_page("app_pages/audit_trail.py").run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["action"]) == ["case_view"]
    next(b for b in at.button if b.label == "Verify chain").click().run()
    assert "Chain intact: 1 records verified" in at.success[0].value


def test_audit_page_reports_first_bad_seq(app_env: Path):
    con = open_journal(app_env)
    try:
        log = AuditLog(con)
        for i in range(3):
            log.append("seed@example.com", "analyst", "case_view", f"T{i}")
        with con.write() as tampering:
            tampering.execute("UPDATE audit_log SET target = 'T9' WHERE seq = 2")
    finally:
        con.close()
    at = _app(_user(["fraudlens-admins"], email="root@example.com")).run()
    at.switch_page("app_pages/audit_trail.py").run()
    next(b for b in at.button if b.label == "Verify chain").click().run()
    assert "Chain broken at seq 2" in at.error[0].value


UNMASK_SCRIPT = """
import pandas as pd
import streamlit as st
from app.shell.masking_ui import pii_view

frame = pd.DataFrame({"transaction_id": ["T1"], "email": ["jane.doe@example.com"],
                      "card_number": ["4000123412341234"]})
st.dataframe(pii_view(frame, case_id="T1"))
"""


def _unmask_app(role: str) -> AppTest:
    at = AppTest.from_string(UNMASK_SCRIPT, default_timeout=TIMEOUT)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("u", f"{role}@example.com", role, role)
    return at.run()


def _shown_email(at: AppTest) -> str:
    return str(at.dataframe[0].value["email"].iloc[0])


def test_unmask_needs_a_reason_and_is_audited(app_env: Path):
    at = _unmask_app("admin")
    assert _shown_email(at) == "j***@example.com"
    unmask = next(b for b in at.button if b.label == "Unmask")
    unmask.click().run()
    assert _shown_email(at) == "j***@example.com"
    at.text_input[0].input("too short").run()
    next(b for b in at.button if b.label == "Unmask").click().run()
    assert _shown_email(at) == "j***@example.com"
    assert _records(app_env, "unmask").empty

    at.text_input[0].input("chargeback dispute #4411 needs the card").run()
    next(b for b in at.button if b.label == "Unmask").click().run()
    assert _shown_email(at) == "jane.doe@example.com"
    records = _records(app_env, "unmask")
    assert len(records) == 1
    assert records.iloc[0].target == "T1" and records.iloc[0].actor == "admin@example.com"
    assert "chargeback dispute #4411" in records.iloc[0].details
    at.run()  # stays unmasked for this session, without a second record
    assert _shown_email(at) == "jane.doe@example.com"
    assert len(_records(app_env, "unmask")) == 1

    other_session = _unmask_app("admin")
    assert _shown_email(other_session) == "j***@example.com"


def test_analyst_cannot_unmask(app_env: Path):
    at = _unmask_app("analyst")
    assert _shown_email(at) == "j***@example.com"
    assert not at.expander and not at.button
