"""Audit trail: append-only, hash-chained records in DuckDB that detect tampering."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from data_access.audit import (
    GENESIS_HASH,
    AuditLog,
    AuditRecord,
    VerifyResult,
    ensure_audit_table,
    record_hash,
)
from explainers.errors import AuditError

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    yield connection
    connection.close()


@pytest.fixture
def log(con: duckdb.DuckDBPyConnection) -> AuditLog:
    return AuditLog(con)


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
    assert log.verify() == VerifyResult(True, 3, None, "3 records verified", recs[2].hash)


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
    con: duckdb.DuckDBPyConnection, log: AuditLog
) -> None:
    _three(log)
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 2
    assert result.checked == 1
    assert "edited" in result.problem


def test_edit_with_recomputed_hash_breaks_the_next_link(
    con: duckdb.DuckDBPyConnection, log: AuditLog
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
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "prev_hash" in result.problem


def test_deleted_middle_record_is_detected(con: duckdb.DuckDBPyConnection, log: AuditLog) -> None:
    _three(log)
    con.execute("DELETE FROM audit_log WHERE seq = 2")
    result = log.verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert "expected seq 2" in result.problem


def test_deleted_first_record_is_detected(con: duckdb.DuckDBPyConnection, log: AuditLog) -> None:
    _three(log)
    con.execute("DELETE FROM audit_log WHERE seq = 1")
    assert log.verify().first_bad_seq == 2


def test_deleted_and_renumbered_record_is_detected(
    con: duckdb.DuckDBPyConnection, log: AuditLog
) -> None:
    _three(log)
    con.execute("DELETE FROM audit_log WHERE seq = 2")
    con.execute("UPDATE audit_log SET seq = 2 WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_swapped_records_are_detected(con: duckdb.DuckDBPyConnection, log: AuditLog) -> None:
    _three(log)
    con.execute("UPDATE audit_log SET seq = 99 WHERE seq = 1")
    con.execute("UPDATE audit_log SET seq = 1 WHERE seq = 2")
    con.execute("UPDATE audit_log SET seq = 2 WHERE seq = 99")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_edited_timestamp_is_detected(con: duckdb.DuckDBPyConnection, log: AuditLog) -> None:
    _three(log)
    con.execute("UPDATE audit_log SET ts = ts + INTERVAL 1 MICROSECOND WHERE seq = 3")
    assert log.verify().first_bad_seq == 3


def test_append_continues_the_chain_after_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "w.duckdb")
    with duckdb.connect(path) as first:
        last = _three(AuditLog(first))[-1]
    with duckdb.connect(path) as second:
        log = AuditLog(second)
        rec = log.append("ana", "analyst", "annotation", "F-1")
        assert (rec.seq, rec.prev_hash) == (4, last.hash)
        assert log.verify().ok


def test_append_on_closed_connection_raises_audit_error(
    con: duckdb.DuckDBPyConnection, log: AuditLog
) -> None:
    con.close()
    with pytest.raises(AuditError, match="unavailable"):
        log.append("ana", "analyst", "case_view", "tx-1")


def test_failed_insert_rolls_back_and_raises_audit_error(
    con: duckdb.DuckDBPyConnection, log: AuditLog
) -> None:
    _three(log)
    con.execute("ALTER TABLE audit_log ADD COLUMN must_fill VARCHAR NOT NULL DEFAULT 'x'")
    con.execute("ALTER TABLE audit_log ALTER COLUMN must_fill DROP DEFAULT")
    with pytest.raises(AuditError, match="Could not write the audit record"):
        log.append("ana", "analyst", "case_view", "tx-9")
    assert con.execute("SELECT count(*) FROM audit_log").fetchone() == (3,)
    # The connection is usable again: nothing was left half-open.
    assert con.execute("SELECT max(seq) FROM audit_log").fetchone() == (3,)


def test_caller_transaction_does_not_block_or_swallow_audit(
    con: duckdb.DuckDBPyConnection, log: AuditLog
) -> None:
    con.execute("BEGIN TRANSACTION")
    log.append("ana", "analyst", "case_view", "tx-1")
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM audit_log").fetchone() == (1,)


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


def test_timestamps_are_stored_in_utc(con: duckdb.DuckDBPyConnection, log: AuditLog) -> None:
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
    con.execute("SET TimeZone = 'America/New_York'")
    stored = log.records()["ts"].iloc[0]
    assert str(stored.tz) == "UTC"
    assert stored.to_pydatetime() == rec.ts
    assert log.verify().ok  # the session time zone does not change the hash input


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


def test_concurrent_appends_keep_one_unbroken_chain(con: duckdb.DuckDBPyConnection) -> None:
    logs = [AuditLog(con) for _ in range(4)]  # separate instances and cursors, one database
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
        True, 100, None, "100 records verified", logs[0].records(limit=1)["hash"].iloc[0]
    )


def test_ensure_audit_table_is_idempotent(con: duckdb.DuckDBPyConnection) -> None:
    ensure_audit_table(con)
    ensure_audit_table(con)
    cols = [r[0] for r in con.execute("DESCRIBE audit_log").fetchall()]
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
