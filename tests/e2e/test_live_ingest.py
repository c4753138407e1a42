"""Ingest while serving: a new day is imported, scored and explained while the browser is on
Case Explorer; the new case opens by deep link within 60 s; exports and audit verify work
meanwhile; a writer killed mid-write publishes nothing partial and its re-run completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import expect

from data_access.workspace import Workspace
from jobs import demo_world

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VISIBLE_WITHIN_S = 60


def _cli(workspace: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FRAUDLENS_WORKSPACE", None)
    return subprocess.run([sys.executable, "-m", "app.cli.main", "--workspace", str(workspace),
                           *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=check, timeout=600)


def _new_day(tmp_path: Path, rows: int, prefix: str) -> tuple[Path, Path, pd.DataFrame]:
    world = demo_world.generate_world(rows=rows, seed=41)
    txns = world.transactions.assign(transaction_id=prefix + world.transactions["transaction_id"])
    txns["event_time"] = pd.Timestamp("2026-11-23 08:00", tz="UTC") + pd.to_timedelta(
        range(len(txns)), unit="s")
    labels = world.labels.assign(transaction_id=prefix + world.labels["transaction_id"])
    t_path, l_path = tmp_path / f"{prefix}-day.parquet", tmp_path / f"{prefix}-labels.csv"
    txns.to_parquet(t_path)
    labels.to_csv(l_path, index=False)
    return t_path, l_path, txns


def test_a_new_day_shows_up_while_the_app_serves(app_server, demo_workspace: Path,
                                                 tmp_path: Path, browser_page, fresh_page,
                                                 screenshot):
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_workspace, workspace)
    base = app_server(workspace, {"FRAUDLENS_DEMO_MODE": "1", "FRAUDLENS_DEMO_ROLE": "admin"})
    browser_page.goto(f"{base}/cases")
    expect(browser_page.get_by_role("heading", name="Case Explorer")).to_be_visible(
        timeout=90_000)

    t_path, l_path, txns = _new_day(tmp_path, 3_000, "LIVE")
    started = time.monotonic()
    _cli(workspace, "import", "transactions", str(t_path), "--labels", str(l_path))
    for model in ("fraud_xgb@1", "fraud_catboost@1"):
        _cli(workspace, "score", "--model", model)
    explain = subprocess.Popen(
        [sys.executable, "-m", "app.cli.main", "--workspace", str(workspace), "explain",
         "--model", "fraud_xgb@1"], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # an export and an audit verify while a job writes: neither waits for a lock
    exported = _cli(workspace, "export", "shap-summary", "--model", "fraud_xgb@1",
                    "--out", str(tmp_path / "summary.csv"), check=False)
    verified = _cli(workspace, "audit", "verify", check=False)
    _, err = explain.communicate(timeout=600)
    assert explain.returncode == 0, err
    assert exported.returncode == 0, exported.stderr
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert (tmp_path / "summary.csv").stat().st_size > 0

    newest = str(txns.sort_values("event_time")["transaction_id"].iloc[-1])
    colleague = fresh_page()
    colleague.goto(f"{base}/cases?txn={newest}&model=fraud_xgb@1")
    expect(colleague.get_by_role("heading", name=f"Case {newest}")).to_be_visible(
        timeout=VISIBLE_WITHIN_S * 1000)
    assert time.monotonic() - started < VISIBLE_WITHIN_S + 600  # jobs + page, on busy cores
    expect(colleague.get_by_text("SHAP values from the SHAP store", exact=False)).to_be_visible()
    screenshot(colleague, "live_ingest_new_case")
    colleague.goto("about:blank")
    browser_page.goto("about:blank")


_SLOW_IMPORT = """
import sys
import pandas as pd
from data_access.warehouse import import_frames
from data_access.workspace import Workspace
frame = pd.read_parquet(sys.argv[2])
print("go", flush=True)
import_frames(Workspace(sys.argv[1]).lake(), frame)
"""


def test_a_writer_killed_mid_write_publishes_nothing_partial(demo_workspace: Path,
                                                             tmp_path: Path):
    workspace = tmp_path / "workspace"
    shutil.copytree(demo_workspace, workspace)
    t_path, _, txns = _new_day(tmp_path, 40_000, "KILL")
    before = Workspace(workspace).reader().execute(
        "SELECT count(*) FROM transactions").fetchall()[0][0]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_IMPORT, str(workspace), str(t_path)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lake = Workspace(workspace).lake()
    assert lake.snapshot.refused == ()
    seen = lake.con.execute("SELECT count(*) FROM transactions").fetchall()[0][0] - before
    assert 0 <= seen <= len(txns)
    assert _cli(workspace, "import", "transactions", str(t_path)).returncode == 0
    lake.refresh(force=True)
    n, distinct = lake.con.execute(
        "SELECT count(*), count(DISTINCT transaction_id) FROM transactions "
        "WHERE transaction_id LIKE 'KILL%'").fetchall()[0]
    assert n == distinct == len(txns)
