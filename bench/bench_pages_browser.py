"""Pages as a user feels them: every page timed in headless Chromium (Debian's), cold and warm,
against a hello-world Streamlit page served and measured in the same run, on the 100k demo
workspace and the 1M bench workspace; the common interactions; the app's RSS with 8 sessions.

Readiness is the rule of `shared/tools/page_times.py`: Streamlit's script state is
`notRunning`, no status widget shows, every Vega chart has drawn, held for 0.8 s; a time is
from navigation (or from the click) to the first moment of that steady state. Cold is the first
visit after a server start: the server is started as `make run` starts it (its warm-up computes
the pages' default views; the ones kept by an earlier run are deleted first), after the
precomputation `fraudlens precompute` does (the step `score` and `explain` end with); warm is
the median of the next visits. Each visit is a fresh tab, as a user opening a link. Also
recorded per visit: when the script run started and ended, the elements and charts drawn,
and the kilobytes the websocket carried.

Writes bench/results/pages_browser.json. Usage: python -m bench.bench_pages_browser
[--rows 100000|1000000 ...] [--skip-interactions].
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "pages_browser.json"
APP = ROOT / "streamlit_app.py"
CACHE = ROOT / "bench" / ".cache"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGES = ("/", "/cases", "/patterns", "/compare", "/review", "/monitoring", "/experiments",
         "/audit")
WARM_VISITS = 3
SESSIONS = 8
HOLD_S = 0.8
LIMIT_S = 240.0

# The hello-world page (title, a 20-row dataframe, one Altair chart) plus one button,
# whose click is the floor for interactions (a rerun that redraws the same elements).
HELLO = """
import altair as alt
import pandas as pd
import streamlit as st

st.title("Hello")
df = pd.DataFrame({"x": range(20), "y": [i * i for i in range(20)]})
st.dataframe(df)
st.altair_chart(alt.Chart(df).mark_line().encode(x="x", y="y"))
st.button("Rerun")
"""

READY_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  const charts = [...document.querySelectorAll('.vega-embed')];
  return charts.every(c => c.querySelector('canvas, svg'));
}"""

# Records every change of the script state (and when), so a time can be split into "waiting
# for the server's script run" and "the browser drawing what it sent".
OBSERVE_JS = """() => {
  window.__runs = [];
  const log = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    const s = app && app.getAttribute('data-test-script-state');
    const last = window.__runs[window.__runs.length - 1];
    if (s && (!last || last[1] !== s)) window.__runs.push([performance.now(), s]);
  };
  new MutationObserver(log).observe(document, {subtree: true, attributes: true,
    attributeFilter: ['data-test-script-state'], childList: true});
  log();
}"""

COUNT_JS = """() => ({
  elements: document.querySelectorAll('[data-testid="stElementContainer"]').length,
  charts: document.querySelectorAll('.vega-embed').length,
  dataframes: document.querySelectorAll('[data-testid="stDataFrame"]').length,
})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(script: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """Serve `script` on loopback with the production settings, as `make run` does (the app
    through its warm-up launcher, any other script with `streamlit run`); yields (base url,
    pid)."""
    port = _free_port()
    log = Path(tempfile.mkstemp(suffix=".log")[1]).open("w+")  # noqa: SIM115 - closed below
    launcher = ([sys.executable, "-m", "app.shell.serve"] if script == APP else
                [str(Path(sys.executable).parent / "streamlit"), "run", str(script)])
    proc = subprocess.Popen(
        [*launcher, "--server.address", "127.0.0.1", "--server.port", str(port),
         "--server.headless", "true"],
        cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        deadline = started + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {Path(log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(base + "/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield base, proc.pid, round(time.monotonic() - started, 1)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.unlink(log.name)


def rss_mb(pid: int) -> dict[str, float]:
    """The process's resident set now and its peak (VmRSS, VmHWM), in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_mb": fields.get("VmRSS", 0.0), "peak_rss_mb": fields.get("VmHWM", 0.0)}


def _wait_ready(page, t0: float, since_ms: float | None = None) -> float | None:
    """Seconds from t0 to the first moment of a steady ready state (held HOLD_S); with
    `since_ms`, a script run must have started after that page time (an interaction)."""
    first = None
    while time.time() - t0 < LIMIT_S:
        ok = page.evaluate(READY_JS)
        if ok and since_ms is not None:
            ok = page.evaluate("t => window.__runs.some(r => r[0] > t && r[1] === 'running')",
                               since_ms)
        now = time.time()
        if ok:
            first = first or now
            if now - first >= HOLD_S:
                return round(first - t0, 2)
        else:
            first = None
        page.wait_for_timeout(100)
    return None


def _track(page) -> dict:
    got = {"ws_bytes": 0, "errors": []}

    def on_ws(ws) -> None:
        ws.on("framereceived", lambda payload: got.__setitem__(
            "ws_bytes", got["ws_bytes"] + len(payload)))

    page.on("websocket", on_ws)
    page.on("pageerror", lambda e: got["errors"].append(str(e)[:160]))
    page.add_init_script(f"({OBSERVE_JS})()")
    return got


def _script_split(page) -> dict[str, float | None]:
    """When the page's last script run started and ended (s since navigation)."""
    runs = page.evaluate("() => window.__runs")
    starts = [t for t, s in runs if s == "running"]
    ends = [t for t, s in runs if s == "notRunning" and starts and t > starts[0]]
    return {"first_run_start_s": round(starts[0] / 1000, 2) if starts else None,
            "last_run_end_s": round(ends[-1] / 1000, 2) if ends else None}


def visit(ctx, url: str) -> dict:
    """Open `url` in a fresh tab and time it to ready; what went over the websocket."""
    page = ctx.new_page()
    got = _track(page)
    t0 = time.time()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_timeout(300)
    ready = _wait_ready(page, t0)
    out = {"ready_s": ready, **_script_split(page), **page.evaluate(COUNT_JS),
           "ws_kb": round(got["ws_bytes"] / 1024, 1)}
    exc = page.locator('[data-testid="stException"]').count()
    out["errors"] = got["errors"] + ([f"{exc} exception block(s)"] if exc else [])
    page.close()
    return out


def page_times(ctx, base: str, paths: tuple[str, ...]) -> dict:
    results = {}
    for path in paths:
        cold = visit(ctx, base + path)
        warm = [visit(ctx, base + path) for _ in range(WARM_VISITS)]
        times = [w["ready_s"] for w in warm if w["ready_s"] is not None]
        results[path] = {"cold_s": cold["ready_s"],
                         "warm_s": statistics.median(times) if times else None,
                         "cold": cold, "warm": warm[-1]}
        print(f"  {path:<14} cold {cold['ready_s']}  warm {results[path]['warm_s']}  "
              f"({warm[-1]['elements']} elements, {warm[-1]['charts']} charts, "
              f"{warm[-1]['ws_kb']} KB)", flush=True)
    return results


def interact(page, action) -> float | None:
    """Run `action(page)` (a click, a typed value) and time it to the next steady ready state
    after a script run it started."""
    page.wait_for_timeout(300)
    since = page.evaluate("() => performance.now()")
    t0 = time.time()
    action(page)
    return _wait_ready(page, t0, since)


def _open(ctx, url: str):
    page = ctx.new_page()
    _track(page)
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_timeout(300)
    _wait_ready(page, time.time())
    return page


def _choose(page, label: str, option_index: int) -> None:
    """Pick an option of a select box; one below the fold is scrolled to first (its list
    closes when the page scrolls under it), and the opening is retried once."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.scroll_into_view_if_needed()
    for attempt in range(2):
        box.click()
        try:
            page.get_by_role("option").nth(option_index).click(timeout=10_000)
            return
        except Exception:
            if attempt:
                raise
            page.keyboard.press("Escape")


def _start_date(page, day) -> None:
    """Type a new start date into Global Patterns' date range (its segments are month, then
    day, inert until focused) and leave the field, which commits it."""
    page.get_by_role("spinbutton", name="month, Event dates (UTC) start date").click(force=True)
    page.keyboard.type(f"{day:%m}")
    page.get_by_role("spinbutton", name="day, Event dates (UTC) start date").click(force=True)
    page.keyboard.type(f"{day:%d}")
    page.keyboard.press("Escape")
    page.get_by_role("heading", name="Global Patterns").click()


def interactions(ctx, base: str, start) -> dict:
    """The listed interactions, each from a page that is already ready."""
    out: dict[str, float | None] = {}

    page = _open(ctx, base + "/cases")
    page.get_by_role("tab", name="Queue").click()
    page.wait_for_timeout(500)
    grid = page.get_by_role("tabpanel", name="Queue").get_by_test_id("stDataFrame")
    grid.wait_for(timeout=30_000)
    out["open a case from the queue"] = interact(
        page, lambda p: grid.click(position={"x": 15, "y": 35 + 17}))
    page.close()

    page = _open(ctx, base + "/patterns")
    out["switch model (Global Patterns)"] = interact(page, lambda p: _choose(p, "Model", 1))
    out["change the cohort dates"] = interact(page, lambda p: _start_date(p, start))
    from app.services.cohort import IMPORTANCE_MEASURES

    for measure in IMPORTANCE_MEASURES[1:]:
        out[f"importance measure: {measure}"] = interact(
            page, lambda p, m=measure: p.get_by_text(m, exact=True).click())
    page.close()

    page = _open(ctx, base + "/review")
    out["mine a week"] = interact(
        page, lambda p: p.get_by_role("button", name="Mine findings").click())
    mined = page.get_by_text(re.compile(r"^\d+ findings, mined ")).first.inner_text()
    if int(mined.split()[0]) > 1:  # a week may hold a single finding
        out["open another finding"] = interact(page, lambda p: _choose(p, "Finding", 1))
    page.close()

    page = _open(ctx, base + "/compare")
    for section in ("Disagreements", "Cost"):
        out[f"open a comparison section: {section}"] = interact(
            page, lambda p, s=section: p.get_by_role("tab", name=s, exact=True).click())
    page.close()
    return out


def hello_floor(browser) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hello.py"
        script.write_text(HELLO)
        with serve(script, {}) as (base, _pid, _start):
            ctx = browser.new_context(viewport={"width": 1440, "height": 900})
            times = page_times(ctx, base, ("/",))["/"]
            page = _open(ctx, base + "/")
            click = interact(page, lambda p: p.get_by_role("button", name="Rerun").click())
            ctx.close()
    return {"cold_s": times["cold_s"], "warm_s": times["warm_s"], "interaction_s": click,
            "ws_kb": times["warm"]["ws_kb"]}


def demo_workspace(rows: int) -> Path:
    """The default demo workspace (`fraudlens demo`) at 100k, the bench workspace at 1M."""
    if rows >= 1_000_000:
        os.environ["FRAUDLENS_BENCH_ROWS"] = str(rows)
        from bench.workspace_1m import ensure_workspace

        return ensure_workspace()
    ws = CACHE / f"demo_{rows}"
    if not (ws / "lake").exists():
        shutil.rmtree(ws, ignore_errors=True)
        subprocess.run([str(Path(sys.executable).parent / "fraudlens"), "--workspace", str(ws),
                        "demo", "--rows", str(rows)], check=True, cwd=ROOT)
    return ws


def precompute(ws: Path) -> float | None:
    """What `score`/`explain`/`compare`/`patterns` leave behind for the pages; seconds."""
    t = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "fraudlens"), "--workspace",
                           str(ws), "precompute"], cwd=ROOT, stdout=subprocess.DEVNULL)
    return round(time.perf_counter() - t, 1) if done.returncode == 0 else None


def two_weeks_before_last(ws: Path):
    """The start of a two-week cohort ending on the newest event day."""
    from contextlib import closing

    from data_access.warehouse import open_reader

    with closing(open_reader(ws)) as con:
        last = con.execute("SELECT max(event_time) FROM transactions").fetchone()[0]
    return last.date() - timedelta(days=13)


def measure_workspace(browser, ws: Path, with_interactions: bool) -> dict:
    # the pages' kept defaults are the server warm-up's to compute, not left from a last run
    shutil.rmtree(ws / ".cache" / "pages", ignore_errors=True)
    pre = precompute(ws)
    env = {"FRAUDLENS_WORKSPACE": str(ws), "FRAUDLENS_DEMO_MODE": "1",
           "FRAUDLENS_DEMO_ROLE": "admin"}
    out: dict = {"workspace": ws.name, "precompute_s": pre}
    with serve(APP, env) as (base, pid, start_s):
        out["server_start_s"] = start_s  # launch to healthy, the warm-up included
        ctx = browser.new_context(viewport={"width": 1440, "height": 900})
        out["pages"] = page_times(ctx, base, PAGES)
        if with_interactions:
            out["interactions"] = interactions(ctx, base, two_weeks_before_last(ws))
            print(f"  interactions: {out['interactions']}", flush=True)
        ctx.close()
        contexts = [browser.new_context(viewport={"width": 1440, "height": 900})
                    for _ in range(SESSIONS)]
        pages = [_open(c, base + PAGES[i % len(PAGES)]) for i, c in enumerate(contexts)]
        out["sessions"] = {"open": len(pages), **rss_mb(pid)}
        for c in contexts:
            c.close()
    return out


def ratios(result: dict, floor: dict) -> None:
    for res in result["pages"].values():
        for kind in ("cold", "warm"):
            t = res[f"{kind}_s"]
            res[f"{kind}_x_floor"] = round(t / floor[f"{kind}_s"], 2) if t else None
    if "interactions" in result:
        result["interactions_above_floor_s"] = {
            k: (round(v - floor["interaction_s"], 2) if v is not None else None)
            for k, v in result["interactions"].items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, action="append")
    parser.add_argument("--skip-interactions", action="store_true")
    args = parser.parse_args(argv or [])
    from playwright.sync_api import sync_playwright

    report: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count(), "workspaces": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        print("== hello-world floor", flush=True)
        report["floor"] = hello_floor(browser)
        print(f"  {report['floor']}", flush=True)
        for rows in args.rows or [100_000, 1_000_000]:
            print(f"== {rows:,} transactions", flush=True)
            result = measure_workspace(browser, demo_workspace(rows),
                                       not args.skip_interactions)
            ratios(result, report["floor"])
            report["workspaces"][str(rows)] = result
        browser.close()
    report["load_after"] = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, sort_keys=True))
    for rows, result in report["workspaces"].items():
        print(f"\n{int(rows):,} rows: page (cold x floor / warm x floor)")
        for path, res in result["pages"].items():
            print(f"  {path:<14} {res['cold_s']} s ({res['cold_x_floor']}x)  "
                  f"{res['warm_s']} s ({res['warm_x_floor']}x)")
        for k, v in result.get("interactions_above_floor_s", {}).items():
            print(f"  {k:<40} +{v} s over the floor")
        print(f"  {SESSIONS} sessions: {result['sessions']}")
    return report


run = main

if __name__ == "__main__":
    main(sys.argv[1:])
