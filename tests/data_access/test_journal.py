"""The journal on both backends (SQLite in WAL mode, a real PostgreSQL server): the audit trail,
findings and annotations round trip with their values, and several processes appending at once
keep one unbroken chain."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from data_access import review_journal as rj
from data_access.audit import GENESIS_HASH, AuditLog, VerifyResult, record_hash
from data_access.journal import Journal, JournalError, open_journal
from data_access.journal_schema import FINDING_COLUMNS
from explainers.errors import ValidationError, WarehouseError

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
SINCE, UNTIL = date(2025, 3, 3), date(2025, 3, 10)
NASTY = "'); DROP TABLE audit_log;--"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest) -> str | None:
    """None: the workspace's SQLite file; else a fresh PostgreSQL database."""
    return None if request.param == "sqlite" else request.getfixturevalue("fresh_postgres_url")


@pytest.fixture
def journal(tmp_path: Path, url: str | None) -> Journal:
    return open_journal(tmp_path, url=url)


def test_sqlite_journal_is_a_wal_file_with_a_busy_timeout(tmp_path: Path) -> None:
    journal = open_journal(tmp_path)
    assert journal.dialect == "sqlite"
    assert (tmp_path / "journal.sqlite").is_file()
    assert not (tmp_path / "journal.duckdb").exists()
    with sqlite3.connect(tmp_path / "journal.sqlite") as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with journal.read() as s:
        assert s.execute("PRAGMA busy_timeout") == [(30000,)]
        assert s.execute("PRAGMA synchronous") == [(2,)]  # FULL: a commit survives power loss
        tables = {r[0] for r in s.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"audit_log", "findings", "finding_members", "annotations", "dispositions"}


def test_postgres_journal_comes_from_the_environment(
    tmp_path: Path, fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDLENS_JOURNAL_URL", fresh_postgres_url)
    journal = open_journal(tmp_path)
    assert journal.dialect == "postgresql"
    AuditLog(journal).append("ana", "analyst", "case_view", "tx-1", now=T0)
    assert not (tmp_path / "journal.sqlite").exists()
    assert AuditLog(open_journal(tmp_path)).records()["target"].tolist() == ["tx-1"]
    monkeypatch.setenv("FRAUDLENS_JOURNAL_URL", "mysql://nope")
    with pytest.raises(JournalError, match="postgresql://"):
        open_journal(tmp_path)


def test_unreachable_postgres_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match=r"Cannot open the journal postgresql://u:\*\*\*@"):
        open_journal(tmp_path, url="postgresql://u:secret@127.0.0.1:9/none?connect_timeout=2")


def test_missing_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="No workspace"):
        open_journal(tmp_path / "nope")
    assert not (tmp_path / "nope").exists()


def test_audit_records_round_trip(journal: Journal) -> None:
    log = AuditLog(journal)
    first = log.append("ana", "analyst", "case_view", "tx-1", now=T0)
    second = log.append(NASTY, "analyst", "unmask", ["tx-1", 7], "denied",
                        {"reason": NASTY, "n": 2}, now=T0 + timedelta(seconds=1))
    assert (first.seq, first.prev_hash, second.seq, second.prev_hash) == (
        1, GENESIS_HASH, 2, first.hash)
    assert second.hash == record_hash(first.hash, seq=2, ts=T0 + timedelta(seconds=1),
                                      actor=NASTY, role="analyst", action="unmask",
                                      target='["tx-1",7]', details=f'{{"n":2,"reason":"{NASTY}"}}',
                                      outcome="denied")
    df = log.records()
    assert df["seq"].tolist() == [2, 1]
    assert df["actor"].tolist() == [NASTY, "ana"]
    assert df["target"].tolist() == ['["tx-1",7]', "tx-1"]
    assert df["outcome"].tolist() == ["denied", "ok"]
    assert df["hash"].tolist() == [second.hash, first.hash]
    assert df["ts"].tolist() == [pd.Timestamp(T0 + timedelta(seconds=1)), pd.Timestamp(T0)]
    assert str(df["ts"].dtype.tz) == "UTC"
    assert log.records(actor=NASTY)["seq"].tolist() == [2]
    assert log.records(since=T0 + timedelta(microseconds=1))["seq"].tolist() == [2]
    assert log.records(until=T0 + timedelta(microseconds=1))["seq"].tolist() == [1]
    assert log.verify() == VerifyResult(True, 2, None, "2 records verified", second.hash, 2)


def _findings(scale: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = []
    for rank in (1, 2):
        row: dict[str, object] = {}
        for col, kind in FINDING_COLUMNS.items():
            row[col] = {"INTEGER": rank * 10 * scale, "DOUBLE": rank / 4 * scale}.get(
                kind, f"{col}-{rank}")
        row.update(finding_id=f"F{rank}", rank=rank, mean_score=math.nan,
                   previous_finding_id=None, rule=NASTY)
        rows.append(row)
    members = pd.DataFrame({"finding_id": ["F2", "F1", "F1"], "transaction_id": ["t9", "t2", "t1"],
                            "distance": [0.5, 0.25, math.nan],
                            "representative": [True, False, True]})
    return pd.DataFrame(rows), members


def test_findings_round_trip(journal: Journal) -> None:
    assert rj.stored_findings(journal, "m@1", SINCE, UNTIL).empty
    findings, members = _findings()
    rj.store_findings(journal, "m@1", SINCE, UNTIL, findings, members, mined_by=NASTY)
    other, _ = _findings(scale=3)
    rj.store_findings(journal, "m@1", UNTIL, date(2025, 3, 17), other, members.iloc[:1], "bo")
    got = rj.stored_findings(journal, "m@1", SINCE, UNTIL)
    assert list(got.columns) == [*FINDING_COLUMNS, "mined_at", "mined_by"]
    pd.testing.assert_frame_equal(got[list(FINDING_COLUMNS)], findings[list(FINDING_COLUMNS)],
                                  check_dtype=False)
    assert got["rank"].dtype == "int64" and got["mean_score"].dtype == "float64"
    assert got["previous_finding_id"].tolist() == [None, None]
    assert got["mined_by"].tolist() == [NASTY, NASTY]
    assert str(got["mined_at"].dtype.tz) == "UTC"
    got_members = rj.stored_members(journal, "m@1", SINCE, UNTIL)
    assert got_members["transaction_id"].tolist() == ["t1", "t2", "t9"]  # by finding, then id
    assert got_members["representative"].tolist() == [True, False, True]
    assert got_members["distance"].tolist()[1:] == [0.25, 0.5]
    assert math.isnan(got_members["distance"].iloc[0])
    # storing the window again replaces it; the other window is untouched
    rj.store_findings(journal, "m@1", SINCE, UNTIL, findings.iloc[:1], members.iloc[1:], "bo")
    assert rj.stored_findings(journal, "m@1", SINCE, UNTIL)["finding_id"].tolist() == ["F1"]
    assert rj.stored_members(journal, "m@1", SINCE, UNTIL)["transaction_id"].tolist() == [
        "t1", "t2"]
    assert rj.stored_findings(journal, "m@1", UNTIL, date(2025, 3, 17))["cases"].tolist() == [
        30, 60]
    with pytest.raises(ValidationError, match="lack column"):
        rj.store_findings(journal, "m@1", SINCE, UNTIL, findings.drop(columns="rule"),
                          members, "bo")


def test_annotations_round_trip_with_their_audit_record(journal: Journal) -> None:
    log = AuditLog(journal)

    def audited(note: rj.Annotation) -> None:
        log.append(note.author, "analyst", "annotation", note.finding_id,
                   details={"revision": note.revision})

    first = rj.annotate(journal, "F1", title=" Mule ring ", status="new", owner="ana",
                        notes=NASTY, author="ana", before_commit=audited, now=T0)
    second = rj.annotate(journal, "F1", title="Mule ring", status="confirmed", owner="bo",
                         notes="", author="bo", before_commit=audited,
                         now=T0 + timedelta(hours=1))
    rj.annotate(journal, "F2", title="x", status="spurious", owner="", notes="", author="bo")
    assert (first.revision, first.title, second.revision) == (1, "Mule ring", 2)
    history = rj.annotation_history(journal, "F1")
    assert history["revision"].tolist() == [2, 1]
    assert history["status"].tolist() == ["confirmed", "new"]
    assert history["notes"].tolist() == ["", NASTY]
    assert history["created_at"].tolist() == [pd.Timestamp(T0 + timedelta(hours=1)),
                                              pd.Timestamp(T0)]
    latest = rj.latest_annotations(journal, ["F2", "F1", "F9", "F1"])
    assert latest[["finding_id", "revision", "status", "owner"]].values.tolist() == [
        ["F1", 2, "confirmed", "bo"], ["F2", 1, "spurious", ""]]
    assert rj.latest_annotations(journal, []).empty
    records = log.records(action="annotation")
    assert [r["revision"] for r in map(eval_json, records["details"])] == [2, 1]

    class AuditDown(RuntimeError):
        pass

    def refuse(note: rj.Annotation) -> None:
        log.append("bo", "analyst", "annotation", "F1")  # written, then rolled back with it
        raise AuditDown

    with pytest.raises(AuditDown):
        rj.annotate(journal, "F1", title="t", status="actioned", owner="", notes="",
                    author="bo", before_commit=refuse)
    assert rj.annotation_history(journal, "F1")["revision"].tolist() == [2, 1]
    assert len(log.records()) == 2
    assert log.verify().ok and log.verify().anchored == 2
    with pytest.raises(ValidationError, match="Status"):
        rj.annotate(journal, "F1", title="", status="done", owner="", notes="", author="bo")


def eval_json(text: str) -> dict[str, object]:
    import json

    return dict(json.loads(text))


def test_store_failure_is_a_warehouse_error(journal: Journal) -> None:
    journal.close()
    findings, members = _findings()
    with pytest.raises(WarehouseError, match="Could not store the findings"):
        rj.store_findings(journal, "m@1", SINCE, UNTIL, findings, members, "bo")


def _worker(workspace: str, url: str | None, who: str, appends: int, notes: int) -> None:
    journal = open_journal(workspace, url=url)
    log = AuditLog(journal)
    for i in range(appends):
        log.append(who, "analyst", "case_view", f"tx-{i}")
        if i < notes:
            rj.annotate(journal, "F-shared", title=who, status="new", owner=who, notes="",
                        author=who)


def test_several_processes_append_one_unbroken_chain(tmp_path: Path, url: str | None) -> None:
    open_journal(tmp_path, url=url)  # the schema exists before the race
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), url, f"p{n}", 50, 10))
             for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    journal = open_journal(tmp_path, url=url)
    log = AuditLog(journal)
    result = log.verify()
    assert (result.ok, result.checked, result.anchored) == (True, 200, 200)
    df = log.records(limit=1000)
    assert sorted(df["seq"].tolist()) == list(range(1, 201))
    assert df["actor"].value_counts().to_dict() == {"p0": 50, "p1": 50, "p2": 50, "p3": 50}
    points = journal.checkpoints.scan()
    assert points.problems == ()
    assert points.seqs.tolist() == list(range(1, 201))  # one line per append, none torn
    assert (points.newest.count, points.newest.head) == (200, result.head_hash)
    assert rj.annotation_history(journal, "F-shared")["revision"].tolist() == list(
        range(40, 0, -1))


def test_an_old_duckdb_journal_is_imported_verbatim(tmp_path: Path) -> None:
    import duckdb

    old = duckdb.connect(str(tmp_path / "journal.duckdb"))
    old.execute("CREATE TABLE audit_log (seq BIGINT PRIMARY KEY, ts TIMESTAMPTZ NOT NULL, "
                "actor VARCHAR NOT NULL, role VARCHAR NOT NULL, action VARCHAR NOT NULL, "
                "target VARCHAR NOT NULL, details VARCHAR NOT NULL, outcome VARCHAR NOT NULL, "
                "prev_hash VARCHAR NOT NULL, hash VARCHAR NOT NULL UNIQUE)")
    old.execute("CREATE TABLE annotations (finding_id VARCHAR NOT NULL, revision INTEGER NOT "
                "NULL, title VARCHAR, status VARCHAR NOT NULL, owner VARCHAR, notes VARCHAR, "
                "author VARCHAR NOT NULL, created_at TIMESTAMPTZ NOT NULL)")
    prev = GENESIS_HASH
    for seq in (1, 2, 3):
        ts = T0 + timedelta(seconds=seq)
        digest = record_hash(prev, seq=seq, ts=ts, actor="ana", role="analyst",
                             action="case_view", target=f"tx-{seq}", details="{}", outcome="ok")
        old.execute("INSERT INTO audit_log VALUES (?, ?, 'ana', 'analyst', 'case_view', ?, '{}', "
                    "'ok', ?, ?)", [seq, ts, f"tx-{seq}", prev, digest])
        prev = digest
    old.execute("INSERT INTO annotations VALUES ('F1', 1, 't', 'new', 'ana', 'n', 'ana', ?)",
                [T0])
    old.close()
    journal = open_journal(tmp_path)
    log = AuditLog(journal)
    assert log.verify() == VerifyResult(True, 3, None, "3 records verified", prev, 3)
    assert log.records()["ts"].tolist() == [pd.Timestamp(T0 + timedelta(seconds=s))
                                            for s in (3, 2, 1)]
    assert rj.annotation_history(journal, "F1")["created_at"].tolist() == [pd.Timestamp(T0)]
    assert log.append("bo", "analyst", "case_view", "tx-4").prev_hash == prev
    assert sorted(p.name for p in tmp_path.iterdir() if "journal" in p.name) == [
        "journal.duckdb", "journal.sqlite"]
    assert open_journal(tmp_path).checkpoints.scan().seqs.tolist() == [3, 4]  # import, append
