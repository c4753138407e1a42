"""Audit trail: append-only, hash-chained records in the journal (SQLite here; PostgreSQL in
test_journal*.py) that detect tampering."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from data_access.audit import (
    GENESIS_HASH,
    AuditLog,
    AuditRecord,
    VerifyResult,
    ensure_audit_table,
    record_hash,
)
from data_access.journal import Journal, open_journal
from explainers.errors import AuditError

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return open_journal(tmp_path)


@pytest.fixture
def log(journal: Journal) -> AuditLog:
    return AuditLog(journal)


@pytest.fixture
def con(journal: Journal, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A raw connection to the journal file: what someone tampering with it would use."""
    connection = sqlite3.connect(tmp_path / "journal.sqlite", isolation_level=None)
    yield connection
    connection.close()


def _three(log: AuditLog) -> list[AuditRecord]:
    return [
        log.append("ana", "analyst", "case_view", "tx-1", now=T0),
        log.append(
            "ana",
            "analyst",
            "unmask",
            ["tx-1", "tx-2"],
            details={"reason": "KYC"},
            now=T0 + timedelta(seconds=1),
        ),
        log.append(
            "eve",
            "engineer",
            "export",
            "shap-summary",
            details={"rows": 42, "sha256": "ab" * 32},
            now=T0 + timedelta(seconds=2),
        ),
    ]


def test_three_records_chain_and_verify(log: AuditLog) -> None:
    recs = _three(log)
    assert [r.seq for r in recs] == [1, 2, 3]
    assert recs[0].prev_hash == GENESIS_HASH
    assert recs[1].prev_hash == recs[0].hash and recs[2].prev_hash == recs[1].hash
    assert recs[1].target == '["tx-1","tx-2"]'
    assert recs[2].details == '{"rows":42,"sha256":"' + "ab" * 32 + '"}'
    assert recs[2].details_dict() == {"rows": 42, "sha256": "ab" * 32}
    assert log.verify() == VerifyResult(True, 3, None, "3 records verified", recs[2].hash, 3)


def test_hash_is_sha256_of_prev_hash_and_canonical_fields(log: AuditLog) -> None:
    rec = log.append("ana", "analyst", "case_view", "tx-1", details={"b": 1, "a": 2}, now=T0)
    body = (
        '{"action":"case_view","actor":"ana","details":"{\\"a\\":2,\\"b\\":1}",'
        '"outcome":"ok","role":"analyst","seq":1,"target":"tx-1",'
        '"ts":"2025-03-01T12:00:00.123456+00:00"}'
    )
    assert rec.hash == hashlib.sha256((GENESIS_HASH + body).encode()).hexdigest()
    assert rec.hash == record_hash(
        GENESIS_HASH,
        seq=1,
        ts=T0,
        actor="ana",
        role="analyst",
        action="case_view",
        target="tx-1",
        details='{"a":2,"b":1}',
        outcome="ok",
    )


def test_empty_log_verifies(log: AuditLog) -> None:
    assert log.verify() == VerifyResult(True, 0, None, "0 records verified", None)


def test_edited_actor_is_detected_naming_the_record(
    con: sqlite3.Connection, log: AuditLog
) -> None:
    _three(log)
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 2
    assert result.checked == 1
    assert "edited" in result.problem


def test_edit_with_recomputed_hash_breaks_the_next_link(
    con: sqlite3.Connection, log: AuditLog
) -> None:
    recs = _three(log)
    forged = record_hash(
        recs[1].prev_hash,
        seq=2,
        ts=recs[1].ts,
        actor="mallory",
        role="analyst",
        action="unmask",
        target=recs[1].target,
        details=recs[1].details,
        outcome="ok",
    )
    con.execute("UPDATE audit_log SET actor = 'mallory', hash = ? WHERE seq = 2", [forged])
    result = log.verify()  # the signed checkpoint of record 2 no longer matches
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "differs from the signed checkpoint" in result.problem
    log.journal.checkpoints.path.unlink()  # without checkpoints, the next link still breaks
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "prev_hash" in result.problem


def test_deleted_middle_record_is_detected(con: sqlite3.Connection, log: AuditLog) -> None:
    _three(log)
    con.execute("DELETE FROM audit_log WHERE seq = 2")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "expected seq 2" in result.problem


def test_deleted_first_record_is_detected(con: sqlite3.Connection, log: AuditLog) -> None:
    _three(log)
    con.execute("DELETE FROM audit_log WHERE seq = 1")
    assert log.verify().first_bad_seq == 2


def test_deleted_and_renumbered_record_is_detected(
    con: sqlite3.Connection, log: AuditLog
) -> None:
    _three(log)
    con.execute("DELETE FROM audit_log WHERE seq = 2")
    con.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_swapped_records_are_detected(con: sqlite3.Connection, log: AuditLog) -> None:
    _three(log)
    con.execute("UPDATE audit_log SET seq = 99 WHERE seq = 1")
    con.execute("UPDATE audit_log SET seq = 1 WHERE seq = 2")
    con.execute("UPDATE audit_log SET seq = 2 WHERE seq = 99")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_edited_timestamp_is_detected(con: sqlite3.Connection, log: AuditLog) -> None:
    _three(log)
    con.execute("UPDATE audit_log SET ts = replace(ts, '.123456', '.123457') WHERE seq = 3")
    assert log.verify().first_bad_seq == 3


def test_append_continues_the_chain_after_reopening(tmp_path: Path) -> None:
    with open_journal(tmp_path) as first:
        last = _three(AuditLog(first))[-1]
    with open_journal(tmp_path) as second:
        log = AuditLog(second)
        rec = log.append("ana", "analyst", "annotation", "F-1")
        assert (rec.seq, rec.prev_hash) == (4, last.hash)
        assert log.verify().ok


def test_append_on_closed_journal_raises_audit_error(journal: Journal, log: AuditLog) -> None:
    journal.close()
    with pytest.raises(AuditError, match="closed"):
        log.append("ana", "analyst", "case_view", "tx-1")


def test_failed_insert_rolls_back_and_raises_audit_error(
    con: sqlite3.Connection, log: AuditLog
) -> None:
    _three(log)
    con.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_log "
                "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    with pytest.raises(AuditError, match=r"Could not write the audit record.*disk says no"):
        log.append("ana", "analyst", "case_view", "tx-9")
    assert con.execute("SELECT count(*) FROM audit_log").fetchone() == (3,)
    assert log.journal.checkpoints.scan().seqs.tolist() == [1, 2, 3]
    con.execute("DROP TRIGGER refuse")
    # Nothing was left half-open: the next append takes seq 4.
    assert log.append("ana", "analyst", "case_view", "tx-9").seq == 4


def test_open_reader_does_not_block_the_audit(con: sqlite3.Connection, log: AuditLog) -> None:
    con.execute("BEGIN")
    assert con.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)  # holds a snapshot
    log.append("ana", "analyst", "case_view", "tx-1")  # WAL: the reader does not block it
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)


def test_append_joins_the_threads_journal_transaction(journal: Journal, log: AuditLog) -> None:
    class Refused(RuntimeError):
        pass

    with pytest.raises(Refused), journal.write():
        log.append("ana", "analyst", "annotation", "F-1")
        raise Refused
    assert log.records().empty  # rolled back with the transaction it joined
    assert not journal.checkpoints.has_entries()  # and never checkpointed
    with journal.write():
        rec = log.append("ana", "analyst", "annotation", "F-1")
        assert not journal.checkpoints.has_entries()  # anchored only once committed
    points = journal.checkpoints.scan()
    assert (points.seqs.tolist(), points.newest.head, points.newest.count) == ([1], rec.hash, 1)


def test_sql_injection_text_is_stored_verbatim(log: AuditLog) -> None:
    nasty = "' OR 1=1--"
    rec = log.append(
        nasty, "analyst'); DROP TABLE audit_log;--", "case_view", nasty, details={"reason": nasty}
    )
    df = log.records(actor=nasty)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["actor"] == nasty and row["target"] == nasty
    assert row["role"] == "analyst'); DROP TABLE audit_log;--"
    assert json.loads(row["details"]) == {"reason": nasty}
    assert row["hash"] == rec.hash
    assert log.records(actor="' OR '1'='1").empty
    assert log.verify().ok


def test_records_filters(log: AuditLog) -> None:
    _three(log)
    log.append(
        "eve",
        "engineer",
        "access_denied",
        "page:admin",
        outcome="denied",
        now=T0 + timedelta(seconds=3),
    )
    assert log.records()["seq"].tolist() == [4, 3, 2, 1]
    assert log.records(action="unmask")["seq"].tolist() == [2]
    assert log.records(actor="eve")["seq"].tolist() == [4, 3]
    assert log.records(outcome="denied")["seq"].tolist() == [4]
    assert log.records(since=T0 + timedelta(seconds=1))["seq"].tolist() == [4, 3, 2]
    assert log.records(until=T0 + timedelta(seconds=1))["seq"].tolist() == [1]
    window = log.records(since=T0 + timedelta(seconds=1), until=T0 + timedelta(seconds=3))
    assert window["seq"].tolist() == [3, 2]
    assert log.records(actor="eve", action="export")["seq"].tolist() == [3]
    assert log.records(limit=2)["seq"].tolist() == [4, 3]
    assert log.records(actor="nobody").empty
    with pytest.raises(AuditError):
        log.records(limit=0)


def test_timestamps_are_stored_in_utc(con: sqlite3.Connection, log: AuditLog) -> None:
    plus_two = timezone(timedelta(hours=2))
    rec = log.append(
        "ana",
        "analyst",
        "case_view",
        "tx-1",
        now=datetime(2025, 3, 1, 14, 0, 0, 5, tzinfo=plus_two),
    )
    assert rec.ts == datetime(2025, 3, 1, 12, 0, 0, 5, tzinfo=UTC)
    assert rec.ts.utcoffset() == timedelta(0)
    raw = con.execute("SELECT ts FROM audit_log").fetchone()[0]
    assert raw == "2025-03-01T12:00:00.000005+00:00"  # fixed-width UTC text: sorts by time
    stored = log.records()["ts"].iloc[0]
    assert str(stored.tz) == "UTC"
    assert stored.to_pydatetime() == rec.ts
    assert log.verify().ok


def test_default_timestamp_is_now_in_utc(log: AuditLog) -> None:
    before = datetime.now(UTC)
    rec = log.append("ana", "analyst", "case_view", "tx-1")
    assert before <= rec.ts <= datetime.now(UTC)
    assert rec.ts.tzinfo is not None and rec.ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"now": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"details": {"x": float("nan")}}, "JSON"),
        ({"details": {"x": object()}}, "JSON"),
    ],
)
def test_bad_input_is_refused_before_writing(log: AuditLog, kwargs: dict, message: str) -> None:
    with pytest.raises(AuditError, match=message):
        log.append("ana", "analyst", "case_view", "tx-1", **kwargs)
    assert log.records().empty


def test_empty_actor_is_refused(log: AuditLog) -> None:
    with pytest.raises(AuditError, match="actor"):
        log.append("  ", "analyst", "case_view", "tx-1")


def test_concurrent_appends_keep_one_unbroken_chain(tmp_path: Path) -> None:
    shared = open_journal(tmp_path)  # two threads share a Journal, two open their own
    logs = [AuditLog(shared), AuditLog(shared),
            AuditLog(open_journal(tmp_path)), AuditLog(open_journal(tmp_path))]
    stored: list[int] = []
    failures: list[AuditError] = []

    def work(log: AuditLog, who: str) -> None:
        for i in range(25):
            try:
                stored.append(log.append(who, "analyst", "case_view", f"tx-{i}").seq)
            except AuditError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=work, args=(lg, f"u{n}")) for n, lg in enumerate(logs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(stored) == list(range(1, 101))
    assert logs[0].verify() == VerifyResult(
        True, 100, None, "100 records verified", logs[0].records(limit=1)["hash"].iloc[0], 100
    )


def test_ensure_audit_table_is_idempotent(journal: Journal, con: sqlite3.Connection) -> None:
    ensure_audit_table(journal)
    ensure_audit_table(journal)
    cols = [r[1] for r in con.execute("PRAGMA table_info(audit_log)").fetchall()]
    assert cols == [
        "seq",
        "ts",
        "actor",
        "role",
        "action",
        "target",
        "details",
        "outcome",
        "prev_hash",
        "hash",
    ]
