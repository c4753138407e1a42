"""The pages' default views are computed ahead of the first visit (the server's warm-up) and
kept on disk per data version: a restarted server reads them instead of scanning the lake, and
new data is never served a result kept for older data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import streamlit as st

from app.shell import caches, resources, serve, warm
from data_access.warehouse import import_frames
from data_access.workspace import Workspace
from jobs import demo_world


@pytest.fixture
def ws(demo_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ws"
    shutil.copytree(demo_workspace, path)
    shutil.rmtree(path / ".cache", ignore_errors=True)
    monkeypatch.setenv("FRAUDLENS_WORKSPACE", str(path))
    st.cache_data.clear()
    yield path
    st.cache_data.clear()


def _kept_files(path: Path) -> set[str]:
    return {p.name for p in (path / ".cache" / caches.PAGE_RESULTS).rglob("result.json")}


def test_warm_defaults_keeps_every_models_default_views(ws: Path) -> None:
    done = warm.warm_defaults()
    models = [m.key for m in Workspace(ws).registry.list() if m.stage != "archived"]
    assert done == ["home", *sorted(models, key=done.index)]
    assert set(done[1:]) == set(models)
    # home (4), pattern review's week, and per model: queue, cohort summary, the sample that
    # beeswarm and dependence share, beeswarm points, dependence points; then the default
    # comparison's classifier statistics and the segment columns (no monitoring report is
    # kept in this copy, so no segment table)
    kept = list((ws / ".cache" / caches.PAGE_RESULTS).glob("*/*/result.json"))
    assert len(kept) == 5 + 5 * len(models) + 2


def test_a_restarted_server_reads_kept_results_instead_of_scanning(
        ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = caches.warehouse_summary()
    labels = caches.weekly_labels()
    st.cache_data.clear()  # a new process: nothing in memory

    def no_scans(*_a, **_k):
        raise AssertionError("scanned the lake although a result was kept for this data")

    monkeypatch.setattr(caches, "_cursor", no_scans)  # every cached query takes a cursor
    assert caches.warehouse_summary() == first
    pd.testing.assert_frame_equal(caches.weekly_labels(), labels, check_dtype=False)


def test_new_data_is_never_served_a_result_kept_for_older_data(ws: Path) -> None:
    before = caches.warehouse_summary()
    world = demo_world.generate_world(rows=400, seed=5)
    txns = world.transactions.assign(transaction_id="N" + world.transactions["transaction_id"])
    import_frames(Workspace(ws).lake(), txns)
    resources._lake_at(str(ws)).refresh(force=True)
    after = caches.warehouse_summary()
    assert after.transactions == before.transactions + 400
    st.cache_data.clear()
    assert caches.warehouse_summary() == after  # kept for the new version too


def test_the_server_warm_up_imports_opens_and_computes_before_serving(ws: Path) -> None:
    took = serve.warm_up()
    assert took > 0
    assert _kept_files(ws)  # the default views are on disk before the first visit
    assert resources._lake_at(str(ws)).listing_age() < 10


def test_the_explainers_are_compiled_for_every_live_model(ws: Path) -> None:
    from explainers import tree_kernel_jit

    done = warm.compile_explainers()
    models = [m.key for m in Workspace(ws).registry.list() if m.stage != "archived"]
    assert sorted(done) == sorted(models) and len(done) == 2
    # the XGBoost model went through the numba kernel, which is now compiled
    assert tree_kernel_jit.contributions_row.signatures or \
        tree_kernel_jit.contributions_rows.signatures


def test_compiling_the_explainers_on_an_empty_lake_does_nothing(
        ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(warm.case_queries, "any_transaction",
                        lambda con: pd.DataFrame({"transaction_id": []}))
    assert warm.compile_explainers() == []
