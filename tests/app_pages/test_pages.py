"""The analyst pages run through the entry point (AppTest) against a copy of the demo workspace."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from app.shell.auth import TEST_PRINCIPAL_KEY, Principal
from app.shell.components import PreparedExport, export_key
from data_access import shap_store
from data_access.audit import AuditLog
from data_access.exports import csv_bytes
from data_access.journal import open_journal
from data_access.shap_store import Cohort
from data_access.workspace import Workspace
from explainers.errors import AuditError
from explainers.frames import explain_frame

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
TIMEOUT = 120
XGB = "fraud_xgb@1"
PAGES = ["app_pages/home.py", "app_pages/case_explorer.py", "app_pages/global_patterns.py"]
SUMMARY_COLUMNS = ["feature", "description", "mean_abs_shap", "mean_shap", "rank", "model",
                   "cohort", "row_count"]


@pytest.fixture(scope="module")
def app_workspace(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy for this module: the app writes its audit journal into the workspace."""
    target = tmp_path_factory.mktemp("pages") / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, app_workspace: Path) -> Path:
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(app_workspace))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    return app_workspace


@pytest.fixture(scope="module")
def case_id(demo_workspace: Path) -> str:
    """A high-scoring transaction (the 5th highest XGBoost score)."""
    con = Workspace.at(demo_workspace).reader()
    try:
        return con.execute("SELECT transaction_id FROM scores WHERE model_id = ? "
                           "ORDER BY score DESC, transaction_id LIMIT 1 OFFSET 4",
                           [XGB]).fetchone()[0]
    finally:
        con.close()


def _open(page: str, role: str = "admin", **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal("tester", "tester@example.invalid",
                                                     "Test Analyst", role)
    at.run()
    at.switch_page(page)
    for key, value in params.items():
        at.query_params[key] = value
    return at.run()


def _walk(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from _walk(child)


def _charts(at: AppTest) -> list:
    return [e for e in _walk(at._tree) if getattr(e, "type", "") == "vega_lite_chart"]


def _chart_rows(element, column: str) -> pd.DataFrame:
    """The chart's rows holding `column` (sent as Arrow beside the spec)."""
    tables = [element.proto.data.data] + [ds.data.data for ds in element.proto.datasets]
    for data in filter(None, tables):
        frame = pa.ipc.open_stream(data).read_all().to_pandas()
        if column in frame.columns:
            return frame
    spec = json.loads(element.proto.spec)
    for layer in spec.get("layer", [spec]):
        values = layer.get("data", {}).get("values")
        if values and column in values[0]:
            return pd.DataFrame(values)
    raise AssertionError(f"no dataset with {column!r}")


def _waterfall(at: AppTest) -> pd.DataFrame:
    return next(_chart_rows(c, "kind") for c in _charts(at) if '"x2"' in c.proto.spec)


def _engine_top_feature(workspace: Path, transaction_id: str) -> str:
    ws = Workspace.at(workspace)
    model = ws.registry.load(XGB)
    con = ws.reader()
    try:
        row = con.execute("SELECT * FROM transactions WHERE transaction_id = ?",
                          [transaction_id]).df()
    finally:
        con.close()
    expl = explain_frame(model, row)
    return expl.feature_names[int(np.argmax(np.abs(expl.values[0])))]


def _records(workspace: Path, action: str) -> pd.DataFrame:
    con = open_journal(workspace)
    try:
        return AuditLog(con).records(action=action)
    finally:
        con.close()


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize("role", ["admin", "analyst"])
def test_every_page_runs_through_the_entry_point(app_env: Path, page: str, role: str):
    at = _open(page, role=role)
    assert not at.exception, at.exception
    assert at.title and at.title[0].value in {"FraudLens", "Case Explorer", "Global Patterns"}


def test_case_opened_by_id_shows_the_engines_top_contribution(app_env: Path, case_id: str):
    at = _open("app_pages/case_explorer.py")
    at.selectbox(key="case_model").set_value(XGB)
    at.text_input(key="find_txn").input(case_id)
    next(b for b in at.button if b.label == "Open case").click()
    at.run()
    assert not at.exception, at.exception
    assert at.query_params["txn"] == [case_id] or at.query_params["txn"] == case_id
    steps = _waterfall(at)
    first = steps[steps["kind"] == "feature"].sort_values("order").iloc[0]
    assert first["feature"] == _engine_top_feature(app_env, case_id)
    assert steps["kind"].iloc[-1] == "final"
    views = _records(app_env, "case_view")
    assert case_id in set(views["target"])


def test_deep_link_opens_the_same_case(app_env: Path, case_id: str):
    at = _open("app_pages/case_explorer.py", txn=case_id, model="fraud_xgb")
    assert not at.exception, at.exception
    assert any(h.value == f"Case {case_id}" for h in at.header)
    assert any(f"txn={case_id}&model={XGB}" in m.value for m in at.markdown)
    steps = _waterfall(at)
    first = steps[steps["kind"] == "feature"].sort_values("order").iloc[0]
    assert first["feature"] == _engine_top_feature(app_env, case_id)


def test_unknown_case_id_says_so(app_env: Path):
    at = _open("app_pages/case_explorer.py", txn="T999999999", model=XGB)
    assert not at.exception
    assert any("no transaction T999999999" in w.value for w in at.warning)
    assert not _charts(at)


def _importances(at: AppTest) -> pd.Series:
    chart = next(c for c in _charts(at) if "mean_abs_shap" in c.proto.spec)
    rows = _chart_rows(chart, "mean_abs_shap")
    return rows.set_index("feature")["mean_abs_shap"].sort_index()


def test_changing_the_cohort_changes_the_importances(app_env: Path):
    at = _open("app_pages/global_patterns.py")
    at.selectbox(key="patterns_model").set_value(XGB).run()
    everyone = _importances(at)
    at.slider(key="cohort_band").set_value((0.5, 1.0)).run()
    assert not at.exception, at.exception
    high = _importances(at)
    assert list(everyone.index) == list(high.index)
    assert not np.allclose(everyone.to_numpy(), high.to_numpy())


def test_shap_summary_download_is_the_cli_export_and_is_audited(app_env: Path, tmp_path: Path):
    at = _open("app_pages/global_patterns.py")
    at.selectbox(key="patterns_model").set_value(XGB).run()
    assert not at.download_button  # nothing leaves before the export is audited
    next(b for b in at.button if b.label.startswith("Prepare SHAP summary")).click()
    at.run()
    assert not at.exception, at.exception
    assert [d.label for d in at.download_button] == ["Download SHAP summary (CSV)"]
    prepared = at.session_state[export_key("shap_summary")]
    assert isinstance(prepared, PreparedExport)
    header = next(csv.reader(io.StringIO(prepared.data.decode("utf-8"))))
    assert header == SUMMARY_COLUMNS

    first, last = at.date_input(key="cohort_dates").value
    con = Workspace.at(app_env).reader()
    try:
        schema = Workspace.at(app_env).registry.resolve(XGB).feature_schema
        expected = shap_store.describe_summary(shap_store.summary(
            con, XGB, Cohort(since=first, until=last + timedelta(days=1)), schema.categorical),
            {f.name: f.description for f in schema.features})
    finally:
        con.close()
    assert prepared.data == csv_bytes(expected)

    from app.cli.main import main

    out = tmp_path / "summary.csv"
    assert main(["--workspace", str(app_env), "export", "shap-summary", "--model", XGB,
                 "--since", str(first), "--until", str(last + timedelta(days=1)),
                 "--out", str(out)]) == 0
    assert out.read_bytes() == prepared.data

    exports = _records(app_env, "export")
    details = json.loads(exports["details"].iloc[0])
    assert details["sha256"] == hashlib.sha256(prepared.data).hexdigest()
    assert details["rows"] == len(expected) == prepared.rows


def test_no_download_when_the_export_cannot_be_audited(app_env: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AuditError("journal is read-only")

    monkeypatch.setattr(AuditLog, "append", refuse)
    at = _open("app_pages/global_patterns.py")
    next(b for b in at.button if b.label.startswith("Prepare SHAP summary")).click()
    at.run()
    assert not at.download_button
    assert any("Export refused" in e.value for e in at.error)


def test_without_a_shap_store_pages_name_the_explain_command(
        workspace_copy: Path, monkeypatch: pytest.MonkeyPatch, case_id: str):
    shutil.rmtree(workspace_copy / "lake" / "shap")
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace_copy))

    patterns = _open("app_pages/global_patterns.py")
    assert not patterns.exception
    assert any(c.value.startswith("fraudlens explain --model ") for c in patterns.code)
    case = _open("app_pages/case_explorer.py", txn=case_id, model=XGB)
    assert not case.exception
    assert any("computed on demand" in c.value for c in case.caption)
    assert any(c.value == f"fraudlens explain --model {XGB}" for c in case.code)
    steps = _waterfall(case)
    first = steps[steps["kind"] == "feature"].sort_values("order").iloc[0]
    assert first["feature"] == _engine_top_feature(workspace_copy, case_id)


@pytest.mark.parametrize("make_folder", [False, True])
def test_missing_lake_says_how_to_build_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            make_folder: bool):
    folder = tmp_path / "nothing-here"
    if make_folder:
        folder.mkdir()
    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(folder))
    for page in PAGES:
        at = _open(page)
        assert not at.exception
        expected = "No lake at" if make_folder else "does not exist"
        assert any(expected in e.value for e in at.error), [e.value for e in at.error]
        assert any(c.value == "fraudlens demo" for c in at.code)
    assert not (folder / "lake").exists()
