"""The app reads the lake only through `resources.lake_cursor()`: a cursor of its own per use,
closed afterwards, so no DuckDB connection is shared across session threads."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from app.shell import resources

ROOT = Path(__file__).resolve().parents[3]


def test_the_shared_connection_is_never_handed_out() -> None:
    assert not hasattr(resources, "reader")
    offenders = []
    sources = [*ROOT.glob("app_pages/*.py"), *ROOT.glob("app/shell/*.py"),
               ROOT / "streamlit_app.py"]
    for path in sources:
        text = path.read_text("utf-8")
        if path.name == "resources.py":  # the one place: lake_cursor takes the cursor
            text = text.replace("cursor_for(lake.con)", "")
        if re.search(r"\breader\(\)|\.con\b", text):
            offenders.append(path.name)
    assert offenders == []


def test_every_use_gets_its_own_cursor_and_threads_do_not_collide(
        demo_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    shutil.copytree(demo_workspace, ws)
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(ws))
    with resources.lake_cursor() as first, resources.lake_cursor() as second:
        assert first is not second
    with pytest.raises(duckdb.Error):
        first.execute("SELECT 1")  # closed once the block ends

    def count(_: int) -> int:
        with resources.lake_cursor() as cur:
            return int(cur.execute("SELECT count(*) FROM scores").fetchone()[0])

    with ThreadPoolExecutor(8) as pool:
        counts = set(pool.map(count, range(64)))
    assert len(counts) == 1 and counts.pop() > 0
