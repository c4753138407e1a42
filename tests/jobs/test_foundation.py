"""Training split, import validation, scoring: each bad input leaves the workspace unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli.main import main
from data_access.lake import model_key
from data_access.warehouse import import_frames
from data_access.workspace import Workspace
from explainers.errors import ValidationError
from jobs import demo_world, train
from jobs.demo import demo_world_schema, labelled_frame
from jobs.scoring import score_transactions


def _counts(ws: Path) -> dict[str, int]:
    con = Workspace(ws).reader()
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("transactions", "labels", "scores", "models")}


def _digest(ws: Path) -> str:
    """Every lake file's path and bytes: equal digests mean nothing was written."""
    digest = hashlib.sha256()
    for path in sorted((ws / "lake").rglob("*")):
        if path.is_file() and "_locks" not in path.parts:
            digest.update(str(path.relative_to(ws)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_no_training_row_is_newer_than_the_earliest_holdout_row():
    world = demo_world.generate_world(rows=20_000, seed=3)
    split = train.time_split(labelled_frame(world))
    assert split.train["event_time"].max() < split.holdout["event_time"].min()
    assert len(split.train) > 2 * len(split.holdout) * 0.9


def test_demo_candidates_are_good_but_imperfect(demo_workspace, capsys):
    assert main(["--workspace", str(demo_workspace), "models", "list", "--json"]) == 0
    manifests = json.loads(capsys.readouterr().out)
    assert {m["framework"] for m in manifests} == {"xgboost", "catboost"}
    for m in manifests:
        assert m["stage"] == "candidate"
        assert 0.85 <= m["metrics"]["roc_auc"] <= 0.99, m["metrics"]
        window = m["training_window"]
        assert window["start"] < window["end"] < window["holdout_start"]


def test_scores_cover_every_transaction_once_and_rerun_adds_nothing(workspace_copy):
    ws = Workspace(workspace_copy)
    before = _counts(workspace_copy)
    assert before["scores"] == 2 * before["transactions"]
    lake = ws.lake()
    model = ws.registry.load("fraud_xgb@1")
    assert score_transactions(lake, model) == 0
    dup = lake.con.execute("SELECT count(*) FROM (SELECT model_id, transaction_id FROM scores "
                           "GROUP BY ALL HAVING count(*) > 1)").fetchall()[0][0]
    assert dup == 0
    assert _counts(workspace_copy) == before


def test_stored_scores_equal_the_model_probability(demo_workspace):
    ws = Workspace(demo_workspace)
    model = ws.registry.load("fraud_catboost@1")
    con = ws.reader()
    frame = con.execute("SELECT t.*, s.score FROM transactions t JOIN scores s USING "
                        "(transaction_id) WHERE s.model_id = ? ORDER BY transaction_id "
                        "LIMIT 200", [model.key]).df()
    p = model.predict_proba(model.prepare(frame))
    np.testing.assert_allclose(frame["score"].to_numpy(), p, rtol=0, atol=1e-9)


def test_import_missing_and_mistyped_features_lists_the_columns(workspace_copy, tmp_path, capsys):
    world = demo_world.generate_world(rows=2_000, seed=11)
    bad = world.transactions.drop(columns=["amount_usd", "txn_count_1h"])
    bad["account_age_days"] = "old"
    bad["transaction_id"] = "X" + bad["transaction_id"]
    path = tmp_path / "bad.parquet"
    bad.to_parquet(path)
    before = _digest(workspace_copy)
    code = main(["--workspace", str(workspace_copy), "import", "transactions", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "amount_usd" in err and "txn_count_1h" in err and "account_age_days" in err
    assert _digest(workspace_copy) == before


def test_import_adds_new_rows_once(workspace_copy, tmp_path, capsys):
    world = demo_world.generate_world(rows=2_000, seed=11)
    txns = world.transactions.assign(transaction_id="N" + world.transactions["transaction_id"])
    labels = world.labels.assign(transaction_id="N" + world.labels["transaction_id"])
    txns.to_parquet(tmp_path / "t.parquet")
    labels.to_csv(tmp_path / "l.csv", index=False)
    before = _counts(workspace_copy)
    args = ["--workspace", str(workspace_copy), "import", "transactions",
            str(tmp_path / "t.parquet"), "--labels", str(tmp_path / "l.csv")]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("imported 0 transactions (2,000 already present)")
    after = _counts(workspace_copy)
    assert after["transactions"] == before["transactions"] + len(txns)
    assert after["labels"] == before["labels"] + len(labels)


def test_a_model_whose_schema_does_not_match_is_refused_naming_the_feature(workspace_copy,
                                                                          capsys):
    ws = Workspace(workspace_copy)
    schema = demo_world_schema().to_dict()
    schema["features"].append({"name": "velocity_score", "dtype": "float", "source": "stream"})
    schema_path = workspace_copy.parent / "schema.json"
    schema_path.write_text(json.dumps(schema))
    artifact = workspace_copy / "models" / "fraud_xgb" / "1" / "model.ubj"
    before = _digest(workspace_copy)
    code = main(["--workspace", str(workspace_copy), "models", "register", str(artifact),
                 "--name", "wide", "--version", "1", "--framework", "xgboost",
                 "--schema", str(schema_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "velocity_score" in err and len(err.strip().splitlines()) == 1
    assert not (workspace_copy / "models" / "wide").exists()
    assert "wide@1" not in [m.key for m in ws.registry.list()]
    assert _digest(workspace_copy) == before


def test_scoring_killed_half_way_leaves_whole_files_and_the_rerun_completes(workspace_copy):
    ws = Workspace(workspace_copy)
    shutil.rmtree(workspace_copy / "lake" / "scores" / f"model={model_key('fraud_xgb@1')}")
    lake = ws.lake()
    model = ws.registry.load("fraud_xgb@1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        score_transactions(lake, model, fail_after_files=2)
    per_file = lake.con.execute(
        "SELECT count(*) FROM scores WHERE model_id = 'fraud_xgb@1'").fetchall()[0][0]
    txns = lake.con.execute("SELECT count(*) FROM transactions").fetchall()[0][0]
    assert 0 < per_file < txns
    files = [f.path for f in lake.files("scores") if "fraud_5fxgb_401" in f.path]
    assert len(files) == 2  # whole files only, each one a complete day
    assert score_transactions(lake, model) == txns - per_file
    n, distinct = lake.con.execute(
        "SELECT count(*), count(DISTINCT transaction_id) FROM scores WHERE model_id = ?",
        [model.key]).fetchall()[0]
    assert n == distinct == txns


def test_import_is_all_or_nothing(workspace_copy):
    ws = Workspace(workspace_copy)
    before = _counts(workspace_copy)
    world = demo_world.generate_world(rows=1_000, seed=5)
    txns = world.transactions.assign(transaction_id="Z" + world.transactions["transaction_id"])
    labels = pd.DataFrame({"transaction_id": ["Z1"], "is_fraud": [3],
                           "label_time": [pd.Timestamp("2026-11-01", tz="UTC")]})
    before_digest = _digest(workspace_copy)
    with pytest.raises(ValidationError, match="is_fraud"):
        import_frames(ws.lake(), txns, labels)
    assert _counts(workspace_copy) == before
    assert _digest(workspace_copy) == before_digest


def test_missing_workspace_is_named_and_not_created(tmp_path, capsys):
    code = main(["--workspace", str(tmp_path / "nowhere"), "score", "--model", "x"])
    assert code == 2
    assert not (tmp_path / "nowhere").exists()
    assert "nowhere" in capsys.readouterr().err
