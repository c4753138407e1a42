"""Models trained outside FraudLens: `models register` records their training window, seed and
metrics, and `compare` works when a window is unknown (matured labels alone, with a warning)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from catboost import CatBoostClassifier, Pool

from app.cli.main import main
from app.services.model_comparison import _training_end
from data_access.registry import Manifest, parse_metrics, training_window
from data_access.workspace import Workspace
from explainers.errors import ManifestError
from explainers.model import catboost_frame, framework
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "amount_usd", "dtype": "float", "source": "stream", "description": "Amount"},
    {"name": "n_1h", "dtype": "int", "source": "stream", "description": "Transactions in 1 h"},
    {"name": "country", "dtype": "category", "categories": ["US", "GB", "DE"]},
]})
START = pd.Timestamp("2025-01-01", tz="UTC")
TRAIN_DAYS = 50


def synthetic(n: int = 3000, days: int = 140, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Transactions over `days` days with features and a label for each, two days later."""
    rng = np.random.default_rng(seed)
    event = START + pd.to_timedelta(np.sort(rng.uniform(0, days, n)), unit="D")
    txns = pd.DataFrame({
        "transaction_id": [f"t{i:05d}" for i in range(n)],
        "account_id": [f"a{i % 300:03d}" for i in range(n)], "event_time": event,
        "amount_usd": rng.lognormal(3, 1, n).round(2), "n_1h": rng.integers(0, 9, n),
        "country": rng.choice(["US", "GB", "DE"], n)})
    risk = (txns["amount_usd"] > 45) & (txns["n_1h"] > 4)
    fraud = (risk | (rng.random(n) < 0.02)) & (rng.random(n) < 0.8)
    labels = pd.DataFrame({"transaction_id": txns["transaction_id"],
                           "is_fraud": fraud.astype(int), "label_time": event + pd.Timedelta("2D")})
    return txns, labels


def train(txns: pd.DataFrame, labels: pd.DataFrame, tmp: Path) -> dict[str, Path]:
    """A small XGBoost and a small CatBoost model on the first TRAIN_DAYS days, saved."""
    cut = txns["event_time"] < START + pd.Timedelta(days=TRAIN_DAYS)
    x = SCHEMA.model_input(txns[cut]).frame
    y = labels.loc[cut, "is_fraud"].to_numpy()
    booster = xgb.train({"max_depth": 3, "seed": 1, "nthread": 1},
                        xgb.DMatrix(x, y, enable_categorical=True), 20)
    cb = CatBoostClassifier(iterations=20, depth=3, random_seed=1, verbose=0,
                            allow_writing_files=False, thread_count=1)
    cb.fit(Pool(catboost_frame(x, SCHEMA), y, cat_features=SCHEMA.categorical))
    paths = {"xgb": tmp / "xgb.ubj", "cb": tmp / "cb.cbm"}
    paths["xgb"].write_bytes(bytes(booster.save_raw(raw_format="ubj")))
    paths["cb"].write_bytes(framework("catboost").dump(cb, "model.cbm"))
    return paths


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("elsewhere")
    txns, labels = synthetic()
    txns.to_parquet(tmp / "transactions.parquet")
    labels.to_parquet(tmp / "labels.parquet")
    (tmp / "schema.json").write_text(json.dumps(SCHEMA.to_dict()))
    return {**train(txns, labels, tmp), "tmp": tmp}


def cli(ws: Path, *args: str) -> int:
    return main(["--workspace", str(ws), *args])


def register(ws: Path, files: dict[str, Path], key: str, fw: str, *extra: str) -> int:
    name, version = key.split("@")
    return cli(ws, "models", "register", str(files["xgb" if fw == "xgboost" else "cb"]),
               "--name", name, "--version", version, "--framework", fw,
               "--schema", str(files["tmp"] / "schema.json"), *extra)


def test_register_records_window_seed_and_metrics(elsewhere, tmp_path, capsys):
    ws = tmp_path / "ws"
    assert register(ws, elsewhere, "ext_xgb@1", "xgboost", "--training-start", "2025-01-01",
                    "--training-end", "2025-02-19", "--seed", "11",
                    "--metrics", '{"roc_auc": 0.9, "pr_auc": 0.4}') == 0
    manifest = Workspace.at(ws).registry.resolve("ext_xgb@1")
    assert manifest.training_window == {"start": "2025-01-01T00:00:00+00:00",
                                        "end": "2025-02-19T23:59:59.999999+00:00"}
    assert manifest.seed == 11 and manifest.metrics == {"roc_auc": 0.9, "pr_auc": 0.4}


@pytest.mark.parametrize(("args", "words"), [
    (("--training-start", "2025-03-01", "--training-end", "2025-02-01"), "must start before"),
    (("--training-start", "2025-02-01", "--training-end", "2025-02-01"), "must start before"),
    (("--metrics", "{not json"), "JSON object of numbers"),
    (("--metrics", '{"roc_auc": 0.9}'), "pr_auc"),
    (("--metrics", '{"roc_auc": "high", "pr_auc": 0.4}'), "JSON object of numbers"),
])
def test_bad_window_or_metrics_is_one_line_and_registers_nothing(elsewhere, tmp_path, capsys,
                                                                 args, words):
    ws = tmp_path / "ws"
    assert register(ws, elsewhere, "ext_xgb@1", "xgboost", *args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (ws / "models" / "ext_xgb").exists()


def test_a_date_that_is_not_iso_is_refused_by_the_parser(elsewhere, tmp_path):
    with pytest.raises(SystemExit) as info:
        register(tmp_path / "ws", elsewhere, "ext_xgb@1", "xgboost", "--training-end", "19/02")
    assert info.value.code == 2


def test_training_window_and_metrics_helpers():
    assert training_window(None, None) == {"start": "", "end": ""}
    with pytest.raises(ManifestError, match="must start before"):
        training_window(pd.Timestamp("2025-02-02").date(), pd.Timestamp("2025-02-01").date())
    assert parse_metrics(None) is None
    with pytest.raises(ManifestError):
        parse_metrics('{"roc_auc": NaN, "pr_auc": 0.4}')


def _manifest(key: str, end: str) -> Manifest:
    name, version = key.split("@")
    return Manifest.from_dict({
        "name": name, "version": version, "framework": "xgboost", "library_version": "3",
        "artifact": "model.ubj", "sha256": "0" * 64, "feature_schema": SCHEMA.to_dict(),
        "target": "is_fraud", "training_window": {"start": "", "end": end}, "seed": 0,
        "metrics": {"roc_auc": 0.5, "pr_auc": 0.5}, "created_at": "", "stage": "candidate"})


def test_unknown_training_ends_give_a_warning_not_an_empty_holdout():
    end, warnings = _training_end([_manifest("a@1", ""), _manifest("b@1", "not a date")])
    assert end is None
    assert len(warnings) == 1 and "a@1, b@1" in warnings[0] and "matured labels alone" in \
        warnings[0]
    end, warnings = _training_end([_manifest("a@1", "2025-02-19T23:59:59+00:00"),
                                   _manifest("b@1", "")])
    assert end == pd.Timestamp("2025-02-19T23:59:59", tz="UTC") and "b@1" in warnings[0]


@pytest.mark.parametrize("window", ["none", "one"])
def test_compare_works_for_models_trained_elsewhere(elsewhere, tmp_path, capsys, window):
    ws = tmp_path / "ws"
    xgb_window = (("--training-start", "2025-01-01", "--training-end", "2025-02-19")
                  if window == "one" else ())
    assert register(ws, elsewhere, "ext_xgb@1", "xgboost", *xgb_window) == 0
    assert register(ws, elsewhere, "ext_cb@1", "catboost") == 0
    tmp = elsewhere["tmp"]
    assert cli(ws, "import", "transactions", str(tmp / "transactions.parquet"), "--labels",
               str(tmp / "labels.parquet")) == 0
    for key in ("ext_xgb@1", "ext_cb@1"):
        assert cli(ws, "score", "--model", key) == 0
    capsys.readouterr()
    assert cli(ws, "compare", "ext_xgb@1", "ext_cb@1", "--out", str(tmp_path / "r.html"),
               "--resamples", "20") == 0
    out = capsys.readouterr().out
    holdout = next(line for line in out.splitlines() if line.startswith("holdout:"))
    rows = int(holdout.split()[1].replace(",", ""))
    assert rows > 100
    if window == "one":
        assert "inside a candidate's training window" in out
    html = (tmp_path / "r.html").read_text()
    assert "No training window end is recorded for" in html
