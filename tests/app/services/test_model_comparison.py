"""Model comparison over the demo workspace: holdout, report, HTML, CLI, promotion, page."""

from __future__ import annotations

import argparse
import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from app.services import model_comparison as comparison
from app.services import promotion
from data_access.audit import AuditLog
from data_access.exports import csv_bytes
from data_access.journal import open_journal
from data_access.workspace import Workspace
from explainers.latency import measure_latency

ROOT = Path(__file__).resolve().parents[3]
MODELS = ("fraud_xgb@1", "fraud_catboost@1")
SETTINGS = comparison.ComparisonSettings(n_resamples=40, waterfall_cases=1)
quick_latency = functools.partial(measure_latency, single_row_calls=20, warmup=2,
                                  batch_rows=500, batch_repeats=1)


@pytest.fixture
def fast_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing costs seconds per model; these tests only need it to run."""
    monkeypatch.setattr(comparison, "measure_latency", quick_latency)


def _build(path: Path, settings: comparison.ComparisonSettings = SETTINGS,
           **kwargs) -> comparison.ComparisonReport:
    ws = Workspace(path)
    manifests = [ws.registry.resolve(m) for m in MODELS]
    models = [ws.registry.load(m) for m in manifests]
    con = ws.reader()
    try:
        return comparison.build_report(con, manifests, models, settings, **kwargs)
    finally:
        con.close()


@pytest.fixture(scope="module")
def report(demo_workspace: Path) -> comparison.ComparisonReport:
    return _build(demo_workspace)


def test_holdout_is_matured_and_after_every_training_window(
        report: comparison.ComparisonReport, demo_workspace: Path) -> None:
    h = report.holdout
    assert h.train_end is not None and h.start > h.train_end
    assert h.end <= h.mature_until == h.as_of - pd.Timedelta(days=30)
    con = Workspace(demo_workspace).reader()
    try:
        total, newest, immature = con.execute(
            "SELECT count(*), (SELECT max(label_time) FROM labels), count(*) FILTER "
            "(WHERE event_time > ?) FROM transactions", [h.mature_until]).fetchone()
    finally:
        con.close()
    assert pd.Timestamp(newest) == h.as_of  # default: the newest label
    reasons = {e.reason.split(" (")[0]: e.rows for e in h.exclusions}
    assert reasons["labels immature"] == immature  # everything newer than as_of - maturity
    assert sum(e.rows for e in h.exclusions) + h.rows == total


def test_metrics_equal_sklearn_on_the_holdout(report: comparison.ComparisonReport,
                                              demo_workspace: Path) -> None:
    h = report.holdout
    con = Workspace(demo_workspace).reader()
    try:
        frame = con.execute(
            "SELECT s.model_id, s.score, l.is_fraud FROM scores s JOIN transactions t USING "
            "(transaction_id) JOIN labels l USING (transaction_id) WHERE t.event_time BETWEEN "
            "? AND ? AND l.label_time <= ?", [h.start, h.end, h.as_of]).df()
    finally:
        con.close()
    for model in MODELS:
        rows = frame[frame["model_id"] == model]
        assert len(rows) == h.rows
        roc = report.metrics.get(model, "roc_auc")
        assert roc.estimate == pytest.approx(roc_auc_score(rows["is_fraud"], rows["score"]))
        assert roc.low <= roc.estimate <= roc.high
        pr = report.metrics.get(model, "pr_auc")
        assert pr.estimate == pytest.approx(average_precision_score(rows["is_fraud"],
                                                                    rows["score"]))
    diff = report.metrics.get("fraud_catboost@1", "roc_auc", versus="fraud_xgb@1")
    assert diff.estimate == pytest.approx(report.metrics.get("fraud_catboost@1", "roc_auc")
                                          .estimate - report.metrics.get("fraud_xgb@1",
                                                                         "roc_auc").estimate)


def test_report_covers_cost_stability_attributions_and_disagreements(
        report: comparison.ComparisonReport) -> None:
    assert {t.model for t in report.thresholds} == set(MODELS)
    pair = report.pair("fraud_catboost@1")
    ref, ch = report.threshold("fraud_xgb@1"), report.threshold("fraud_catboost@1")
    assert pair.savings_usd == pytest.approx(ref.total_cost_usd - ch.total_cost_usd)
    assert set(report.stability["model"]) == set(MODELS)
    assert -1 <= pair.importance.spearman <= 1
    assert {c.segment for c in pair.segments} == {"txn_type"}
    assert set(report.attributions["model"]) == set(MODELS)
    d = pair.disagreements
    assert (np.diff(d["amount_usd"].to_numpy()) <= 0).all()
    assert len(report.cases) == 1 and len(report.cases[0].steps) == 2
    assert not report.latency  # no timing asked for


def test_html_report_is_self_contained(demo_workspace: Path, tmp_path: Path,
                                       fast_timing: None) -> None:
    timed = _build(demo_workspace, latency=comparison.timed_with(
        Workspace(demo_workspace).registry))
    assert {t.model_id for t in timed.latency} == set(MODELS)
    result = comparison.write_html_report(timed, tmp_path / "report.html")
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert result.bytes == len(text.encode("utf-8"))
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?\s*(https?:)?//",
                         text, re.IGNORECASE)
    assert not re.search(r"@import|url\(\s*[\"']?https?:", text)
    for model in MODELS:
        assert model in text
    assert "<svg" in text and "<script" not in text  # charts inline, nothing runs
    assert "Serving SLA" in text


def _compare_parser() -> argparse.ArgumentParser:
    from app.cli import compare

    parser = argparse.ArgumentParser(prog="fraudlens")
    parser.add_argument("--workspace")
    compare.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_compare_writes_report_and_csvs_and_audits_each_export(
        workspace_copy: Path, tmp_path: Path, fast_timing: None,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("USER", "mle-cli")
    out = tmp_path / "report.html"
    args = _compare_parser().parse_args([
        "--workspace", str(workspace_copy), "compare", "fraud_xgb", "fraud_catboost@1",
        "--out", str(out), "--capacity", "15", "--review-cost", "4", "--seed", "3",
        "--resamples", "30"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "fraud_xgb@1: ROC AUC" in printed and "left out" in printed
    metrics = pd.read_csv(tmp_path / "report_metrics.csv")
    assert {"roc_auc", "total_cost_usd", "p99_ms"} <= set(metrics["metric"])
    attributions = pd.read_csv(tmp_path / "report_attributions.csv")
    assert set(attributions["model"]) == set(MODELS)
    header = (tmp_path / "report_attributions.csv").read_text().splitlines()[0]
    assert header == csv_bytes(attributions.head(0)).decode().strip()  # the export writer's
    journal = open_journal(workspace_copy)
    try:
        records = AuditLog(journal).records(action="export")
    finally:
        journal.close()
    assert set(records["actor"]) == {"mle-cli"} and set(records["role"]) == {"cli"}
    assert {Path(t).name for t in records["target"]} == {
        "report.html", "report_metrics.csv", "report_attributions.csv"}
    details = records["details"].iloc[0]
    assert '"capacity":15' in details and '"seed":3' in details


def test_cli_compare_refuses_a_single_model(workspace_copy: Path, tmp_path: Path) -> None:
    from explainers.errors import ValidationError

    args = _compare_parser().parse_args(["--workspace", str(workspace_copy), "compare",
                                         "fraud_xgb", "--out", str(tmp_path / "r.html")])
    with pytest.raises(ValidationError, match="two or more"):
        args.func(args)
    assert not (tmp_path / "r.html").exists()


def _second_xgb_version(ws: Workspace) -> str:
    """Register fraud_xgb@2 (the same artifact) with @1 as champion, as after a first
    promotion."""
    registry = ws.registry
    first = registry.resolve("fraud_xgb@1")
    registry.set_stage(first.key, "champion")
    registry.register(registry.verified_artifact(first), name="fraud_xgb", version="2",
                      framework_name="xgboost", artifact_name=first.artifact,
                      schema=first.feature_schema, training_window=first.training_window,
                      seed=first.seed, metrics=first.metrics)
    return "fraud_xgb@2"


def test_promotion_persists_in_the_registry_and_the_audit_trail(workspace_copy: Path) -> None:
    ws = Workspace(workspace_copy)
    new = _second_xgb_version(ws)
    journal = open_journal(workspace_copy)
    try:
        log = AuditLog(journal)
        result = promotion.promote(
            ws.registry, new, lambda action, target, outcome, details: log.append(
                "mle@example.com", "mle", action, target, outcome, details),
            reason="better recall")
        records = log.records(action="stage_change")
    finally:
        journal.close()
    assert result == promotion.Promotion(new, "candidate", ("fraud_xgb@1",))
    reopened = {m.key: m.stage for m in Workspace(workspace_copy).registry.list()}
    assert reopened[new] == "champion" and reopened["fraud_xgb@1"] == "archived"
    assert reopened["fraud_catboost@1"] == "candidate"
    assert records["target"].tolist() == [new]
    assert '"reason":"better recall"' in records["details"].iloc[0]


def test_promotion_is_refused_when_it_cannot_be_audited(workspace_copy: Path) -> None:
    from explainers.errors import AuditError

    ws = Workspace(workspace_copy)

    def broken(*_args) -> None:
        raise AuditError("journal is read-only")

    with pytest.raises(AuditError):
        promotion.promote(ws.registry, "fraud_catboost@1", broken, "lower cost at capacity")
    assert ws.registry.resolve("fraud_catboost@1").stage == "candidate"


# --------------------------------------------------------------------------- the page


def _app(monkeypatch: pytest.MonkeyPatch, workspace: Path, section: str | None = None):
    from streamlit.testing.v1 import AppTest

    from app.shell.auth import TEST_PRINCIPAL_KEY, Principal

    monkeypatch.setenv("FRAUDLENS_TESTING", "1")
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(workspace))
    monkeypatch.delenv("FRAUDLENS_DEMO_MODE", raising=False)
    monkeypatch.setattr(comparison, "measure_latency", quick_latency)
    at = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal(subject="t", email="mle@example.com",
                                                     name="MLE", role="mle")
    at.run()  # st.navigation registers the pages; switch_page matches them
    at.switch_page("app_pages/model_comparison.py")
    if section is not None:  # the open tab, as `compare?section=...` opens it
        at.query_params["section"] = section
    return at.run()


def test_page_shows_both_models_metrics(monkeypatch: pytest.MonkeyPatch,
                                        workspace_copy: Path) -> None:
    at = _app(monkeypatch, workspace_copy)  # the page keeps its report in the workspace
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = at.dataframe[1].value  # after the exclusions table
    assert list(metrics["metric"])[:2] == ["ROC AUC", "PR AUC (average precision)"]
    for model in MODELS:
        assert model in metrics.columns
        assert re.match(r"[01]\.\d{4}  \[[01]\.\d{4} – [01]\.\d{4}\]",
                        metrics.loc[0, model])
    shown = {s.value for s in at.subheader}
    assert {"Holdout", "Metrics"} <= shown  # the first tab opens by default
    assert not {"Serving SLA", "Where the models disagree", "Decide"} & shown  # the others wait
    n_metrics = len(at.dataframe)
    sections = {"Cost": "Cost at each model's best threshold", "Over time and SLA":
                "Serving SLA", "Explanations": "Explanations compared",
                "Disagreements": "Where the models disagree",
                "Thresholds": "Classifier statistics at a threshold",
                "Pruning": "Pruning for the SLA", "Decide": "Decide"}
    for section, heading in sections.items():
        at.session_state["section"] = section  # what clicking the tab does
        at.run()
        assert not at.exception and not at.error, section
        shown = {s.value for s in at.subheader}
        assert {"Holdout", heading} <= shown and "Metrics" not in shown, (section, shown)
    assert at.button(key="FormSubmitter:cmp_promote-Promote to champion")
    assert n_metrics == 2  # the exclusions and the metrics, nothing of the other tabs


def test_page_promotion_changes_the_registry_and_is_audited(
        monkeypatch: pytest.MonkeyPatch, workspace_copy: Path) -> None:
    at = _app(monkeypatch, workspace_copy, section="Decide")
    assert not at.exception, at.exception
    assert at.selectbox(key="cmp_promote_model").value is None  # no default choice
    at.text_input(key="cmp_promote_reason").input("")
    at.button(key="FormSubmitter:cmp_promote-Promote to champion").click().run()
    assert any("Choose the model" in e.value for e in at.error)
    at.selectbox(key="cmp_promote_model").set_value("fraud_catboost@1")
    at.button(key="FormSubmitter:cmp_promote-Promote to champion").click().run()
    assert any("State a reason" in e.value for e in at.error)
    assert Workspace(workspace_copy).registry.resolve("fraud_catboost@1").stage == "candidate"
    at.text_input(key="cmp_promote_reason").input("lower cost at capacity")
    at.button(key="FormSubmitter:cmp_promote-Promote to champion").click().run()
    assert any("Promote fraud_catboost@1 to champion?" in w.value for w in at.warning)
    assert Workspace(workspace_copy).registry.resolve("fraud_catboost@1").stage == "candidate"
    at.button(key="cmp_promote_confirm").click().run()
    assert not at.exception, at.exception
    assert any("fraud_catboost@1 is now champion" in s.value for s in at.success)
    assert Workspace(workspace_copy).registry.resolve("fraud_catboost@1").stage == "champion"
    journal = open_journal(workspace_copy)
    try:
        records = AuditLog(journal).records(action="stage_change")
    finally:
        journal.close()
    assert records["target"].tolist() == ["fraud_catboost@1"]
    assert set(records["actor"]) == {"mle@example.com"}


def test_page_report_is_kept_across_restarts(monkeypatch: pytest.MonkeyPatch,
                                             workspace_copy: Path) -> None:
    import streamlit as st

    first = _app(monkeypatch, workspace_copy)
    assert not first.exception, first.exception
    kept = list((workspace_copy / ".cache" / "comparison").glob("*/*/result.json"))
    assert len(kept) == 1
    st.cache_data.clear()  # what a server restart loses

    def no_recompute(*args, **kwargs):
        raise AssertionError("the kept report should have been read")

    monkeypatch.setattr(comparison, "build_report", no_recompute)
    again = _app(monkeypatch, workspace_copy)
    assert not again.exception, again.exception
    assert [d.value.to_dict() for d in again.dataframe[:3]] == [
        d.value.to_dict() for d in first.dataframe[:3]]
