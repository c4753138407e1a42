"""Pruning: a pruned model registers through the normal path with its parent recorded and
scores exactly as its parent over the same iteration range; bad --trees are refused; the
frontier marks the smallest ensemble within tolerance and is stored for the app."""

from __future__ import annotations

import shutil
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli.main import main
from app.services import pruning
from data_access.workspace import Workspace


@pytest.fixture(scope="module")
def prune_ws(demo_workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pruning") / "workspace"
    shutil.copytree(demo_workspace, target)
    return target


def _rows(ws: Path, n: int = 300) -> pd.DataFrame:
    first = sorted((ws / "lake" / "transactions").rglob("*.parquet"))[-1]
    return pd.read_parquet(first).head(n)


@pytest.mark.parametrize("parent,trees", [("fraud_xgb@1", 20), ("fraud_catboost@1", 30)])
def test_a_pruned_model_scores_as_its_parent_over_the_same_iteration_range(
        prune_ws, capsys, parent, trees):
    version = f"p{trees}"
    assert main(["--workspace", str(prune_ws), "models", "prune", parent, "--trees", str(trees),
                 "--version", version]) == 0
    assert f"the first {trees} trees of {parent}" in capsys.readouterr().out
    registry = Workspace(prune_ws).registry
    name = parent.split("@")[0]
    manifest = registry.resolve(f"{name}@{version}")
    parent_manifest = registry.resolve(parent)
    assert manifest.stage == "candidate"
    assert manifest.extra["parent"] == parent and manifest.extra["trees"] == trees
    assert manifest.extra["parent_sha256"] == parent_manifest.sha256
    assert 0.5 < manifest.metrics["roc_auc"] <= 1 and manifest.metrics["holdout_rows"] > 0
    small, full = registry.load(manifest), registry.load(parent)
    assert small.backend.structure(small.native)["trees"] == trees
    rows = _rows(prune_ws)
    got = small.margin(small.prepare(rows))
    native = full.backend.native_input(full.native, full.prepare(rows), full.schema)
    if full.framework == "xgboost":
        want = full.native.predict(native, output_margin=True, iteration_range=(0, trees))
    else:
        want = full.native.predict(native, prediction_type="RawFormulaVal", ntree_end=trees)
    np.testing.assert_array_equal(got, np.asarray(want, dtype=np.float64))
    np.testing.assert_array_equal(pruning.truncated_margin(full, rows, trees), got)


@pytest.mark.parametrize("trees,expect", [("0", "--trees must be 1 or more"),
                                          ("100000", "fraud_xgb@1 has 150 trees")])
def test_bad_trees_are_refused_and_nothing_is_registered(prune_ws, capsys, trees, expect):
    before = [m.key for m in Workspace(prune_ws).registry.list()]
    assert main(["--workspace", str(prune_ws), "models", "prune", "fraud_xgb@1", "--trees",
                 trees, "--version", "bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert expect in err and len(err.splitlines()) == 1, err
    assert [m.key for m in Workspace(prune_ws).registry.list()] == before


def test_the_frontier_marks_the_smallest_ensemble_within_tolerance_and_is_stored(prune_ws):
    ws = Workspace(prune_ws)
    refs = ["fraud_xgb@1", "fraud_catboost@1"]
    manifests = [ws.registry.resolve(r) for r in refs]
    models = [ws.registry.load(m) for m in manifests]
    settings = pruning.FrontierSettings(steps=4, timing_calls=30, holdout_rows=3000)
    stages: list[str] = []
    with closing(ws.lake()) as lake:
        first = pruning.cached_frontier(lake.con, ws.path, manifests, models, lake.version,
                                        settings, progress=stages.append)
        again = pruning.cached_frontier(lake.con, ws.path, manifests, models, lake.version,
                                        settings)
    assert again == first and stages[0].startswith("calibrating")
    c = first.calibration
    assert c.workload_ms > 0 and c.factor == pytest.approx(c.reference_ms / c.workload_ms)
    for m in first.models:
        full = m.points[-1]
        assert full.trees == m.total_trees and [p.trees for p in m.points] == sorted(
            p.trees for p in m.points)
        chosen = next(p for p in m.points if p.trees == m.smallest_within)
        assert chosen.roc_auc >= full.roc_auc - settings.tolerance
        assert all(p.roc_auc < full.roc_auc - settings.tolerance
                   for p in m.points if p.trees < m.smallest_within)
        for p in m.points:
            assert p.p99_calibrated_ms == pytest.approx(c.scaled(p.p99_ms))
            assert p.meets_sla == (p.p99_calibrated_ms <= settings.sla_p99_ms)
