"""The users' journeys end to end, in demo mode: an analyst works a case and takes numbers
away, an ML engineer compares the candidates, the weekly review annotates findings."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from playwright.sync_api import Locator, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from data_access import shap_store
from data_access.shap_store import Cohort
from data_access.warehouse import open_reader
from data_access.workspace import Workspace

pytestmark = pytest.mark.e2e

PAGE_LOAD_MS = 60_000
COMPARE_LOAD_MS = 120_000  # the first comparison times both models on this machine
CASE_OPEN_MS = 20_000  # a case opens in a few seconds
MODEL_ID = re.compile(r"(\S+@\S+) · ")
TXN_ID = re.compile(r"^T\d+$")


@pytest.fixture(scope="module")
def demo_app(app_server, e2e_workspace: Path) -> Iterator[Callable[[str], str]]:
    """`demo_app(role)`: the base URL of a demo-mode server for `role` on the e2e workspace.

    One server at a time: each server process keeps the workspace's journal (audit trail,
    annotations) open read-write, and DuckDB lets only one process do that. Switching roles
    stops the previous server; the module stops the last one, so later modules start clean.
    """
    running: dict[str, str] = {}

    def start(role: str) -> str:
        for other, url in list(running.items()):
            if other != role:
                app_server.stop(url)
                del running[other]
        if role not in running:
            running[role] = app_server(e2e_workspace, {"FRAUDLENS_DEMO_MODE": "1",
                                                       "FRAUDLENS_DEMO_ROLE": role})
        return running[role]

    yield start
    for url in running.values():
        app_server.stop(url)


def settle(page: Page, timeout_ms: int = PAGE_LOAD_MS) -> None:
    """Wait until the script run is over (Streamlit's "Running…" widget is gone), so that a
    widget being clicked is not redrawn under the pointer."""
    page.wait_for_timeout(200)
    page.get_by_test_id("stStatusWidget").wait_for(state="detached", timeout=timeout_ms)


def open_page(page: Page, url: str, heading: str) -> None:
    page.goto(url)
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(
        timeout=PAGE_LOAD_MS)


def fit_page(page: Page, max_height: int = 4000) -> None:
    """Grow the viewport to the page's content (Streamlit scrolls inside its main container,
    so a full-page screenshot alone stops at the viewport)."""
    height = page.evaluate(
        "() => { const boxes = [...document.querySelectorAll('*')].filter(e =>"
        " e.scrollHeight > e.clientHeight + 1 && !e.closest('[data-testid=stDataFrame]')"
        " && getComputedStyle(e).overflowY.match(/auto|scroll/));"
        " boxes.forEach(e => { e.scrollTop = 0; }); window.scrollTo(0, 0);"
        " return Math.max(document.body.scrollHeight, ...boxes.map(e => e.scrollHeight)); }")
    page.set_viewport_size({"width": 1400, "height": min(max(int(height) + 40, 900),
                                                         max_height)})
    page.wait_for_timeout(300)  # charts and grids lay themselves out again


def chosen_model(page: Page) -> str:
    """The model id the page's "Model" selectbox shows."""
    box = page.get_by_role("combobox", name="Model", exact=True)
    expect(box).to_have_value(MODEL_ID, timeout=PAGE_LOAD_MS)
    found = MODEL_ID.search(box.input_value())
    assert found, box.input_value()
    return found.group(1)


def choose(page: Page, combobox: Locator, option: str, attempts: int = 5) -> None:
    """Pick `option` in a selectbox. Charts above it may still be laying themselves out, so a
    click can land beside a moving control: open the menu again until the option shows."""
    wanted = page.get_by_role("option", name=option, exact=True)
    for _ in range(attempts):
        combobox.click()
        try:
            wanted.click(timeout=3_000)
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")
            continue
        expect(combobox).to_have_value(option)
        return
    raise AssertionError(f"the menu of {combobox} never offered {option!r}")


def grid_rows(frame: Locator) -> list[list[str]]:
    """The cells an st.dataframe exposes to assistive technology, row by row (header first).

    The grid fills its accessible table after its first paint, which lags the script run on
    a loaded machine, hence the page-load timeout rather than Playwright's 5 s default."""
    expect(frame.locator("td").first).to_be_attached(timeout=PAGE_LOAD_MS)
    rows = frame.locator("tr")
    return [[c.strip() for c in rows.nth(i).locator("th, td").all_inner_texts()]
            for i in range(rows.count())]


def top_of_queue(page: Page) -> str:
    page.get_by_role("tab", name="Queue").click()
    queue = page.get_by_role("tabpanel", name="Queue")
    expect(queue.get_by_text(re.compile(r"scores first, at most 200 cases"))).to_be_visible(
        timeout=PAGE_LOAD_MS)
    top = queue.get_by_test_id("stDataFrame").get_by_test_id("glide-cell-1-0")
    expect(top).to_have_text(TXN_ID)
    return str(top.text_content())


def check_open_case(page: Page, txn: str, timeout_ms: int = PAGE_LOAD_MS) -> str:
    """The case page shows `txn` with its waterfall and reason codes; returns its link."""
    expect(page.get_by_role("heading", name=f"Case {txn}", exact=True)).to_be_visible(
        timeout=timeout_ms)
    why = page.get_by_role("heading", name=re.compile(r"^Why \S+@\S+ scored it [<>]?\d"))
    expect(why).to_be_visible()
    explained = page.get_by_test_id("stHorizontalBlock").filter(
        has_text="What makes it look like fraud").first
    waterfall = explained.get_by_test_id("stVegaLiteChart").first
    expect(waterfall.locator("canvas, svg").first).to_be_visible()
    towards_fraud = explained.get_by_test_id("stMarkdown").filter(
        has=page.locator("li")).first.locator("li")
    expect(towards_fraud.first).to_contain_text("log-odds")
    link = page.get_by_test_id("stMarkdown").filter(has_text="Link to this case:")
    url = link.locator("code").inner_text().strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/cases\?txn=" + txn + r"&model=\S+@\S+", url)
    return url


def reopen_from_link(fresh_page: Callable[[], Page], url: str, txn: str, screenshot) -> None:
    colleague = fresh_page()
    colleague.goto(url)
    assert check_open_case(colleague, txn) == url
    screenshot(colleague, "journey_case_link")


def test_analyst_opens_a_case_by_id_and_shares_its_link(browser_page: Page, demo_app,
                                                        fresh_page, screenshot):
    page = browser_page
    base_url = demo_app("analyst")
    open_page(page, f"{base_url}/cases", "Case Explorer")
    txn = top_of_queue(page)
    screenshot(page, "journey_case_queue")
    page.get_by_role("tab", name="Transaction id").click()
    page.get_by_role("textbox", name="Transaction id").fill(txn)
    page.get_by_role("button", name="Open case").click()
    url = check_open_case(page, txn)
    assert page.url.split("?")[1].startswith(f"txn={txn}&model=")
    fit_page(page)
    screenshot(page, "journey_case_open")
    reopen_from_link(fresh_page, url, txn, screenshot)


def test_analyst_opens_the_top_case_from_the_queue(browser_page: Page, demo_app, fresh_page,
                                                   screenshot):
    page = browser_page
    base_url = demo_app("analyst")
    open_page(page, f"{base_url}/cases", "Case Explorer")
    txn = top_of_queue(page)
    # The first column is the row's selection checkbox; the header row is 35 px high.
    page.get_by_role("tabpanel", name="Queue").get_by_test_id("stDataFrame").click(
        position={"x": 15, "y": 35 + 17})
    url = check_open_case(page, txn, timeout_ms=CASE_OPEN_MS)
    fit_page(page)
    screenshot(page, "journey_queue_case_open")
    reopen_from_link(fresh_page, url, txn, screenshot)


def _utc_day(value: object) -> date:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).date()


def expected_shap_summary(workspace: Path, model_id: str) -> pd.DataFrame:
    """`shap_store.summary` for Global Patterns' default cohort (every event day, any score,
    no segment), straight from the warehouse on a read-only connection of our own."""
    schema = Workspace(workspace).registry.resolve(model_id).feature_schema
    con = open_reader(workspace)
    try:
        first, last = con.execute(
            "SELECT min(event_time), max(event_time) FROM transactions").fetchone()
        cohort = Cohort(since=_utc_day(first), until=_utc_day(last) + timedelta(days=1))
        return shap_store.summary(con, model_id, cohort, schema.categorical)
    finally:
        con.close()


def test_analyst_downloads_the_shap_summary(browser_page: Page, demo_app,
                                            e2e_workspace: Path, screenshot):
    page = browser_page
    base_url = demo_app("analyst")
    open_page(page, f"{base_url}/patterns", "Global Patterns")
    model_id = chosen_model(page)
    page.get_by_role("button", name="Prepare SHAP summary (CSV)").click(timeout=PAGE_LOAD_MS)
    download = page.get_by_role("button", name="Download SHAP summary (CSV)")
    expect(download).to_be_visible(timeout=PAGE_LOAD_MS)
    with page.expect_download() as info:
        download.click()
    assert info.value.suggested_filename == f"shap_summary_{model_id.replace('@', '_v')}.csv"
    data = Path(info.value.path()).read_bytes()
    expect(page.get_by_text(f"SHA-256 {hashlib.sha256(data).hexdigest()[:16]}…")).to_be_visible()
    fit_page(page)
    screenshot(page, "journey_patterns")

    got = pd.read_csv(info.value.path())
    want = expected_shap_summary(e2e_workspace, model_id)
    assert list(got.columns) == ["feature", "description", "mean_abs_shap", "mean_shap", "rank",
                                 "model", "cohort", "row_count"]
    meanings = {f.name: f.description for f in
                Workspace(e2e_workspace).registry.resolve(model_id).feature_schema.features}
    assert got["description"].tolist() == [meanings[f] for f in got["feature"]]
    assert len(got) == len(want) > 0
    for col in ("feature", "rank", "model", "cohort", "row_count"):
        assert got[col].tolist() == want[col].tolist(), col
    for col in ("mean_abs_shap", "mean_shap"):  # DuckDB sums in parallel: last-bit noise
        pd.testing.assert_series_equal(got[col], want[col], check_exact=False, rtol=1e-9,
                                       atol=1e-12)
    assert set(got["model"]) == {model_id}
    assert got["row_count"].iloc[0] > 0


def test_weekly_review_annotates_a_finding_and_exports_the_pack(browser_page: Page, demo_app,
                                                                screenshot):
    page = browser_page
    base_url = demo_app("analyst")
    open_page(page, f"{base_url}/review", "Pattern Review")
    model_id = chosen_model(page)
    page.get_by_role("button", name="Mine findings").click()
    expect(page.get_by_text(re.compile(r"^\d+ findings, mined "))).to_be_visible(
        timeout=PAGE_LOAD_MS)
    settle(page)
    overview = grid_rows(page.get_by_test_id("stDataFrame").filter(has_text="rule precision"))
    assert overview[0][:3] == ["#", "finding", "population"]
    finding_id = overview[1][1]
    assert re.fullmatch(r"F[0-9a-f]+", finding_id), overview[1]
    opened = page.get_by_test_id("stText").filter(has_text=f"· {finding_id}")  # #1 opens first
    expect(opened).to_contain_text("#1 · ")

    title, notes = "Fresh-device withdrawals", "Three tickets this week; ask risk ops."
    form = page.get_by_test_id("stForm")
    form.get_by_role("textbox", name="Title").fill(title)
    choose(page, form.get_by_role("combobox", name="Status"), "confirmed")
    form.get_by_role("textbox", name="Notes").fill(notes)
    form.get_by_role("button", name="Save annotation").click()
    expect(opened).to_contain_text("· confirmed ·", timeout=PAGE_LOAD_MS)

    page.reload()
    noted = page.get_by_test_id("stMain")
    expect(noted.get_by_test_id("stText").filter(has_text=f"· {finding_id}")).to_contain_text(
        "· confirmed ·", timeout=PAGE_LOAD_MS)
    expect(noted.get_by_role("textbox", name="Title")).to_have_value(title)
    expect(noted.get_by_role("textbox", name="Notes")).to_have_value(notes)
    expect(noted.get_by_text("Annotation history (newest first)")).to_be_visible()
    history = grid_rows(noted.get_by_test_id("stDataFrame").filter(has_text="author"))
    header = history[0]
    latest = dict(zip(header, history[1], strict=True))
    assert (latest["title"], latest["status"], latest["notes"]) == (title, "confirmed", notes)
    assert latest["author"] == "demo@fraudlens.invalid"
    fit_page(page, max_height=2600)
    screenshot(page, "journey_review")

    page.get_by_role("button", name="Prepare HTML review pack").click()
    download = page.get_by_role("button", name="Download HTML review pack")
    with page.expect_download() as info:
        download.click()
    html = Path(info.value.path()).read_text(encoding="utf-8")
    remote = re.findall(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?"
                        r"(?:https?:)?//", html, flags=re.IGNORECASE)
    assert remote == [], "the review pack loads resources from the network"
    assert "@import" not in html
    assert model_id in html and finding_id in html and title in html


def test_ml_engineer_compares_the_two_candidates(browser_page: Page, demo_app, screenshot):
    page = browser_page
    base_url = demo_app("mle")
    open_page(page, f"{base_url}/compare", "Model Comparison")
    candidates = page.get_by_test_id("stMultiSelect").filter(has_text="Candidates")
    expect(page.get_by_role("heading", name="Metrics")).to_be_visible(timeout=COMPARE_LOAD_MS)
    settle(page, COMPARE_LOAD_MS)
    chosen = MODEL_ID.findall(candidates.inner_text())
    assert len(chosen) == 2, candidates.inner_text()

    frames = page.get_by_test_id("stDataFrame")
    metrics = grid_rows(frames.filter(has_text="ROC AUC").first)
    assert metrics[0][:3] == ["metric", *chosen]
    roc = next(row for row in metrics if row[0] == "ROC AUC")
    interval = re.compile(r"^0\.\d{4}\s+\[0\.\d{4} – [01]\.\d{4}\]$")
    assert interval.match(roc[1]) and interval.match(roc[2]), roc

    fit_page(page)
    screenshot(page, "journey_compare_metrics")

    page.get_by_role("tab", name="Disagreements").click()  # one section at a time
    expect(page.get_by_role("heading", name="Where the models disagree")).to_be_visible(
        timeout=PAGE_LOAD_MS)
    assert page.url.endswith("/compare?section=Disagreements")  # a section can be linked to
    expect(page.get_by_role("heading", name="Metrics")).to_have_count(0)
    settle(page)
    disagreements = grid_rows(frames.filter(has_text="flagged only by").first)
    header = disagreements[0]
    assert header[:4] == ["transaction", "time (UTC)", "amount (USD)", "flagged only by"]
    assert len(disagreements) > 1
    for row in disagreements[1:]:
        assert TXN_ID.match(row[0]) and row[3] in chosen, row
    fit_page(page)
    screenshot(page, "journey_compare")
