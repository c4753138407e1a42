"""The app's warehouse connection is a sandbox (SECURITY 10); bad warehouses fail clearly."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from data_access.warehouse import open_reader
from data_access.workspace import Workspace
from explainers.errors import WarehouseError


@pytest.fixture
def app_reader(workspace_copy: Path):
    """The connection the app uses: `Workspace.reader()` (what `app.shell.resources.reader`
    caches)."""
    con = Workspace.at(workspace_copy).reader()
    yield con
    con.close()


def test_reading_local_files_is_refused(app_reader):
    with pytest.raises(duckdb.Error, match=r"(?i)external access|disabled"):
        app_reader.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error):
        app_reader.execute("SELECT * FROM read_text('/etc/hostname')").fetchall()


def test_writing_files_and_tables_is_refused(app_reader, tmp_path: Path):
    out = tmp_path / "dump.csv"
    with pytest.raises(duckdb.Error):
        app_reader.execute(f"COPY (SELECT 1) TO '{out}'")
    with pytest.raises(duckdb.Error, match=r"(?i)view|base table"):
        app_reader.execute("DELETE FROM transactions")
    assert not out.exists()


def test_configuration_cannot_be_unlocked(app_reader):
    for stmt in ("SET enable_external_access = true", "SET lock_configuration = false",
                 "SET python_enable_replacements = true"):
        with pytest.raises(duckdb.Error, match=r"(?i)lock|configuration"):
            app_reader.execute(stmt)
    with pytest.raises(duckdb.Error):
        app_reader.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()


def test_extensions_cannot_be_loaded(app_reader):
    with pytest.raises(duckdb.Error):
        app_reader.execute("INSTALL httpfs")
    with pytest.raises(duckdb.Error):
        app_reader.execute("LOAD httpfs")


def test_python_variables_do_not_resolve_as_tables(app_reader):
    df = pd.DataFrame({"secret": ["from python"]})  # a local the SQL must not see
    assert len(df) == 1
    with pytest.raises(duckdb.CatalogException, match="df"):
        app_reader.execute("SELECT * FROM df").fetchall()


def test_injection_text_is_only_a_parameter_value(app_reader):
    cur = app_reader.cursor()
    total = cur.execute("SELECT count(*) FROM transactions").fetchone()[0]
    assert total > 0
    for evil in ("' OR 1=1--", "x' OR '1'='1", "1; DROP TABLE transactions; --"):
        hits = cur.execute("SELECT count(*) FROM transactions WHERE account_id = ?",
                           [evil]).fetchone()[0]
        assert hits == 0
    assert cur.execute("SELECT count(*) FROM transactions").fetchone()[0] == total


def test_missing_workspace_or_lake_is_an_error_and_nothing_is_created(tmp_path: Path):
    ws = tmp_path / "ws"
    with pytest.raises(WarehouseError, match="does not exist"):
        open_reader(ws)
    assert not ws.exists()
    ws.mkdir()
    with pytest.raises(WarehouseError, match="fraudlens demo"):
        Workspace.at(ws).reader()
    assert list(ws.iterdir()) == []
