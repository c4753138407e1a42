"""The lake on the 1M-row bench workspace: lookups, account history, windowed aggregates, and
how long a new day of transactions takes to show in an open reader while it serves.

Baseline, measured in the same run: the same query on an in-memory DuckDB table holding the
same rows (what a single-file warehouse gave), so the ratio is the lake's overhead.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import time
from pathlib import Path

import pandas as pd

from bench.workspace_1m import ROWS, ensure_workspace
from data_access.warehouse import import_frames
from data_access.workspace import Workspace
from jobs import demo_world
from jobs.explain import fill_store
from jobs.scoring import score_transactions

RESULTS = Path(__file__).resolve().parent / "results" / "lake.json"
REPEATS = 7
DAY_ROWS = int(os.environ.get("FRAUDLENS_BENCH_DAY_ROWS", "100000"))


def _median_ms(fn) -> float:
    fn()  # warm
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _queries(txn: str, account: str, since) -> dict[str, tuple[str, list]]:
    return {
        "lookup_by_id": ("SELECT * FROM transactions WHERE transaction_id = ?", [txn]),
        "account_history": ("SELECT * FROM transactions WHERE account_id = ? "
                            "ORDER BY event_time", [account]),
        "seven_day_aggregate": ("SELECT count(*), avg(amount_usd) FROM transactions "
                                "WHERE event_time >= ?", [since]),
        "scores_for_case": ("SELECT model_id, score FROM scores WHERE transaction_id = ?",
                            [txn]),
    }


def _query_times(ws: Workspace) -> dict:
    lake = ws.lake()
    con = lake.cursor()
    txn, account = con.execute("SELECT transaction_id, account_id FROM transactions "
                               "ORDER BY transaction_id DESC LIMIT 1").fetchall()[0]
    hi = con.execute("SELECT max(event_time) FROM transactions").fetchall()[0][0]
    since = pd.Timestamp(hi) - pd.Timedelta(days=7)
    queries = _queries(txn, account, since)
    mem = lake.con.cursor()
    mem.execute("CREATE TEMP TABLE mem_txn AS SELECT * FROM transactions")
    mem.execute("CREATE TEMP TABLE mem_scores AS SELECT * FROM scores")
    out = {}
    for name, (sql, params) in queries.items():
        lake_ms = _median_ms(lambda s=sql, p=params: con.execute(s, p).fetchall())
        mem_sql = sql.replace("FROM transactions", "FROM mem_txn").replace(
            "FROM scores", "FROM mem_scores")
        mem_ms = _median_ms(lambda s=mem_sql, p=params: mem.execute(s, p).fetchall())
        out[name] = {"lake_ms": round(lake_ms, 2), "in_memory_table_ms": round(mem_ms, 2),
                     "ratio": round(lake_ms / mem_ms, 2) if mem_ms else None}
    lake.close()
    return out


def _ingest_until_visible(ws: Workspace) -> dict:
    """Import, score (both models) and explain one new day while a reader is open; time until
    the reader shows the new rows and their SHAP values."""
    reader = ws.lake()
    world = demo_world.generate_world(rows=DAY_ROWS, seed=99)
    txns = world.transactions.assign(transaction_id="B" + world.transactions["transaction_id"])
    txns["event_time"] = pd.Timestamp("2026-11-23 00:00", tz="UTC") + pd.to_timedelta(
        range(len(txns)), unit="ms") * (86_400_000 // max(len(txns), 1))
    writer = ws.lake()
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    import_frames(writer, txns)
    stages["import_s"] = time.perf_counter() - t0
    for manifest in ws.registry.list():
        model = ws.registry.load(manifest)
        t = time.perf_counter()
        score_transactions(writer, model)
        stages[f"score_{model.key}_s"] = time.perf_counter() - t
    xgb = ws.registry.load("fraud_xgb@1")
    t = time.perf_counter()
    fill_store(writer, xgb)
    stages["explain_fraud_xgb@1_s"] = time.perf_counter() - t
    t = time.perf_counter()
    while True:
        reader.refresh()
        n = reader.con.execute("SELECT count(*) FROM transactions WHERE transaction_id LIKE "
                               "'B%'").fetchall()[0][0]
        if n == len(txns):
            break
        time.sleep(0.1)
    stages["reader_sees_it_after_s"] = time.perf_counter() - t
    stages["total_s"] = time.perf_counter() - t0
    return {k: round(v, 2) for k, v in stages.items()} | {"rows": len(txns)}


def run() -> dict:
    path = ensure_workspace()
    work = path.parent / f"{path.name}-ingest"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(path, work)
    try:
        out = {"rows": ROWS, "repeats": REPEATS, "load_avg_1m": os.getloadavg()[0],
               "queries": _query_times(Workspace(path)),
               "ingest_one_day": _ingest_until_visible(Workspace(work)),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, sort_keys=True))
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    run()
