"""Monitoring on the 20k-row demo workspace: the planted stream outage and the card-testing
growth are found, immature weeks read "not yet measurable", rules files are checked line by
line, and `fraudlens monitor` writes the page's numbers and exits 4 on alerts."""

from __future__ import annotations

import shutil
from contextlib import closing
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from app.cli.main import main
from app.services import monitoring
from app.services.monitoring_rules import MonitoringRules, load_rules, parse_rules
from app.views import monitoring_report as view
from data_access.audit import AuditLog
from data_access.exports import csv_bytes
from data_access.journal import open_journal
from data_access.workspace import Workspace
from explainers.errors import ValidationError

XGB = "fraud_xgb@1"


def _manifest(ws: Workspace, ref: str = XGB) -> dict:
    m = ws.registry.resolve(ref)
    return {**m.to_dict(), "model_id": m.key}


@pytest.fixture(scope="module")
def monitor_ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy: the CLI writes its audit records into the workspace's journal."""
    target = tmp_path_factory.mktemp("monitor") / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


@pytest.fixture(scope="module")
def report(monitor_ws: Path) -> monitoring.MonitoringReport:
    ws = Workspace.at(monitor_ws)
    with closing(ws.reader()) as con:
        return monitoring.build_report(con, _manifest(ws), MonitoringRules())


def test_the_planted_stream_outage_is_one_data_quality_alert(report):
    found = [a for a in report.alerts if a.subject == "stream:missing"]
    assert len(found) == 1, [a.message for a in report.alerts]
    outage = found[0]
    assert outage.week == date(2026, 11, 2) and outage.features == ("amount_24h_usd",)
    assert outage.message.startswith("stream features: missing rate ")
    assert outage.reference < 0.05 and 0.25 < outage.value < 0.5
    assert outage.week >= report.reference.alerts_from


def test_the_card_testing_growth_is_found_after_the_cut_off(report):
    hits = [a for a in report.alerts if "card_txn_count_10m" in a.features]
    assert hits, [a.message for a in report.alerts]
    assert all(a.week >= report.reference.alerts_from for a in hits)
    assert any(a.subject == "stream:out_of_range" for a in hits)
    card = report.features[(report.features["feature"] == "card_txn_count_10m")
                           & (report.features["week"].astype(str) == str(hits[-1].week))]
    assert card["out_of_range_rows"].iloc[0] >= MonitoringRules().out_of_range_min_rows


def test_weeks_without_labels_are_not_yet_measurable_never_zero(report):
    last = report.weekly.iloc[-1]
    assert last["status"] == monitoring.NOT_MEASURABLE and last["labelled"] == 0
    shown = view.weekly_table(report).iloc[-1]
    assert shown["ROC AUC"] == shown["Recall at capacity"] == "not yet measurable"
    text = " ".join(view.weekly_table(report).astype(str).to_numpy().ravel())
    assert "nan" not in text.lower()
    immature = report.weekly[report.weekly["status"] == "provisional"]
    assert len(immature) and immature["expected_final_fraud"].ge(immature["fraud_known"]).all()
    young = report.weekly[report.weekly["label_share"] < MonitoringRules().min_label_share]
    assert young["roc_auc"].isna().all() and young["precision_at_k"].isna().all()


def test_every_feature_is_grouped_by_its_source(report):
    assert set(report.sources["source"]) == {"stream", "batch", "static"}
    assert not report.features["status"].isna().any()
    assert report.attribution is not None and report.attribution["rank"].min() == 1


def test_segments_split_the_weekly_table_and_refuse_pii(monitor_ws: Path, report):
    ws = Workspace.at(monitor_ws)
    with closing(ws.reader()) as con:
        by_channel = monitoring.segment_weekly(con, XGB, "channel", report)
        with pytest.raises(ValidationError, match="Cannot split by 'email'"):
            monitoring.segment_weekly(con, XGB, "email", report)
    assert set(by_channel["segment"]) >= {"web", "mobile_app", "api"}
    week = by_channel.groupby("week")["rows"].sum()
    assert week.tolist() == report.weekly.set_index("week")["rows"].loc[week.index].tolist()


@pytest.mark.parametrize(("text", "needle"), [
    ("[drift]\nfeature_psi = 0.3\nbogus = 1\n", "line 3: [drift] bogus: unknown key"),
    ("[drift]\nfeature_psi = 'high'\n", "line 2: [drift] feature_psi: expected a number"),
    ("[settings]\ncapacity_per_day = 0\n", "line 2: [settings] capacity_per_day: must be above"),
    ("[nonsense]\nx = 1\n", "line 1: [nonsense]: unknown section"),
    ("[drift\nfeature_psi = 0.3\n", "line 1"),
])
def test_a_bad_rules_file_names_its_line_and_key(text: str, needle: str):
    with pytest.raises(ValidationError) as err:
        parse_rules(text, "monitoring.toml")
    assert needle in str(err.value) and "default" in str(err.value)


def test_rules_file_in_the_workspace_is_used_and_never_replaced_by_defaults(tmp_path: Path):
    assert load_rules(tmp_path) == MonitoringRules()
    (tmp_path / "monitoring.toml").write_text("[performance]\nroc_auc_drop = 0.02\n")
    assert load_rules(tmp_path).roc_auc_drop == 0.02
    (tmp_path / "monitoring.toml").write_text("[performance]\nroc_auc_drop = -1\n")
    with pytest.raises(ValidationError, match="line 2"):
        load_rules(tmp_path)


def test_cli_writes_the_pages_numbers_audits_them_and_exits_4(monitor_ws: Path, report,
                                                             tmp_path: Path, capsys):
    out = tmp_path / "monitor.html"
    code = main(["--workspace", str(monitor_ws), "monitor", "--model", "fraud_xgb", "--out",
                 str(out), "--fail-on-alert"])
    assert code == 4
    printed = capsys.readouterr().out
    assert "stream features: missing rate" in printed
    # the page asks for the lake's first to last day: the same weeks and numbers
    ws = Workspace.at(monitor_ws)
    with closing(ws.reader()) as con:
        page = monitoring.build_report(con, _manifest(ws), MonitoringRules(),
                                       report.span[0].date(),
                                       (report.span[1] - pd.Timedelta(microseconds=1)).date())
    assert (tmp_path / "monitor_weekly.csv").read_bytes() == csv_bytes(view.weekly_csv(page))
    assert (tmp_path / "monitor_alerts.csv").read_bytes() == csv_bytes(view.alerts_csv(page))
    html = out.read_text("utf-8")
    assert "<script" not in html and "not yet measurable" in html
    journal = open_journal(monitor_ws)
    try:
        exports = AuditLog(journal).records(action="export")
    finally:
        journal.close()
    whats = {r for r in exports["details"] if '"what":"monitoring' in r.replace(" ", "")}
    assert len(whats) == 3
    assert main(["--workspace", str(monitor_ws), "monitor", "--model", "fraud_xgb", "--out",
                 str(tmp_path / "again.html"), "--csv-dir", str(tmp_path)]) == 0


def test_cli_refuses_a_malformed_rules_file_with_exit_2(monitor_ws: Path, tmp_path: Path,
                                                       capsys):
    rules = tmp_path / "rules.toml"
    rules.write_text("[attribution]\nrank_change = 'x'\n")
    code = main(["--workspace", str(monitor_ws), "monitor", "--model", "fraud_xgb", "--out",
                 str(tmp_path / "m.html"), "--rules", str(rules)])
    assert code == 2
    assert "line 2: [attribution] rank_change" in capsys.readouterr().err
    assert not (tmp_path / "m.html").exists()


def test_a_feature_absent_from_the_reference_is_reported_as_new_not_a_crash():
    from app.services.monitoring_drift import _feature_rows

    ref = pd.DataFrame([{"week": None, "feature": "new_score", "rows": 500, "missing": 500,
                         "out_of_range": 0, "counts": {}}])
    weekly = pd.DataFrame([{"week": date(2026, 11, 16), "feature": "new_score", "rows": 400,
                            "missing": 10, "out_of_range": 0, "counts": {0: 390}}])
    row = _feature_rows(ref, weekly, set())[0]
    assert row["status"] == "new (absent from the reference)"
    assert row["missing_rate"] == pytest.approx(10 / 400) and row["reference_missing_rate"] == 1.0
    assert pd.isna(row["psi"])


def test_a_kept_report_reads_back_equal_and_spares_the_scans(monitor_ws: Path, report,
                                                             monkeypatch: pytest.MonkeyPatch):
    ws = Workspace.at(monitor_ws)
    with closing(ws.lake()) as lake:
        first = monitoring.kept_report(lake.con, ws.path, lake.version, _manifest(ws),
                                       MonitoringRules())

        def no_scans(*args, **kwargs):
            raise AssertionError("the kept report should have been read")

        monkeypatch.setattr(monitoring, "build_report", no_scans)
        again = monitoring.kept_report(lake.con, ws.path, lake.version, _manifest(ws),
                                       MonitoringRules())
    assert again.alerts == first.alerts == report.alerts
    assert again.reference == first.reference and again.as_of == first.as_of
    assert again.reference_metrics == first.reference_metrics
    for name in ("weekly", "features", "sources", "attribution"):
        pd.testing.assert_frame_equal(getattr(again, name), getattr(first, name))
    assert view.alerts_table(again, {}).equals(view.alerts_table(report, {}))
    with closing(ws.lake()) as lake, pytest.raises(AssertionError, match="kept report"):
        monitoring.kept_report(lake.con, ws.path, "another-version", _manifest(ws),
                               MonitoringRules())
