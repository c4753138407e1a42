"""Case dispositions in the journal: append-only revisions, each audited in the same
transaction; statuses unworked / assigned / decided; the typology list from fraudlens.toml."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from data_access import dispositions as dp
from data_access.audit import AuditLog
from data_access.journal import open_journal
from explainers.errors import AuditError, ValidationError

T0 = datetime(2025, 3, 4, 9, 30, tzinfo=UTC)


def _record(journal, txn: str, **kw):
    args = {"model_id": "fraud_xgb@1", "outcome": "", "typology": "", "assignee": "",
            "notes": "", "author": "ana@example.com", "now": T0, **kw}
    return dp.record_disposition(journal, txn, **args)


def test_revisions_append_and_status_follows_the_newest(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    _record(journal, "T1", assignee="ana@example.com")
    assert dp.case_statuses(journal, ["T1", "T2"]) == {"T1": "assigned", "T2": "unworked"}
    second = _record(journal, "T1", outcome="confirmed_fraud", typology="card testing",
                     notes="=HYPERLINK('x')")
    assert second.revision == 2 and second.status == "decided"
    assert dp.case_statuses(journal, ["T1"]) == {"T1": "decided"}
    history = dp.disposition_history(journal, "T1")
    assert list(history["revision"]) == [2, 1]
    assert list(history["outcome"]) == ["confirmed_fraud", ""]
    _record(journal, "T3", outcome="needs_info")
    assert dp.case_statuses(journal, ["T3"]) == {"T3": "assigned"}


def test_a_failed_audit_write_stores_no_disposition(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)

    def fail(_: dp.Disposition) -> None:
        raise AuditError("audit down")

    with pytest.raises(AuditError):
        _record(journal, "T1", outcome="legitimate", before_commit=fail)
    assert dp.disposition_history(journal, "T1").empty
    audit = AuditLog(journal)
    _record(journal, "T1", outcome="legitimate", before_commit=lambda d: audit.append(
        "ana", "analyst", "disposition", d.transaction_id, "ok", {"revision": d.revision}))
    assert list(audit.records()["action"]) == ["disposition"]


@pytest.mark.parametrize("kw, message", [
    ({"outcome": "maybe"}, "Outcome must be one of"),
    ({"outcome": "confirmed_fraud"}, "needs a typology"),
    ({"outcome": "confirmed_fraud", "typology": "aliens"}, "not in the configured list"),
    ({}, "Choose an outcome or assign"),
])
def test_bad_dispositions_are_refused(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _record(open_journal(tmp_path), "T1", **kw)


def test_export_window_is_half_open(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    _record(journal, "T1", outcome="legitimate", now=datetime(2025, 3, 3, 0, 0, tzinfo=UTC))
    _record(journal, "T2", outcome="legitimate", now=datetime(2025, 3, 9, 23, 59, tzinfo=UTC))
    _record(journal, "T3", outcome="legitimate", now=datetime(2025, 3, 10, 0, 0, tzinfo=UTC))
    rows = dp.dispositions_between(journal, date(2025, 3, 3), date(2025, 3, 10))
    assert list(rows["transaction_id"]) == ["T1", "T2"]
    with pytest.raises(ValidationError, match="must be after"):
        dp.dispositions_between(journal, date(2025, 3, 10), date(2025, 3, 3))


def test_typologies_come_from_the_workspace_config(tmp_path: Path) -> None:
    assert dp.typologies(tmp_path) == dp.DEFAULT_TYPOLOGIES
    (tmp_path / "fraudlens.toml").write_text(
        '[dispositions]\ntypologies = ["mule", "ato", "mule"]\n', "utf-8")
    assert dp.typologies(tmp_path) == ("mule", "ato")
    (tmp_path / "fraudlens.toml").write_text("[dispositions]\ntypologies = []\n", "utf-8")
    with pytest.raises(ValidationError, match="non-empty list"):
        dp.typologies(tmp_path)
