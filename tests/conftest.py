"""Shared fixtures: one small seeded demo workspace per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEMO_ROWS = 20_000
DEMO_SEED = 7


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete demo workspace (world, two candidates, scores, SHAP store). Read-only: copy
    it with `workspace_copy` before changing anything."""
    from jobs.demo import build_demo

    path = tmp_path_factory.mktemp("demo") / "workspace"
    build_demo(path, rows=DEMO_ROWS, seed=DEMO_SEED)
    return path


@pytest.fixture
def workspace_copy(demo_workspace: Path, tmp_path: Path) -> Path:
    """A private copy of the demo workspace that a test may change."""
    target = tmp_path / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


def _edit_lake_rows(workspace: Path, folder: str, transaction_id: str, change) -> int:
    """Rewrite, whole and in place, every lake file under `folder` that holds the transaction:
    `change(frame, mask)` returns the new frame. Returns how many files changed."""
    import pandas as pd

    changed = 0
    for path in sorted((workspace / "lake" / folder).rglob("*.parquet")):
        frame = pd.read_parquet(path)
        mask = frame["transaction_id"].astype(str) == transaction_id
        if mask.any():
            change(frame, mask).to_parquet(path, index=False)
            changed += 1
    return changed


@pytest.fixture
def edit_lake_rows():
    """`edit_lake_rows(workspace, "transactions", txn, change)`: a test's way to plant or drop
    data in a copied workspace's lake."""
    return _edit_lake_rows
