"""Regenerate the README's screenshots (`make screenshots`): serve a demo workspace in demo
mode on loopback, open each page in Debian's Chromium (Playwright, never a downloaded
browser) and save a full-page PNG to docs/screenshots/.

    .venv/bin/python docs/make_screenshots.py [--workspace DIR] [--out DIR] [--role ROLE]

The workspace is built with `fraudlens demo` when it does not exist yet.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
# (file name, URL path, heading that says the page is drawn)
PAGES = (
    ("home", "home", "FraudLens"),
    ("case_explorer", "cases?txn={txn}&model={model}", "Case {txn}"),
    ("global_patterns", "patterns", "Global Patterns"),
    ("model_comparison", "compare", "Metrics"),
    ("pattern_review", "review", "Pattern Review"),
    ("monitoring", "monitoring", "Monitoring"),
)
LOAD_MS = 180_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(workspace: Path, port: int, role: str) -> subprocess.Popen:
    env = {**os.environ, "FRAUDLENS_WORKSPACE": str(workspace), "FRAUDLENS_DEMO_MODE": "1",
           "FRAUDLENS_DEMO_ROLE": role, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py"),
         "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless",
         "true", "--browser.gatherUsageStats", "false"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the app did not start within 60 s")


def _top_case(workspace: Path) -> tuple[str, str]:
    from data_access.workspace import Workspace

    con = Workspace(workspace).reader()
    try:
        row = con.execute("SELECT transaction_id, model_id FROM scores ORDER BY score DESC, "
                          "transaction_id LIMIT 1").fetchone()
    finally:
        con.close()
    return str(row[0]), str(row[1])


def _fit(page) -> None:
    """Grow the viewport to the content: Streamlit scrolls inside its main container."""
    height = page.evaluate(
        "() => Math.max(document.body.scrollHeight, ...[...document.querySelectorAll('*')]"
        ".filter(e => e.scrollHeight > e.clientHeight + 1 && "
        "getComputedStyle(e).overflowY.match(/auto|scroll/)).map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(max(int(height) + 40, 900), 6000)})
    page.wait_for_timeout(800)


def shoot(workspace: Path, out: Path, role: str, only: list[str] | None = None) -> list[Path]:
    from playwright.sync_api import sync_playwright

    txn, model = _top_case(workspace)
    port = _free_port()
    server = _serve(workspace, port, role)
    saved = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM,
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
            warm = browser.new_page()  # a fresh server's first deep link says "Page not
            warm.goto(f"http://127.0.0.1:{port}/")  # found" (streamlit#9624): visit / first
            warm.get_by_test_id("stMain").locator("[data-testid=stElementContainer]").first \
                .wait_for(timeout=LOAD_MS)
            warm.close()
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            for name, path, heading in PAGES:
                if only and name not in only:
                    continue
                page.goto(f"http://127.0.0.1:{port}/" + path.format(txn=txn, model=model))
                page.get_by_role("heading", name=heading.format(txn=txn)).first.wait_for(
                    timeout=LOAD_MS)
                page.wait_for_timeout(500)
                page.get_by_test_id("stStatusWidget").wait_for(state="detached",
                                                               timeout=LOAD_MS)
                _fit(page)
                target = out / f"{name}.png"
                page.screenshot(path=str(target), full_page=True)
                saved.append(target)
                print(f"saved {target}")
                page.set_viewport_size({"width": 1400, "height": 900})
            browser.close()
    finally:
        server.terminate()
        server.wait(15)
    return saved


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, default=ROOT / "workspace",
                   help="demo workspace to serve (built with `fraudlens demo` if missing)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots",
                   help="folder for the PNGs (default docs/screenshots)")
    p.add_argument("--role", default="mle", choices=["analyst", "mle", "admin"],
                   help="demo role to view the pages as (default mle: every page but audit)")
    p.add_argument("--page", action="append", choices=[name for name, _, _ in PAGES],
                   help="only this page (repeatable; default: every page)")
    args = p.parse_args(argv)
    if not (args.workspace / "lake").exists():
        subprocess.run([sys.executable, "-m", "app.cli.main", "--workspace",
                        str(args.workspace), "demo"], cwd=ROOT, check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    shoot(args.workspace, args.out, args.role, args.page)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
