"""The Experiments page through the entry point (AppTest) on a copy of the demo workspace:
an ML engineer sees the planted experiment's arms, differences and classifier statistics, the
threshold slider moves the confusion matrix, and an analyst is denied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.shell.auth import TEST_PRINCIPAL_KEY, Principal
from jobs.demo_experiment import EXPERIMENT

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "streamlit_app.py")
PAGE = "app_pages/experiments.py"


@pytest.fixture(scope="module")
def page_workspace(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("experiments_page") / "workspace"
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
                                                     "Test Engineer", role)
    at.run()
    at.switch_page(PAGE)
    at.run()
    return at


def _table(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_an_ml_engineer_sees_the_experiment_and_the_slider_moves_the_confusion(page_env):
    at = _open("mle")
    assert not at.exception, at.exception
    assert at.title[0].value == "Experiments"
    assert at.selectbox(key="exp_name").value == EXPERIMENT
    arms = _table(at, "units seen")
    assert list(arms["arm"]) == ["control", "treatment"]
    assert arms["status"].eq("measured").all()
    diffs = _table(at, "difference [95% interval]")
    assert "Legitimate customers blocked (friction rate)" in set(diffs["metric"])
    before = _table(at, "flagged (USD)")
    at.slider(key="exp_cls_threshold_control").set_value(0.9).run()
    assert not at.exception, at.exception
    after = _table(at, "flagged (USD)")
    assert after["flagged"].sum() < before["flagged"].sum()
    assert after["flagged"].sum() + after["passed"].sum() == (
        before["flagged"].sum() + before["passed"].sum())


def test_an_analyst_is_denied(page_env):
    at = _open("analyst")
    assert not at.exception
    assert not any(t.value == "Experiments" for t in at.title)
