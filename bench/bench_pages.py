"""Script-run time of every page on the 1M-transaction workspace, cold and warm, and the time
to open a case by deep link. Targets: a page <= 1 s cold and <= 300 ms warm; a case <= 200 ms.

Cold = the first run after every Streamlit cache was cleared; warm = the next rerun of the same
session. The baseline measured in the same run is an empty Streamlit script through the same
AppTest harness, so the ratios show what the pages add over Streamlit's own overhead.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.workspace_1m import ROWS, ensure_workspace

RESULTS = Path(__file__).resolve().parent / "results" / "pages.json"
ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
PAGES = ("app_pages/home.py", "app_pages/case_explorer.py", "app_pages/global_patterns.py",
         "app_pages/model_comparison.py", "app_pages/pattern_review.py", "app_pages/audit_trail.py")
WARM_REPEATS = 5


def _app(query: dict[str, str] | None = None):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from app.shell.auth import TEST_PRINCIPAL_KEY, Principal

    at = AppTest.from_file(ENTRY, default_timeout=120)
    at.session_state[TEST_PRINCIPAL_KEY] = Principal(subject="bench", email="bench@example.com",
                                                     name="Bench", role="admin")
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at, st


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def _page_times(page: str, query: dict[str, str] | None = None) -> dict[str, float]:
    at, st = _app(query)
    st.cache_data.clear()
    st.cache_resource.clear()
    at.run()  # the router's own first run (default page) is not the page under test
    at.switch_page(page)
    cold = _timed(at.run)
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].message}")
    warm = statistics.median(_timed(at.run) for _ in range(WARM_REPEATS))
    return {"cold_ms": cold, "warm_ms": warm}


def _baseline() -> float:
    from streamlit.testing.v1 import AppTest

    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write("import streamlit as st\nst.title('empty')\n")
    at = AppTest.from_file(fh.name)
    at.run()
    out = statistics.median(_timed(at.run) for _ in range(WARM_REPEATS))
    os.unlink(fh.name)
    return out


def run() -> dict:
    ws = ensure_workspace()
    os.environ.update({"FRAUDLENS_WORKSPACE": str(ws), "FRAUDLENS_TESTING": "1"})
    os.environ.pop("FRAUDLENS_DEMO_MODE", None)
    from data_access.workspace import Workspace

    con = Workspace(ws).reader()
    top = con.execute("SELECT transaction_id FROM scores WHERE model_id = 'fraud_xgb@1' "
                      "ORDER BY score DESC LIMIT 1").fetchall()[0][0]
    con.close()
    baseline = _baseline()
    out: dict = {"rows": ROWS, "baseline_empty_script_ms": baseline, "pages": {}}
    for page in PAGES:
        if not (Path(ENTRY).parent / page).exists():
            continue
        out["pages"][page] = _page_times(page)
    case = _page_times("app_pages/case_explorer.py", {"txn": top, "model": "fraud_xgb"})
    out["open_case_by_deep_link"] = case
    for res in [*out["pages"].values(), case]:
        res["warm_vs_baseline"] = res["warm_ms"] / baseline
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, sort_keys=True))
    print(f"\nPage script runs on {ROWS:,} transactions (ms; empty script {baseline:.1f} ms)")
    for page, res in out["pages"].items():
        print(f"  {page:<28} cold {res['cold_ms']:7.0f}  warm {res['warm_ms']:7.0f}"
              f"  (x{res['warm_vs_baseline']:.1f} of an empty script)")
    print(f"  {'open a case by deep link':<28} cold {case['cold_ms']:7.0f}"
          f"  warm {case['warm_ms']:7.0f}")
    return out


if __name__ == "__main__":
    run()
