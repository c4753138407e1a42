"""The SHAP store: exact, additive, resumable, idempotent, and what the exports write."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app.cli.main import main
from data_access import shap_store
from data_access.lake import model_key
from data_access.shap_store import Cohort
from data_access.workspace import Workspace
from explainers.frames import explain_frame
from jobs.explain import fill_store

FEATURE_COLS = slice(2, None)


def test_stored_values_add_up_to_the_scored_margin(demo_workspace):
    con = Workspace(demo_workspace).reader()
    for model_id in ("fraud_xgb@1", "fraud_catboost@1"):
        table, features = shap_store.stored_table(con, model_id)
        total = " + ".join(f'"{f}"' for f in features)
        worst, n = con.execute(
            f"SELECT max(abs(s.base_value + {total} - sc.margin)), count(*) FROM {table} s "
            "JOIN scores sc ON sc.transaction_id = s.transaction_id AND sc.model_id = ?",
            [model_id]).fetchall()[0]
        assert n == 20_000
        assert worst < 1e-4


def test_stored_row_equals_on_demand_explanation(demo_workspace):
    ws = Workspace(demo_workspace)
    model = ws.registry.load("fraud_catboost@1")
    con = ws.reader()
    frame = con.execute("SELECT * FROM transactions ORDER BY amount_usd DESC LIMIT 3").df()
    stored = shap_store.values(con, model.key).set_index("transaction_id")
    expl = explain_frame(model, frame)
    for i, txn in enumerate(frame["transaction_id"]):
        np.testing.assert_allclose(stored.loc[txn, list(expl.feature_names)].to_numpy(float),
                                   expl.values[i], atol=1e-9)


def _store_count(ws: Workspace, model_id: str) -> int:
    con = ws.reader()
    stored = shap_store.stored_table(con, model_id)
    if stored is None:
        return 0
    return con.execute(f"SELECT count(*) FROM {stored[0]}").fetchall()[0][0]


def _drop_store(workspace: Path, model_id: str) -> None:
    shutil.rmtree(workspace / "lake" / "shap" / f"model={model_key(model_id)}")


def test_explain_is_resumable_and_idempotent(workspace_copy):
    ws = Workspace(workspace_copy)
    _drop_store(workspace_copy, "fraud_xgb@1")
    lake = ws.lake()
    model = ws.registry.load("fraud_xgb@1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fill_store(lake, model, fail_after_files=2)
    partial = _store_count(ws, "fraud_xgb@1")
    assert 0 < partial < 20_000
    assert fill_store(lake, model) == 20_000 - partial
    assert fill_store(lake, model) == 0
    table, _ = shap_store.stored_table(lake.con, "fraud_xgb@1")
    dups = lake.con.execute(f"SELECT count(*) - count(DISTINCT transaction_id) FROM {table}"
                            ).fetchall()[0][0]
    assert dups == 0
    assert _store_count(ws, "fraud_xgb@1") == 20_000


def test_seeded_sample_is_stable_across_resumes(workspace_copy):
    ws = Workspace(workspace_copy)
    _drop_store(workspace_copy, "fraud_catboost@1")
    lake = ws.lake()
    model = ws.registry.load("fraud_catboost@1")
    n = fill_store(lake, model, sample=1_500, seed=3)
    assert 1_300 <= n <= 1_700  # a seeded per-row hash keeps about the asked share
    table, _ = shap_store.stored_table(lake.con, model.key)
    first = set(lake.con.execute(f"SELECT transaction_id FROM {table}").df()["transaction_id"])
    assert fill_store(lake, model, sample=1_500, seed=3) == 0
    _drop_store(workspace_copy, "fraud_catboost@1")
    with pytest.raises(RuntimeError, match="simulated crash"):
        fill_store(lake, model, sample=1_500, seed=3, fail_after_files=5)
    fill_store(lake, model, sample=1_500, seed=3)
    second = set(lake.con.execute(f"SELECT transaction_id FROM {table}").df()["transaction_id"])
    assert first == second


def test_shap_summary_export_matches_the_values_export(workspace_copy, tmp_path: Path):
    ws = str(workspace_copy)  # exports write audit records: keep the shared workspace as it is
    args = ["--since", "2026-10-01", "--until", "2026-10-15"]
    assert main(["--workspace", ws, "export", "shap-summary", "--model", "fraud_xgb", *args,
                 "--out", str(tmp_path / "summary.csv")]) == 0
    assert main(["--workspace", ws, "export", "shap-values", "--model", "fraud_xgb", *args,
                 "--out", str(tmp_path / "values.parquet")]) == 0
    summary = pd.read_csv(tmp_path / "summary.csv")
    values = pd.read_parquet(tmp_path / "values.parquet")
    assert list(summary.columns) == ["feature", "description", "mean_abs_shap", "mean_shap",
                                     "rank", "model", "cohort", "row_count"]
    assert summary["description"].notna().all()  # each feature's meaning from the schema
    assert list(values.columns[:2]) == ["transaction_id", "base_value"]
    per_feature = values.iloc[:, FEATURE_COLS]
    expected = (per_feature.abs().mean().rename("m").rename_axis("f").reset_index()
                .sort_values(["m", "f"], ascending=[False, True]).set_index("f")["m"])
    assert summary["row_count"].iloc[0] == len(values) > 1_000
    assert list(summary["feature"]) == list(expected.index)
    np.testing.assert_allclose(summary["mean_abs_shap"], expected.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(summary.set_index("feature")["mean_shap"],
                               per_feature.mean()[summary["feature"]], rtol=1e-9, atol=1e-12)
    assert (summary["model"] == "fraud_xgb@1").all()
    assert summary["rank"].tolist() == list(range(1, len(summary) + 1))


def test_cli_exports_are_audited_and_refused_without_an_audit_trail(workspace_copy, tmp_path):
    import hashlib

    from data_access.audit import AuditLog
    from data_access.journal import open_journal

    def exports():
        journal = open_journal(workspace_copy)
        try:
            assert AuditLog(journal).verify().ok
            return AuditLog(journal).records(action="export")  # newest first
        finally:
            journal.close()

    before = len(exports())
    out = tmp_path / "summary.csv"
    assert main(["--workspace", str(workspace_copy), "export", "shap-summary", "--model",
                 "fraud_catboost", "--out", str(out)]) == 0
    records = exports()
    assert len(records) == before + 1
    details = records.iloc[0]["details"]
    assert hashlib.sha256(out.read_bytes()).hexdigest() in details
    assert '"rows":22' in details
    # a journal that cannot be written (here: not a database) means no export at all
    (workspace_copy / "journal.sqlite").unlink()
    (workspace_copy / "journal.sqlite").write_bytes(b"not a database")
    out2 = tmp_path / "again.csv"
    assert main(["--workspace", str(workspace_copy), "export", "shap-summary", "--model",
                 "fraud_catboost", "--out", str(out2)]) == 2
    assert not out2.exists()


def test_cohort_filters_change_the_summary(demo_workspace):
    con = Workspace(demo_workspace).reader()
    try:
        segs = ["txn_type"]
        everything = shap_store.summary(con, "fraud_xgb@1", Cohort(), segs)
        risky = shap_store.summary(con, "fraud_xgb@1", Cohort(min_score=0.5), segs)
        cards = shap_store.summary(con, "fraud_xgb@1",
                                   Cohort(segment="txn_type", segment_value="card_purchase"), segs)
        injected = shap_store.summary(con, "fraud_xgb@1",
                                      Cohort(segment="txn_type", segment_value="' OR 1=1--"), segs)
    finally:
        con.close()
    assert everything["row_count"].iloc[0] == 20_000
    assert 0 < risky["row_count"].iloc[0] < 1_000
    assert 0 < cards["row_count"].iloc[0] < 20_000
    assert injected["row_count"].iloc[0] == 0
    assert list(risky["feature"][:3]) != list(everything["feature"][:3]) or not np.allclose(
        risky["mean_abs_shap"], everything["mean_abs_shap"])


def test_audit_verify_detects_an_edited_record(workspace_copy, capsys):
    import sqlite3

    ws = str(workspace_copy)
    assert main(["--workspace", ws, "export", "shap-summary", "--model", "fraud_xgb",
                 "--out", str(workspace_copy.parent / "s.csv")]) == 0
    assert main(["--workspace", ws, "audit", "verify"]) == 0
    assert "hash chain verified" in capsys.readouterr().out
    con = sqlite3.connect(workspace_copy / "journal.sqlite", isolation_level=None)
    try:
        con.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = "
                    "(SELECT max(seq) FROM audit_log)").fetchall()
    finally:
        con.close()
    assert main(["--workspace", ws, "audit", "verify"]) == 3
    assert "audit trail broken at record" in capsys.readouterr().err
