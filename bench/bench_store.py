"""Cohort aggregation over the SHAP store (1M rows): DuckDB SQL against an in-memory baseline.

Target: mean |SHAP| by feature over 1M stored rows filtered by date <= 300 ms. The baseline,
measured in the same run, is numpy over the same rows already loaded in memory.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench.workspace_1m import ROWS, ensure_workspace
from data_access import shap_store
from data_access.shap_store import Cohort
from data_access.workspace import Workspace

RESULTS = Path(__file__).resolve().parent / "results" / "store.json"
REPEATS = 7


def _median_ms(fn) -> float:
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run() -> dict:
    ws = Workspace(ensure_workspace())
    con = ws.reader()
    out: dict = {"rows": ROWS, "repeats": REPEATS, "models": {}}
    try:
        lo, hi = con.execute("SELECT min(event_time), max(event_time) FROM transactions"
                             ).fetchall()[0]
        span = hi - lo
        cohorts = {"all": Cohort(), "last_30_days": Cohort(since=hi - span / 2),
                   "last_7_days": Cohort(since=hi - span * 7 / 60),
                   "score_ge_0.5": Cohort(min_score=0.5)}
        for manifest in ws.registry.list():
            segs = manifest.feature_schema.categorical
            res = {}
            for name, cohort in cohorts.items():
                res[f"sql_{name}_ms"] = _median_ms(
                    lambda c=cohort, m=manifest.key, s=segs: shap_store.summary(con, m, c, s))
            frame = shap_store.values(con, manifest.key)
            arr = frame.iloc[:, 3:].to_numpy(np.float64)
            res["numpy_in_memory_all_ms"] = _median_ms(
                lambda a=arr: (np.abs(a).mean(axis=0), a.mean(axis=0)))
            res["ratio_sql_all_vs_numpy"] = res["sql_all_ms"] / res["numpy_in_memory_all_ms"]
            res["target_ms"] = 300.0
            res["meets_target"] = res["sql_last_30_days_ms"] <= 300.0
            out["models"][manifest.key] = res
    finally:
        con.close()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, sort_keys=True))
    print(f"\nSHAP store aggregation over {ROWS:,} rows (median of {REPEATS}, ms)")
    for model, res in out["models"].items():
        print(f"  {model:<20} all {res['sql_all_ms']:7.1f}  30d {res['sql_last_30_days_ms']:7.1f}"
              f"  7d {res['sql_last_7_days_ms']:7.1f}  score>=0.5 {res['sql_score_ge_0.5_ms']:7.1f}"
              f"  numpy-in-memory {res['numpy_in_memory_all_ms']:6.1f}"
              f"  (x{res['ratio_sql_all_vs_numpy']:.1f})")
    return out


if __name__ == "__main__":
    run()
