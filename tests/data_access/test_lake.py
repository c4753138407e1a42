"""The lake: injective keys, refused files, atomic and idempotent writes, live readers, S3."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from data_access.lake import model_from_key, model_key, open_lake, shap_view
from data_access.lake_store import LakeUnavailable, open_store
from data_access.warehouse import import_frames, open_reader
from data_access.workspace import Workspace
from explainers.errors import ValidationError
from jobs import demo_world


def _count(con, table: str) -> int:
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
@settings(max_examples=200, deadline=None)
def test_model_keys_are_injective_and_reversible(a: str, b: str):
    assert model_from_key(model_key(a)) == a
    assert (model_key(a) == model_key(b)) == (a == b)


def test_names_that_normalise_alike_get_their_own_views():
    ids = ["fraud-xgb@1", "fraud_xgb@1", "Fraud_XGB@1", "fraud.xgb@1"]
    assert len({shap_view(i) for i in ids}) == len(ids)
    assert len({model_key(i).lower() for i in ids}) == len(ids)  # case-insensitive disks too


def _new_day(rows: int = 1_500, prefix: str = "L") -> pd.DataFrame:
    world = demo_world.generate_world(rows=rows, seed=21)
    txns = world.transactions.assign(transaction_id=prefix + world.transactions["transaction_id"])
    txns["event_time"] = pd.Timestamp("2026-11-25 10:00", tz="UTC") + pd.to_timedelta(
        range(len(txns)), unit="s")
    return txns


def test_new_data_reaches_an_open_reader_without_a_restart(workspace_copy: Path):
    lake = Workspace(workspace_copy).lake()
    before, version = _count(lake.con, "transactions"), lake.version
    writer = Workspace(workspace_copy).lake()
    result = import_frames(writer, _new_day())
    assert result.transactions_added == 1_500
    assert _count(lake.con, "transactions") == before  # the views still hold the old files
    assert lake.refresh(force=True)
    assert lake.version != version
    assert _count(lake.con, "transactions") == before + 1_500
    day = workspace_copy / "lake" / "transactions" / "date=2026-11-25"
    assert len(list(day.glob("*.parquet"))) == 1


def test_a_followed_lake_picks_up_new_files_without_a_request_listing_it(workspace_copy: Path):
    lake = Workspace(workspace_copy).lake()
    before, version = _count(lake.con, "transactions"), lake.version
    thread = lake.follow(every_s=0.2)
    import_frames(Workspace(workspace_copy).lake(), _new_day(rows=700, prefix="F"))
    deadline = time.monotonic() + 20
    while lake.version == version and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lake.version != version  # nobody called refresh(): the follower did
    assert _count(lake.con, "transactions") == before + 700
    assert lake.listing_age() < 5
    lake.refresh_if_stale()  # a request on a fresh listing lists nothing itself
    lake.close()
    thread.join(5)
    assert not thread.is_alive()


def test_reimporting_the_same_file_adds_nothing_and_writes_nothing(workspace_copy: Path):
    lake = Workspace(workspace_copy).lake()
    txns = _new_day(500)
    import_frames(lake, txns)
    files = sorted(p.name for p in (workspace_copy / "lake").rglob("*.parquet"))
    again = import_frames(lake, txns)
    assert (again.transactions_added, again.transactions_skipped) == (0, 500)
    assert sorted(p.name for p in (workspace_copy / "lake").rglob("*.parquet")) == files


def test_a_file_with_a_wrong_schema_is_refused_by_name_and_the_rest_serve(workspace_copy: Path):
    lake = Workspace(workspace_copy).lake()
    before = _count(lake.con, "transactions")
    bad = workspace_copy / "lake" / "transactions" / "date=2026-11-26" / "rogue.parquet"
    bad.parent.mkdir(parents=True)
    pq.write_table(pa.table({"transaction_id": ["x1"], "event_time": [1]}), bad)
    garbage = bad.with_name("garbage.parquet")
    garbage.write_bytes(b"PAR1 not really parquet")
    lake.refresh(force=True)
    refused = dict(lake.snapshot.refused)
    assert "account_id" in refused["transactions/date=2026-11-26/rogue.parquet"]
    assert "not a readable Parquet file" in refused["transactions/date=2026-11-26/garbage.parquet"]
    assert _count(lake.con, "transactions") == before


def test_half_written_files_are_never_seen(workspace_copy: Path):
    day = workspace_copy / "lake" / "transactions" / "date=2026-11-27"
    day.mkdir(parents=True)
    (day / ".part-1.parquet.1234.tmp").write_bytes(b"PAR1 half")
    lake = Workspace(workspace_copy).lake()
    assert lake.snapshot.refused == ()
    assert all(".tmp" not in f.path for f in lake.files("transactions"))


_WRITER = textwrap.dedent("""
    import sys
    import pandas as pd
    from data_access.warehouse import import_frames
    from data_access.workspace import Workspace
    from jobs import demo_world
    world = demo_world.generate_world(rows=int(sys.argv[2]), seed=33)
    txns = world.transactions.assign(transaction_id="K" + world.transactions["transaction_id"])
    print("go", flush=True)
    import_frames(Workspace(sys.argv[1]).lake(), txns)
    print("done", flush=True)
""")


def test_a_writer_killed_mid_import_leaves_nothing_partial_and_the_rerun_completes(
        workspace_copy: Path):
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    before = _count(Workspace(workspace_copy).reader(), "transactions")
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(workspace_copy), "60000"],
                            stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lake = Workspace(workspace_copy).lake()
    assert lake.snapshot.refused == ()  # every visible file is whole and readable
    partial = _count(lake.con, "transactions") - before
    per_day = lake.con.execute(
        "SELECT count(*) FROM transactions WHERE transaction_id LIKE 'K%' "
        "GROUP BY CAST(event_time AS DATE)").fetchall()
    assert sum(n for (n,) in per_day) == partial
    done = subprocess.run([sys.executable, "-c", _WRITER, str(workspace_copy), "60000"],
                          capture_output=True, text=True, env=env, check=True)
    assert "done" in done.stdout
    lake.refresh(force=True)
    n, distinct = lake.con.execute("SELECT count(*), count(DISTINCT transaction_id) FROM "
                                   "transactions WHERE transaction_id LIKE 'K%'").fetchall()[0]
    assert n == distinct == 60_000


def test_two_writers_on_the_same_rows_never_duplicate_them(workspace_copy: Path):
    env = {**os.environ, "PYTHONPATH": str(Path.cwd())}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(workspace_copy), "3000"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(2)]
    for p in procs:
        p.communicate(timeout=300)
        assert p.returncode == 0
    con = Workspace(workspace_copy).reader()
    n, distinct = con.execute("SELECT count(*), count(DISTINCT transaction_id) FROM "
                              "transactions WHERE transaction_id LIKE 'K%'").fetchall()[0]
    assert n == distinct == 3_000


def test_bad_imports_give_one_line_naming_file_column_and_row(workspace_copy: Path):
    lake = Workspace(workspace_copy).lake()
    txns = _new_day(50)
    cases = {
        "event_time": txns.assign(event_time=["2026-11-01"] * 49 + ["not a time"]),
        "notes": txns.assign(notes=["ok"] * 49 + ["x" * 100_000]),
        "nested": txns.assign(nested=[{"a": 1}] * 50),
    }
    files = sorted(p.name for p in (workspace_copy / "lake").rglob("*.parquet"))
    for column, frame in cases.items():
        with pytest.raises(ValidationError) as info:
            import_frames(lake, frame, source="day.csv")
        message = str(info.value)
        assert message.startswith("day.csv: column") and column in message, message
        if column != "nested":
            assert "row 50" in message
        assert "\n" not in message
    assert sorted(p.name for p in (workspace_copy / "lake").rglob("*.parquet")) == files


def test_a_missing_lake_root_is_named_and_not_created(tmp_path: Path):
    (tmp_path / "ws").mkdir()
    with pytest.raises(Exception, match="No lake at"):
        open_reader(tmp_path / "ws")
    assert list((tmp_path / "ws").iterdir()) == []


def test_a_lake_on_s3_serves_the_same_queries(moto_endpoint: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch):
    boto3.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="lake-test")
    monkeypatch.setenv("FRAUDLENS_LAKE", "s3://lake-test/prod")
    monkeypatch.setenv("FRAUDLENS_LAKE_ENDPOINT_URL", moto_endpoint)
    txns = _new_day(800)
    store = open_store(tmp_path)
    assert not store.is_local
    lake = open_lake(tmp_path, create=True)
    assert import_frames(lake, txns).transactions_added == 800
    reader = open_lake(tmp_path)
    assert _count(reader.con, "transactions") == 800
    cur = reader.cursor()  # another thread's cursor sees the same views
    hits = cur.execute("SELECT count(*) FROM transactions WHERE account_id = ?",
                       [str(txns["account_id"].iloc[0])]).fetchall()[0][0]
    assert hits == int((txns["account_id"] == txns["account_id"].iloc[0]).sum())
    assert import_frames(lake, txns).transactions_added == 0


def test_an_unreachable_s3_lake_says_lake_unavailable(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, aws_env):
    monkeypatch.setenv("FRAUDLENS_LAKE", "s3://lake-test/prod")
    monkeypatch.setenv("FRAUDLENS_LAKE_ENDPOINT_URL", "http://127.0.0.1:9")
    started = time.monotonic()
    with pytest.raises(LakeUnavailable, match="lake unavailable"):
        open_lake(tmp_path)
    assert time.monotonic() - started < 20
