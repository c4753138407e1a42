"""`fraudlens export dispositions` writes formula-safe, audited CSV for a half-open window;
every command that takes dates refuses a window that selects nothing (exit 2, one line)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.cli.main import main
from data_access import dispositions as dp
from data_access.audit import AuditLog
from data_access.journal import open_journal


def test_export_dispositions_is_formula_safe_and_audited(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    journal = open_journal(ws)
    for txn, day in (("T1", 3), ("T2", 9), ("T3", 10)):
        dp.record_disposition(journal, txn, model_id="m@1", outcome="confirmed_fraud",
                              typology="card testing", assignee="", notes="=cmd|' /C calc'!A0",
                              author="ana", now=datetime(2025, 3, day, 12, tzinfo=UTC))
    out = tmp_path / "d.csv"
    assert main(["--workspace", str(ws), "export", "dispositions", "--since", "2025-03-03",
                 "--until", "2025-03-10", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["transaction_id"] for r in rows] == ["T1", "T2"]
    assert rows[0]["notes"].startswith("'=")
    exports = AuditLog(journal).records()
    assert list(exports["action"]) == ["export"]
    assert '"what":"dispositions"' in exports["details"].iloc[0]


@pytest.mark.parametrize("argv", [
    ["export", "dispositions", "--since", "2025-03-10", "--until", "2025-03-03", "--out", "x.csv"],
    ["export", "shap-summary", "--model", "m", "--since", "2025-03-10", "--until", "2025-03-03",
     "--out", "x.csv"],
    ["export", "shap-values", "--model", "m", "--since", "2025-03-03", "--until", "2025-03-03",
     "--out", "x.csv"],
    ["explain", "--model", "m", "--since", "2025-03-10", "--until", "2025-03-03"],
    ["patterns", "--model", "m", "--since", "2025-03-10", "--until", "2025-03-03", "--out",
     "x.csv"],
    ["monitor", "--model", "m", "--since", "2025-03-10", "--until", "2025-03-03", "--out",
     "x.html"],
])
def test_since_after_until_is_refused_with_one_line(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--workspace", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--until" in err[0] and "--since" in err[0]
    assert not (tmp_path / "x.csv").exists()


def test_export_and_explain_help_describe_every_option(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["export", "shap-summary", "--help"], ["explain", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        text = capsys.readouterr().out
        assert "exclusive" in text
        for option in ("--since", "--until", "--model"):
            line = next(ln for ln in text.splitlines() if ln.strip().startswith(option))
            rest = text.split(line, 1)[1].splitlines()[0].strip() if line.strip() == option \
                else line.strip()
            assert len(rest.split()) > 2, f"{option} has no description"
