"""Static security settings of the app shell (SECURITY items 5, 6, 10, 15)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import streamlit
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[3]
UI_SOURCES = sorted([ROOT / "streamlit_app.py", *(ROOT / "app").rglob("*.py"),
                     *(ROOT / "app_pages").glob("*.py")])


def test_streamlit_has_the_published_security_fixes():
    assert Version(streamlit.__version__) >= Version("1.54")


def test_config_toml_is_hardened():
    config = tomllib.loads((ROOT / ".streamlit/config.toml").read_text(encoding="utf-8"))
    server, client = config["server"], config["client"]
    assert server["enableXsrfProtection"] is True
    assert server["enableCORS"] is True
    assert server["enableStaticServing"] is False
    assert server["address"] == "127.0.0.1"
    assert 0 < server["maxUploadSize"] <= 10
    assert client["showErrorDetails"] == "none"
    assert client["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["runner"]["magicEnabled"] is False


def test_real_secrets_are_never_committed():
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".streamlit/secrets.toml" in ignored
    example = tomllib.loads((ROOT / ".streamlit/secrets.example.toml").read_text("utf-8"))
    assert {"redirect_uri", "cookie_secret", "client_id", "server_metadata_url"} <= set(
        example["auth"])
    assert example["fraudlens"]["roles"]["claim"] == "groups"


def _calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


@pytest.mark.parametrize("path", UI_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_raw_html_reaches_the_browser(path: Path):
    for call in _calls(path):
        for kw in call.keywords:
            assert not (kw.arg == "unsafe_allow_html" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False)), (
                f"{path.name}:{call.lineno} passes unsafe_allow_html")
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        assert name not in {"html", "components_html"} or not (
            isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "st"), (
            f"{path.name}:{call.lineno} calls st.html")


def test_unmasked_pii_is_never_cached():
    source = (ROOT / "app/shell/masking_ui.py").read_text(encoding="utf-8")
    assert "cache_data" not in source and "cache_resource" not in source


@pytest.mark.parametrize("page", sorted((ROOT / "app_pages").glob("*.py")),
                         ids=lambda p: p.name)
def test_every_page_calls_require_first(page: Path):
    if page.name == "sign_in.py":
        return
    tree = ast.parse(page.read_text(encoding="utf-8"))
    body = [n for n in tree.body if not isinstance(n, (ast.Import, ast.ImportFrom))
            and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))
            and not (isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant))]
    first = body[0]
    assert isinstance(first, (ast.Expr, ast.Assign)) and isinstance(first.value, ast.Call)
    func = first.value.func
    assert (func.attr if isinstance(func, ast.Attribute) else func.id) == "require", (
        f"{page.name} must call require(permission, page) before anything else")


def test_masking_module_does_not_import_streamlit():
    out = subprocess.run(
        [sys.executable, "-c", "import sys, data_access.masking; "
         "print('streamlit' in sys.modules)"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_app_reader_is_the_hardened_connection(workspace_copy: Path, monkeypatch):
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace_copy))
    from app.shell import resources

    with resources.lake_cursor() as con:  # a cursor has its connection's settings
        settings = dict(con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', "
            "'lock_configuration', 'python_enable_replacements', 'allowed_directories')"
        ).fetchall())
    lake_root = str((workspace_copy / "lake").resolve()) + "/"
    allowed = settings.pop("allowed_directories").strip("[]").split(", ")
    assert settings == {"enable_external_access": "false", "lock_configuration": "true",
                        "python_enable_replacements": "false"}
    assert lake_root in allowed  # the lake, and DuckDB's own spill folder in the temp dir
    assert all(a == lake_root or a.startswith(tempfile.gettempdir()) for a in allowed)
    with resources.lake_cursor() as one, resources.lake_cursor() as two:
        assert one is not two  # a cursor per use, never the shared connection


MODEL_SCRIPT = """
import streamlit as st
from app.shell.resources import load_model, manifests

st.write(sorted(m["model_id"] for m in manifests()))
try:
    model = load_model("fraud_xgb@1")
except Exception as exc:
    st.error(f"{type(exc).__name__}: {exc}")
else:
    st.write(f"serving {model.key}")
"""


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_artifact_keeps_last_verified_model_with_warning(workspace_copy: Path,
                                                                  monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app.shell import resources

    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace_copy))
    at = AppTest.from_string(MODEL_SCRIPT, default_timeout=60).run()
    assert not at.exception and not at.error
    assert "serving fraud_xgb@1" in [m.value for m in at.markdown]
    assert not at.warning

    artifact = next(p for p in (workspace_copy / "models/fraud_xgb/1").iterdir()
                    if p.name != "manifest.json")
    _flip_one_byte(artifact)
    resources._model_at.clear()  # force a reload from disk, as after cache eviction
    at.run()
    assert "serving fraud_xgb@1" in [m.value for m in at.markdown]
    assert "Checksum mismatch" in at.warning[0].value
    assert artifact.name in at.warning[0].value
    assert "last verified" in at.warning[0].value


def test_tampered_artifact_without_a_verified_copy_is_an_error(workspace_copy: Path,
                                                               monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace_copy))
    artifact = next(p for p in (workspace_copy / "models/fraud_xgb/1").iterdir()
                    if p.name != "manifest.json")
    _flip_one_byte(artifact)
    at = AppTest.from_string(MODEL_SCRIPT, default_timeout=60).run()
    assert at.error[0].value.startswith("ChecksumError: Checksum mismatch")
    assert not any(str(m.value).startswith("serving") for m in at.markdown)
