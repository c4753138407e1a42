"""Browser journeys: a real `streamlit run` on loopback, a mock OIDC provider, Debian Chromium.

Fixtures for every e2e test:
- `free_port()`: an unused loopback TCP port.
- `e2e_workspace`: a session copy of the demo workspace the served apps may write to.
- `oidc_provider`: issuer URL of `oidc_provider_mock` on loopback; `set_oidc_user(sub, claims)`
  gives a subject its claims (e.g. `groups`) before it signs in on the provider's form.
- `oidc_secrets`: secrets.toml text for Streamlit's `[auth]` against that issuer.
- `app_server(workspace, env_extra=None, secrets_toml=None) -> base_url`: starts (or reuses) a
  server and waits for /_stcore/health (no warm-up visit: a test's first visit is the
  server's first session, as a user's would be);
  `app_server.stop(base_url)` stops one early (e.g. to read the journal it holds). Without
  `secrets_toml` the app has no `[auth]`: pass env_extra={"FRAUDLENS_DEMO_MODE": "1",
  "FRAUDLENS_DEMO_ROLE": "analyst"} for a signed-in demo principal.
- `browser_page`: a fresh Chromium page; any console error or page error fails the test.
- `screenshot(page, name)`: waits for the run to finish, saves test-artifacts/e2e/<name>.png.
- `wait_idle(page)`: waits until Streamlit's "Running…" status widget is gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
STARTUP_TIMEOUT_S = 60
# Origins of pages that are not the app (the mock provider); their console output is ignored.
THIRD_PARTY_ORIGINS: set[str] = set()
COOKIE_SECRET = "e2e-cookie-secret-" + "k" * 40
# On a deep link (/cases, /audit) Streamlit's frontend first probes <page>/_stcore/... to find
# the base path; those 404s are expected and say nothing about the app.
BENIGN_CONSOLE = re.compile(r"status of 404 .*\(http://127\.0\.0\.1:\d+/[\w-]+/_stcore/"
                            r"(health|host-config)\)$")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None,
               log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise RuntimeError(f"server exited with {proc.returncode} before {url} was up:\n"
                               f"{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


@pytest.fixture(scope="session")
def e2e_workspace(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo workspace that served apps may write their journal into."""
    target = tmp_path_factory.mktemp("e2e") / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[str]:
    """The issuer URL of a mock OpenID provider on a free loopback port."""
    import oidc_provider_mock
    import werkzeug.serving

    server = werkzeug.serving.make_server(
        "127.0.0.1", free_port(), oidc_provider_mock.app(require_nonce=False), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    issuer = f"http://127.0.0.1:{server.server_port}"
    # The provider's own form loads CSS from a CDN; its pages are not the app under test.
    THIRD_PARTY_ORIGINS.add(issuer)
    _wait_http(f"{issuer}/.well-known/openid-configuration", 10)
    yield issuer
    server.shutdown()
    thread.join(5)


def _set_oidc_user(issuer: str, sub: str, claims: dict[str, object]) -> None:
    """Tell the mock provider which claims `sub` gets when someone authorizes as them."""
    req = urllib.request.Request(
        f"{issuer}/users/{quote(sub, safe='')}", data=json.dumps(claims).encode(),
        headers={"Content-Type": "application/json"}, method="PUT")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 204


def _oidc_secrets(issuer: str, *, cookie_secret: str = COOKIE_SECRET) -> str:
    """secrets.toml text: Streamlit `[auth]` against ``issuer`` plus FraudLens role mapping."""
    return f"""
[auth]
redirect_uri = "http://127.0.0.1:{{port}}/oauth2callback"
cookie_secret = "{cookie_secret}"
client_id = "fraudlens-e2e"
client_secret = "e2e-client-secret"
server_metadata_url = "{issuer}/.well-known/openid-configuration"

[fraudlens.roles]
claim = "groups"
mapping = {{ "fraud-analysts" = "analyst", "ml-engineers" = "mle", "fraudlens-admins" = "admin" }}
"""


@pytest.fixture(scope="session")
def set_oidc_user(oidc_provider: str) -> Callable[[str, dict[str, object]], None]:
    """`set_oidc_user(sub, claims)`: the claims the mock provider issues for ``sub``."""
    return lambda sub, claims: _set_oidc_user(oidc_provider, sub, claims)


@pytest.fixture(scope="session")
def oidc_secrets(oidc_provider: str) -> str:
    """secrets.toml text wiring Streamlit's `[auth]` to the mock provider."""
    return _oidc_secrets(oidc_provider)


class AppServers:
    """Starts `streamlit run streamlit_app.py` servers on loopback; one per distinct setup."""

    def __init__(self, tmp: Path, browser: object) -> None:
        self._tmp = tmp
        self._browser = browser
        self._running: dict[tuple[str, str, str], tuple[str, subprocess.Popen, object]] = {}

    def __call__(self, workspace: Path, env_extra: dict[str, str] | None = None,
                 secrets_toml: str | None = None) -> str:
        env_extra = dict(env_extra or {})
        key = (str(workspace), json.dumps(env_extra, sort_keys=True), secrets_toml or "")
        if key in self._running and self._running[key][1].poll() is None:
            return self._running[key][0]
        port = free_port()
        run_dir = self._tmp / f"app-{port}"
        run_dir.mkdir(parents=True)
        secrets = run_dir / "secrets.toml"
        secrets.write_text(secrets_toml or "", encoding="utf-8")
        log = run_dir / "server.log"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FRAUDLENS_", "STREAMLIT_"))}
        env.update({"FRAUDLENS_WORKSPACE": str(workspace), "PYTHONPATH": str(ROOT),
                    **env_extra})
        cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
               "--server.address", "127.0.0.1", "--server.port", str(port),
               "--server.headless", "true", "--server.fileWatcherType", "none",
               "--browser.gatherUsageStats", "false", "--secrets.files", str(secrets)]
        log_fh = log.open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_fh,
                                stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_http(f"{base_url}/_stcore/health", STARTUP_TIMEOUT_S, proc, log)
        except BaseException:
            proc.kill()
            proc.wait(10)
            log_fh.close()
            raise
        self._running[key] = (base_url, proc, log_fh)
        return base_url

    def stop(self, base_url: str) -> None:
        """Stop the server at ``base_url`` (e.g. to read its journal), waiting for it to exit."""
        for key, (url, proc, log_fh) in list(self._running.items()):
            if url == base_url:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
                log_fh.close()  # type: ignore[attr-defined]
                del self._running[key]

    def stop_all(self) -> None:
        for url, _, _ in list(self._running.values()):
            self.stop(url)


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, _browser) -> Iterator[AppServers]:
    servers = AppServers(tmp_path_factory.mktemp("apps"), _browser)
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def _browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _watched_page(browser, errors: list[str]) -> tuple[object, object]:
    """A page in a new context (own cookies) whose console and page errors go to `errors`."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(20_000)
    page = context.new_page()

    def on_console(msg) -> None:
        text = f"console {msg.type}: {msg.text} ({msg.location.get('url', '')})"
        if msg.type != "error" or BENIGN_CONSOLE.search(text):
            return
        if not any(page.url.startswith(origin) for origin in THIRD_PARTY_ORIGINS):
            errors.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    return context, page


@pytest.fixture
def browser_page(_browser) -> Iterator[object]:
    """A fresh page in its own context (own cookies); console/page errors fail the test."""
    errors: list[str] = []
    context, page = _watched_page(_browser, errors)
    page.console_errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()
    assert errors == [], "browser reported errors:\n" + "\n".join(errors)


def wait_idle(page, timeout_ms: int = 30_000) -> None:
    """Wait until the app's script run finishes (Streamlit's "Running…" widget is gone)."""
    page.wait_for_timeout(200)
    page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=timeout_ms)


@pytest.fixture
def screenshot() -> Callable[[object, str], Path]:
    def take(page, name: str) -> Path:
        wait_idle(page)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def fresh_page(_browser) -> Iterator[Callable[[], object]]:
    """`fresh_page()`: one more page, each in its own new context (no cookies, no session),
    e.g. to open a copied link the way a colleague would. Console and page errors fail the
    test, as on `browser_page`."""
    contexts: list[object] = []
    errors: list[str] = []

    def make() -> object:
        context, page = _watched_page(_browser, errors)
        contexts.append(context)
        return page

    yield make
    for context in contexts:
        context.close()  # type: ignore[attr-defined]
    assert errors == [], "browser reported errors:\n" + "\n".join(errors)
