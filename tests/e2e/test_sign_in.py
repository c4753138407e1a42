"""Sign-in end to end: Streamlit OIDC against a mock provider, roles from the `groups` claim."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from data_access.audit import AuditLog
from data_access.journal import open_journal

pytestmark = pytest.mark.e2e

USERS = {
    "ana@example.com": ("Ana Analyst", ["fraud-analysts"]),
    "root@example.com": ("Ada Admin", ["fraudlens-admins", "fraud-analysts"]),
    "mallory@example.com": ("Mallory", ["marketing"]),
}


@pytest.fixture(scope="module")
def oidc_app(app_server, e2e_workspace: Path, oidc_provider: str, set_oidc_user,
             oidc_secrets: str) -> tuple[str, str]:
    for sub, (name, groups) in USERS.items():
        set_oidc_user(sub, {"email": sub, "name": name, "groups": groups})
    return app_server(e2e_workspace, secrets_toml=oidc_secrets), oidc_provider


def sign_in(page: Page, base_url: str, issuer: str, sub: str) -> None:
    page.goto(base_url)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{issuer}/oauth2/authorize**")
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{base_url}/**")


def nav_titles(page: Page) -> list[str]:
    expect(page.get_by_test_id("stSidebarNav")).to_be_visible()
    links = page.get_by_test_id("stSidebarNavLink").all_inner_texts()
    return [t.strip().splitlines()[-1].strip() for t in links]  # drop the icon line


def test_signed_out_visitor_sees_only_sign_in(browser_page: Page, oidc_app, screenshot):
    base_url, _ = oidc_app
    browser_page.goto(f"{base_url}/audit")
    expect(browser_page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(browser_page.get_by_test_id("stSidebarNav")).to_have_count(0)
    expect(browser_page.get_by_text("Audit Trail")).to_have_count(0)
    screenshot(browser_page, "sign_in")


def test_analyst_sees_case_explorer_but_not_compare_or_audit(browser_page: Page, oidc_app,
                                                             screenshot):
    base_url, issuer = oidc_app
    sign_in(browser_page, base_url, issuer, "ana@example.com")
    expect(browser_page.get_by_test_id("stSidebar")).to_contain_text("role: analyst")
    titles = nav_titles(browser_page)
    assert "Case Explorer" in titles
    assert "Model Comparison" not in titles and "Audit Trail" not in titles
    screenshot(browser_page, "analyst_home")


def test_admin_sees_audit_page(browser_page: Page, oidc_app, screenshot):
    base_url, issuer = oidc_app
    sign_in(browser_page, base_url, issuer, "root@example.com")
    assert "Audit Trail" in nav_titles(browser_page)
    browser_page.get_by_test_id("stSidebarNavLink").filter(has_text="Audit Trail").click()
    expect(browser_page.get_by_role("heading", name="Audit Trail")).to_be_visible()
    browser_page.get_by_role("button", name="Verify chain").click()
    expect(browser_page.get_by_text("Chain intact")).to_be_visible()
    screenshot(browser_page, "admin_audit_trail")


def test_user_without_mapped_group_is_denied(browser_page: Page, oidc_app, screenshot):
    base_url, issuer = oidc_app
    sign_in(browser_page, base_url, issuer, "mallory@example.com")
    expect(browser_page.get_by_text("no FraudLens role")).to_be_visible()
    expect(browser_page.get_by_test_id("stSidebarNav")).to_have_count(0)
    screenshot(browser_page, "no_role_denied")


def test_denied_at_the_provider_stays_signed_out(browser_page: Page, oidc_app, screenshot):
    base_url, issuer = oidc_app
    browser_page.goto(base_url)
    browser_page.get_by_role("button", name="Sign in").click()
    browser_page.wait_for_url(f"{issuer}/oauth2/authorize**")
    browser_page.get_by_role("button", name="Deny").click()
    browser_page.wait_for_url(f"{base_url}/**")
    expect(browser_page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(browser_page.get_by_test_id("stSidebarNav")).to_have_count(0)
    screenshot(browser_page, "provider_denied")


def test_analyst_opening_audit_by_url_is_denied_and_audited(browser_page: Page, oidc_app,
                                                            app_server, e2e_workspace: Path,
                                                            screenshot):
    base_url, issuer = oidc_app
    sign_in(browser_page, base_url, issuer, "ana@example.com")
    nav_titles(browser_page)
    browser_page.goto(f"{base_url}/audit")
    expect(browser_page.get_by_text(
        "You don't have access to Audit Trail (role analyst)")).to_be_visible()
    expect(browser_page.get_by_role("button", name="Verify chain")).to_have_count(0)
    screenshot(browser_page, "analyst_audit_denied")
    browser_page.close()  # a page left open would log failed reconnects to the stopped server
    app_server.stop(base_url)  # releases the journal so the test can read it
    con = open_journal(e2e_workspace)
    try:
        denied = AuditLog(con).records(action="access_denied", actor="ana@example.com")
    finally:
        con.close()
    assert list(denied.target) == ["Audit Trail"]
    assert list(denied.outcome) == ["denied"]


def test_app_without_auth_or_demo_flag_refuses_to_start(browser_page: Page, app_server,
                                                         e2e_workspace: Path, screenshot):
    base_url = app_server(e2e_workspace, secrets_toml="")
    browser_page.goto(base_url)
    expect(browser_page.get_by_text("FraudLens refuses to start")).to_be_visible()
    expect(browser_page.get_by_role("button", name="Sign in")).to_have_count(0)
    screenshot(browser_page, "refuses_to_start")


def test_demo_mode_shows_banner_and_demo_role(browser_page: Page, app_server,
                                              e2e_workspace: Path, screenshot):
    base_url = app_server(e2e_workspace, {"FRAUDLENS_DEMO_MODE": "1",
                                          "FRAUDLENS_DEMO_ROLE": "analyst"})
    browser_page.goto(base_url)
    expect(browser_page.get_by_text(
        "Demo mode — synthetic data, sign-in disabled, loopback only")).to_be_visible()
    expect(browser_page.get_by_test_id("stSidebar")).to_contain_text("role: analyst")
    assert "Audit Trail" not in nav_titles(browser_page)
    screenshot(browser_page, "demo_mode")
