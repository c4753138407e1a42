"""The audit chain anchored outside the journal (SECURITY.md 23): signed checkpoints, and
`fraudlens audit verify` exiting 3 when the newest records, all records or the whole journal
were removed or replaced, or a checkpoint was forged."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from data_access.audit import AuditLog
from data_access.audit_checkpoints import AuditKeyError
from data_access.journal import Journal, JournalMissingError, open_journal

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
KEY = "k" * 40


@pytest.fixture(autouse=True)
def _clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No key, journal URL or secrets file from the machine running the tests."""
    for name in ("FRAUDLENS_AUDIT_KEY", "FRAUDLENS_JOURNAL_URL", "FRAUDLENS_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def _workspace(tmp_path: Path, name: str = "ws", records: int = 3, actor: str = "ana",
               url: str | None = None) -> Path:
    ws = tmp_path / name
    ws.mkdir()
    log = AuditLog(open_journal(ws, url=url))
    for i in range(records):
        log.append(actor, "analyst", "case_view", f"tx-{i}", now=T0 + timedelta(seconds=i))
    return ws


def _verify(ws: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from app.cli.main import main

    code = main(["--workspace", str(ws), "audit", "verify"])
    out = capsys.readouterr()
    return code, (out.out + out.err).strip()


def _raw(ws: Path, sql: str) -> None:
    with sqlite3.connect(ws / "journal.sqlite", isolation_level=None) as con:
        con.execute(sql)
    con.close()


def test_intact_journal_matches_its_newest_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _workspace(tmp_path)
    assert _verify(ws, capsys) == (0, "audit trail intact: 3 records, hash chain verified; "
                                      "matches the signed checkpoint of 3 records")


def test_checkpoint_lines_are_signed_head_and_count(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    key_file = ws / ".audit-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes().strip()
    assert len(key) == 64
    heads = AuditLog(open_journal(ws)).records()["hash"].tolist()[::-1]
    lines = (ws / "audit-checkpoints.jsonl").read_text().splitlines()
    assert len(lines) == 3
    for n, (line, head) in enumerate(zip(lines, heads, strict=True), start=1):
        doc = json.loads(line)
        assert list(doc) == ["count", "head", "mac", "seq", "ts", "v"]
        assert (doc["seq"], doc["count"], doc["head"], doc["v"]) == (n, n, head, 1)
        body = json.dumps({k: v for k, v in doc.items() if k != "mac"}, sort_keys=True,
                          separators=(",", ":"))
        assert doc["mac"] == hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
        assert line == json.dumps(doc, sort_keys=True, separators=(",", ":"))


def test_deleted_newest_records_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    ws = _workspace(tmp_path, records=4)
    _raw(ws, "DELETE FROM audit_log WHERE seq >= 3")
    code, text = _verify(ws, capsys)
    assert code == 3
    assert "audit trail broken at record 3: the newest audit records were deleted: the journal " \
           "holds 2 records but the signed checkpoint of" in text
    assert "anchors 4 (records 3-4 are missing)" in text


def test_all_records_deleted_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _workspace(tmp_path)
    _raw(ws, "DELETE FROM audit_log")
    code, text = _verify(ws, capsys)
    assert code == 3
    assert "at record 1: all audit records were deleted: the journal is empty" in text


def test_journal_replaced_by_another_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    ws = _workspace(tmp_path)
    other = _workspace(tmp_path, "other", records=5, actor="mallory")  # longer, valid chain
    shutil.copyfile(other / "journal.sqlite", ws / "journal.sqlite")
    assert AuditLog(open_journal(other)).verify().ok
    code, text = _verify(ws, capsys)
    assert code == 3
    assert "at record 1: record 1 differs from the signed checkpoint on line 1" in text
    assert "the journal was replaced or rewritten" in text


def test_appends_to_a_foreign_journal_are_caught_by_older_checkpoints(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    other = _workspace(tmp_path, "other", records=2, actor="mallory")
    shutil.copyfile(other / "journal.sqlite", ws / "journal.sqlite")
    log = AuditLog(open_journal(ws))  # the app keeps going on the swapped-in journal
    for i in range(3):
        log.append("ana", "analyst", "case_view", f"tx-{i}")
    result = log.verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "differs from the signed checkpoint on line 1" in result.problem
    assert log.journal.checkpoints.scan().problems == (
        "checkpoint lines 3 and 4 of audit-checkpoints.jsonl disagree about record 3: the "
        "journal was replaced at some point",)


def test_journal_replaced_by_a_fresh_empty_one_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _workspace(tmp_path)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    open_journal(fresh)  # a new journal: every table, no records
    shutil.copyfile(fresh / "journal.sqlite", ws / "journal.sqlite")
    code, text = _verify(ws, capsys)
    assert (code, "all audit records were deleted" in text) == (3, True)
    with pytest.raises(JournalMissingError, match="will not start a new chain"):
        AuditLog(open_journal(ws)).append("ana", "analyst", "case_view", "tx-9")
    (ws / "journal.sqlite").write_bytes(b"")  # an empty file: not even the tables
    code, text = _verify(ws, capsys)
    assert code == 3
    assert "has no audit trail" in text and "replaced or emptied" in text


def test_forged_checkpoint_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _workspace(tmp_path)
    path = ws / "audit-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    forged = json.loads(lines[-1]) | {"seq": 9, "count": 9}  # claims more, keeps its old mac
    path.write_text("\n".join([*lines, json.dumps(forged, sort_keys=True)]) + "\n")
    code, text = _verify(ws, capsys)
    assert code == 3
    assert text == ("fraudlens: error: audit trail broken: checkpoint line 4 of "
                    "audit-checkpoints.jsonl has an invalid signature: the checkpoint was forged "
                    "or altered (or signed with another key)")


def test_tail_deleted_and_checkpoints_rewritten_without_the_key_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = _workspace(tmp_path)
    _raw(ws, "DELETE FROM audit_log WHERE seq = 3")
    path = ws / "audit-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    fake = json.loads(lines[1]) | {"ts": "2030-01-01T00:00:00.000000+00:00"}
    fake["mac"] = hmac.new(b"guessed" * 6, b"x", hashlib.sha256).hexdigest()
    path.write_text("\n".join([*lines[:2], json.dumps(fake)]) + "\n")
    code, text = _verify(ws, capsys)
    assert code == 3 and "checkpoint line 3" in text and "invalid signature" in text


def test_edited_record_still_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _workspace(tmp_path)
    _raw(ws, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    code, text = _verify(ws, capsys)
    assert code == 3
    assert text == ("fraudlens: error: audit trail broken at record 2: record 2 was edited "
                    "(hash does not match content)")


def test_deleted_journal_is_not_recreated(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    ws = _workspace(tmp_path)
    held = open_journal(ws)  # e.g. the app, open while the file disappears
    (ws / "journal.sqlite").unlink()
    with pytest.raises(JournalMissingError, match=r"journal\.sqlite is missing"):
        open_journal(ws)
    with pytest.raises(JournalMissingError, match="missing"):
        AuditLog(held).append("ana", "analyst", "case_view", "tx-9")
    assert not (ws / "journal.sqlite").exists()
    code, text = _verify(ws, capsys)
    assert code == 3
    assert "journal.sqlite is missing" in text and "will not create an empty journal" in text
    assert not (ws / "journal.sqlite").exists()


def test_env_key_signs_and_a_different_key_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAUDLENS_AUDIT_KEY", KEY)
    ws = _workspace(tmp_path)
    assert not (ws / ".audit-key").exists()
    assert _verify(ws, capsys)[0] == 0
    monkeypatch.setenv("FRAUDLENS_AUDIT_KEY", "z" * 40)
    code, text = _verify(ws, capsys)
    assert code == 3 and "checkpoint line 1" in text and "(and 2 more)" in text
    monkeypatch.setenv("FRAUDLENS_AUDIT_KEY", "short")
    with pytest.raises(AuditKeyError, match="shorter than 32 bytes"):
        AuditLog(open_journal(ws)).append("ana", "analyst", "case_view", "tx-1")


def test_cli_reads_the_key_from_streamlit_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    AuditLog(open_journal(ws, audit_key=KEY)).append("ana", "analyst", "case_view", "tx-1")
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(f'[audit]\nhmac_key = "{KEY}"\n')
    assert _verify(ws, capsys)[0] == 0
    assert not (ws / ".audit-key").exists()


def test_key_file_problems_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    ws = _workspace(tmp_path)
    key_file = ws / ".audit-key"
    os.chmod(key_file, 0o644)
    with pytest.raises(AuditKeyError, match="readable by other users"):
        AuditLog(open_journal(ws)).append("ana", "analyst", "case_view", "tx-1")
    key_file.unlink()  # lost: a new key would make every checkpoint look forged
    with pytest.raises(AuditKeyError, match="key is missing"):
        AuditLog(open_journal(ws)).append("ana", "analyst", "case_view", "tx-1")
    assert not key_file.exists()
    code, text = _verify(ws, capsys)
    assert code == 3 and "checkpoint key is missing" in text


def test_postgres_tail_deletion_exit_3(
    tmp_path: Path, fresh_postgres_url: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path, url=fresh_postgres_url)
    monkeypatch.setenv("FRAUDLENS_JOURNAL_URL", fresh_postgres_url)
    assert _verify(ws, capsys)[0] == 0
    with psycopg.connect(fresh_postgres_url, autocommit=True) as con:
        con.execute("DELETE FROM audit_log WHERE seq = 3")
    code, text = _verify(ws, capsys)
    assert code == 3 and "the newest audit records were deleted" in text
    with psycopg.connect(fresh_postgres_url, autocommit=True) as con:
        con.execute("DROP TABLE audit_log")
    with pytest.raises(JournalMissingError, match="has no audit trail"):
        open_journal(ws)
    code, text = _verify(ws, capsys)
    assert code == 3 and "replaced or emptied" in text


def test_journal_object_is_what_the_shell_caches(tmp_path: Path) -> None:
    """One Journal serves many threads: no connection is held between operations."""
    import threading

    ws = _workspace(tmp_path, records=0)
    journal: Journal = open_journal(ws)
    log = AuditLog(journal)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(10):
                log.append(f"u{n}", "analyst", "case_view", f"tx-{i}")
                log.records(limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (log.verify().checked, log.verify().anchored) == (40, 40)
