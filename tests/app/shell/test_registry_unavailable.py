"""An unreachable model registry: a clear message within a bounded time, no traceback."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.shell.auth import TEST_PRINCIPAL_KEY, Principal

APP = str(Path(__file__).resolve().parents[3] / "streamlit_app.py")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def remote_env(monkeypatch, demo_workspace: Path, tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    shutil.copytree(demo_workspace, ws)
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(ws))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    monkeypatch.setenv("FRAUDLENS_REGISTRY", "s3://fraud-models/registry")
    monkeypatch.setenv("FRAUDLENS_REGISTRY_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return ws


@pytest.mark.parametrize("page", ["app_pages/home.py", "app_pages/case_explorer.py",
                                  "app_pages/global_patterns.py"])
def test_unreachable_registry_says_so_without_a_traceback(remote_env, page):
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("t", "t@example.invalid", "T", "admin")
    at.run()
    at.switch_page(page)
    started = time.monotonic()
    at.run()
    assert time.monotonic() - started < 30  # a bound for hangs, not a speed target
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("Model registry unavailable" in e for e in errors), errors
