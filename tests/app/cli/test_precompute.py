"""`fraudlens precompute` keeps what the pages' first visits read, under the pages' own keys:
the pages then show it without computing; after new data they show it as stale (with its age
and a recompute button) until it is recomputed."""

from __future__ import annotations

import functools
import os
import re
from contextlib import closing
from pathlib import Path

import pytest

from app.cli.main import main
from app.services import experiments, monitoring
from app.services import model_comparison as comparison
from data_access import report_cache
from data_access.workspace import Workspace
from explainers.latency import measure_latency
from jobs.demo_experiment import EXPERIMENT

ROOT = Path(__file__).resolve().parents[3]
APP = str(ROOT / "streamlit_app.py")
CHAMPION, CANDIDATE = "fraud_catboost@1", "fraud_xgb@1"  # the demo's registry
quick_latency = functools.partial(measure_latency, single_row_calls=20, warmup=2,
                                  batch_rows=500, batch_repeats=1)


def _never(*_args, **_kwargs):
    raise AssertionError("a kept result should have been read, not computed")


@pytest.fixture
def precomputed(workspace_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> Path:
    monkeypatch.setattr(comparison, "measure_latency", quick_latency)
    monkeypatch.delenv("FRAUDLENS_SEED", raising=False)
    assert main(["--workspace", str(workspace_copy), "precompute"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [re.sub(r" \(\d+\.\d s\)$", "", line) for line in lines] == [
        f"comparison {CHAMPION} vs {CANDIDATE} (reference {CHAMPION}): computed for this "
        "data version",
        f"monitoring {CHAMPION}: computed for this data version",
        f"monitoring {CANDIDATE}: computed for this data version",
        f"experiment {EXPERIMENT}: computed for this data version"]
    return workspace_copy


def test_precompute_keeps_the_pages_results_and_skips_them_the_second_time(
        precomputed: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path):
    ws = Workspace(precomputed)
    with closing(ws.lake()) as lake:
        version = lake.version
    pair = (CHAMPION, CANDIDATE)
    parts = comparison.kept_parts(pair, [ws.registry.resolve(m).sha256 for m in pair],
                                  CHAMPION, comparison.default_settings(7))
    kept = report_cache.read_kept(ws.path, comparison.KEPT_KIND, parts, version,
                                  comparison.ComparisonReport)
    assert kept is not None and kept.result.model_ids == pair
    assert kept.result.reference == CHAMPION and kept.result.settings.waterfall_cases == 0
    assert kept.result.holdout.rows > 0
    assert len(list((precomputed / ".cache" / "monitoring").glob("*/*/result.json"))) == 2
    assert len(list((precomputed / ".cache" / "experiments").glob("*/*/result.json"))) == 1

    for module in (comparison, monitoring, experiments):
        monkeypatch.setattr(module, "build_report", _never)
    assert main(["--workspace", str(precomputed), "precompute"]) == 0
    again = capsys.readouterr().out.splitlines()
    assert len(again) == 4
    assert all(line.endswith(") already kept for this data version (0.0 s)")
               or ": already kept for this data version (0.0 s)" in line for line in again)
    # `fraudlens monitor` over the whole lake reads what precompute kept for the page
    out = tmp_path / "monitor.html"
    assert main(["--workspace", str(precomputed), "monitor", "--model", CHAMPION,
                 "--out", str(out)]) == 0
    assert CHAMPION in out.read_text("utf-8")


def test_score_precomputes_at_its_end_unless_told_not_to(workspace_copy: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys):
    monkeypatch.setattr(comparison, "measure_latency", quick_latency)
    cache = workspace_copy / ".cache"
    assert main(["--workspace", str(workspace_copy), "score", "--model", CANDIDATE,
                 "--no-precompute"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"scored 0 new transactions with {CANDIDATE}"]
    assert not (cache / "comparison").exists() and not (cache / "monitoring").exists()
    assert main(["--workspace", str(workspace_copy), "score", "--model", CANDIDATE]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [f"scored 0 new transactions with {CANDIDATE}"]
    done = [line.split(": ", 1)[1] for line in printed.err.splitlines()
            if "for this data version" in line]  # precompute's lines go to stderr here
    assert [line.split(":")[0] for line in done] == [
        f"comparison {CHAMPION} vs {CANDIDATE} (reference {CHAMPION})",
        f"monitoring {CHAMPION}", f"monitoring {CANDIDATE}", f"experiment {EXPERIMENT}"]
    assert all(": computed for this data version" in line for line in done)
    assert len(list((cache / "comparison").glob("*/*/result.json"))) == 1


# --------------------------------------------------------------------------- the pages


def _open(monkeypatch: pytest.MonkeyPatch, workspace: Path, page: str):
    from streamlit.testing.v1 import AppTest

    from app.shell.auth import TEST_PRINCIPAL_KEY, Principal

    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal(subject="t", email="mle@example.com",
                                                     name="MLE", role="mle")
    at.run()  # st.navigation registers the pages; switch_page matches them
    at.switch_page(page)
    return at.run()


def _new_data(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lake file rewritten (same rows, new time): the lake's data version moves, and the
    app lists the lake again on every read."""
    import data_access.lake

    label_file = sorted((workspace / "lake" / "labels").rglob("*.parquet"))[0]
    stat = label_file.stat()
    os.utime(label_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    monkeypatch.setattr(data_access.lake, "REFRESH_S", 0.0)
    monkeypatch.setattr(data_access.lake, "STALE_S", 0.0)


def test_model_comparison_shows_the_kept_result_then_marks_it_stale_after_new_data(
        precomputed: Path, monkeypatch: pytest.MonkeyPatch):
    import streamlit as st

    st.cache_data.clear()
    real_build = comparison.build_report
    monkeypatch.setattr(comparison, "build_report", _never)
    at = _open(monkeypatch, precomputed, "app_pages/model_comparison.py")
    assert not at.exception, at.exception
    assert not at.status  # nothing computed on this visit
    captions = [c.value for c in at.caption]
    assert any(re.match(r"This comparison was computed at \d{4}-\d\d-\d\d \d\d:\d\d UTC "
                        r"\(just now\) for these models' checksums, the lake's current data",
                        c) for c in captions), captions
    assert at.button(key="cmp_refresh").label == "Recompute"
    metrics = at.dataframe[1].value
    assert CHAMPION in metrics.columns and CANDIDATE in metrics.columns

    _new_data(precomputed, monkeypatch)
    at = _open(monkeypatch, precomputed, "app_pages/model_comparison.py")
    assert not at.exception, at.exception
    assert not at.status
    notice = [w.value for w in at.warning if w.value.startswith("Showing the comparison")]
    assert len(notice) == 1 and re.fullmatch(
        r"Showing the comparison computed at \d{4}-\d\d-\d\d \d\d:\d\d UTC \(just now\) for "
        r"these models and settings\. The lake has changed since \(new data\), so its numbers "
        r"may be out of date\.", notice[0])
    assert at.button(key="cmp_refresh").label == "Recompute on current data"
    assert at.dataframe[1].value.equals(metrics)  # the kept numbers, shown at once

    monkeypatch.setattr(comparison, "build_report", real_build)
    monkeypatch.setattr(comparison, "measure_latency", quick_latency)
    at.button(key="cmp_refresh").click().run()
    assert not at.exception, at.exception
    assert len(at.status) == 1  # the recompute showed its stages
    assert at.status[0].label.startswith("Compared on the matured holdout at ")
    assert not [w for w in at.warning if w.value.startswith("Showing the comparison")]
    assert at.button(key="cmp_refresh").label == "Recompute"
    ws = Workspace(precomputed)
    with closing(ws.lake()) as lake:
        version = lake.version
    folder = next((precomputed / ".cache" / "comparison").iterdir())
    versions = {report_cache._meta(p)[0] for p in folder.iterdir() if p.is_dir()}
    assert version in versions and len(versions) == 2  # the earlier one stays, for fallback


def test_monitoring_and_experiments_show_their_kept_reports_without_computing(
        precomputed: Path, monkeypatch: pytest.MonkeyPatch):
    import streamlit as st

    st.cache_data.clear()
    monkeypatch.setattr(monitoring, "build_report", _never)
    monkeypatch.setattr(experiments, "build_report", _never)
    at = _open(monkeypatch, precomputed, "app_pages/monitoring.py")
    assert not at.exception, at.exception
    assert at.selectbox(key="monitor_model").value == CHAMPION
    assert any(re.match(r"Computed at .* UTC \(just now\) on the lake's current data", t.value)
               for t in at.text)
    assert at.button(key="monitor_refresh").label == "Recompute"
    at = _open(monkeypatch, precomputed, "app_pages/experiments.py")
    assert not at.exception, at.exception
    assert at.button(key="exp_refresh").label == "Recompute"

    _new_data(precomputed, monkeypatch)
    for page, key in (("app_pages/monitoring.py", "monitor_refresh"),
                      ("app_pages/experiments.py", "exp_refresh")):
        at = _open(monkeypatch, precomputed, page)
        assert not at.exception, at.exception
        assert any(w.value.startswith("Showing the report computed at ") and
                   "The lake has changed since (new data)" in w.value for w in at.warning)
        assert at.button(key=key).label == "Recompute on current data"
