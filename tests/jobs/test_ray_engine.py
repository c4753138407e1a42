"""`--engine ray` on a real local Ray cluster (2 CPUs): the same files as the local engine,
exact after a worker dies, clear failures (unreachable cluster, unreadable file, bad model,
Ray missing), on a local lake and on S3 (moto).

The lake holds 60,000 rows in 30 daily files (not the issue's ~200k), so that the module
runs in about three minutes on two busy cores; `bench/bench_ray.py` covers the large case.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from app.cli.main import main
from data_access.lake import open_lake
from data_access.warehouse import import_frames
from data_access.workspace import Workspace, sync_models
from explainers.errors import ChecksumError, EngineError, WarehouseError
from jobs import demo_world, ray_engine, train
from jobs.demo import demo_world_schema, labelled_frame
from jobs.explain import fill_store
from jobs.scoring import score_transactions

ray = pytest.importorskip("ray", reason="the ray extra: pip install fraudlens[ray]")

ROWS = 60_000
DAYS = 30
MODEL = "small@1"
STAMP = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # scored_at fixed: byte-identical files


def _small_model(ws: Workspace, seed: int) -> None:
    """20 trees of depth 3, trained on a world of its own (60 days: labels have matured)."""
    import xgboost as xgb

    from explainers.model import framework

    schema = demo_world_schema()
    split = train.time_split(labelled_frame(demo_world.generate_world(rows=20_000, seed=seed)))
    data = xgb.DMatrix(schema.model_input(split.train).frame, label=split.train[schema.target],
                       enable_categorical=True)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3, "eta": 0.3,
                         "seed": seed, "nthread": 2, "tree_method": "hist",
                         "max_cat_to_onehot": 1}, data, num_boost_round=20)
    ws.registry.register(framework("xgboost").dump(booster, "model.ubj"), name="small",
                         version="1", framework_name="xgboost", artifact_name="model.ubj",
                         schema=schema, metrics={"roc_auc": 0.9, "pr_auc": 0.5})


@pytest.fixture(scope="module")
def ray_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a 60k-row lake and a small registered XGBoost model (read-only)."""
    path = tmp_path_factory.mktemp("rayworld") / "workspace"
    ws = Workspace(path)
    world = demo_world.generate_world(rows=ROWS, seed=11, days=DAYS)
    lake = ws.lake(create=True)
    try:
        import_frames(lake, world.transactions, world.labels, source="ray test")
        _small_model(ws, 11)
        sync_models(lake, ws.registry)
    finally:
        lake.close()
    return path


@pytest.fixture(scope="module")
def cluster(aws_env: None) -> Iterator[None]:
    """A real Ray cluster on this machine (started after the fake AWS env, so workers
    inherit it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs here: no FutureWarning
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def reference(ray_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local engine's scores and SHAP files for the world."""
    path = tmp_path_factory.mktemp("reference") / "workspace"
    shutil.copytree(ray_world, path)
    model = Workspace(path).registry.load(MODEL)
    with closing(open_lake(path)) as lake:
        assert score_transactions(lake, model, scored_at=STAMP) == ROWS
        assert fill_store(lake, model) == ROWS
    return path


@pytest.fixture
def world_copy(ray_world: Path, tmp_path: Path) -> Path:
    target = tmp_path / "workspace"
    shutil.copytree(ray_world, target)
    return target


def _outputs(workspace: Path, dataset: str) -> dict[str, bytes]:
    """Every finished file of a derived dataset: relative path -> bytes."""
    root = workspace / "lake" / dataset
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def _leftovers(workspace: Path) -> list[Path]:
    return [p for p in (workspace / "lake").rglob("*") if p.name.endswith(".tmp")]


def _ref(workspace: Path) -> ray_engine.ModelRef:
    return ray_engine.ModelRef.of(Workspace(workspace), MODEL)


def test_ray_writes_the_local_engines_files_byte_for_byte(cluster, reference: Path,
                                                          world_copy: Path):
    model = Workspace(world_copy).registry.load(MODEL)
    with closing(open_lake(world_copy)) as lake:
        assert ray_engine.score_on_ray(lake, model, _ref(world_copy), scored_at=STAMP) == ROWS
        assert ray_engine.explain_on_ray(lake, model, _ref(world_copy)) == ROWS
        assert ray_engine.score_on_ray(lake, model, _ref(world_copy)) == 0  # resumable
    for dataset in ("scores", "shap"):
        got, want = _outputs(world_copy, dataset), _outputs(reference, dataset)
        assert len(got) == DAYS and got.keys() == want.keys()
        assert [k for k in got if got[k] != want[k]] == []
    assert _leftovers(world_copy) == []


def test_a_worker_killed_mid_job_is_retried_without_duplicates_or_gaps(
        cluster, reference: Path, world_copy: Path, tmp_path: Path):
    marker = tmp_path / "crashed"
    model = Workspace(world_copy).registry.load(MODEL)
    with closing(open_lake(world_copy)) as lake:
        n = ray_engine.score_on_ray(lake, model, _ref(world_copy), scored_at=STAMP,
                                    crash_once=str(marker))
    assert marker.exists()  # a worker did die after publishing a file
    assert n == ROWS
    got = _outputs(world_copy, "scores")
    assert got == _outputs(reference, "scores")
    ids = pd.concat([pq.read_table(world_copy / "lake" / "scores" / k).to_pandas()
                     for k in got])["transaction_id"]
    assert len(ids) == ROWS and ids.is_unique
    assert _leftovers(world_copy) == []


def _corrupt_data_pages(path: Path) -> None:
    """Garble the column data but keep the footer: the schema reads, the rows do not."""
    data = bytearray(path.read_bytes())
    data[4:4 + min(4_000, len(data) // 2)] = b"\xff" * min(4_000, len(data) // 2)
    path.write_bytes(bytes(data))


def test_a_file_a_worker_cannot_read_fails_the_job_by_name(cluster, world_copy: Path):
    day = sorted((world_copy / "lake" / "transactions").iterdir())[5]
    bad = next(day.glob("*.parquet"))
    _corrupt_data_pages(bad)
    model = Workspace(world_copy).registry.load(MODEL)
    with closing(open_lake(world_copy)) as lake, pytest.raises(WarehouseError, match=bad.name):
        ray_engine.score_on_ray(lake, model, _ref(world_copy), scored_at=STAMP)
    assert not (world_copy / "lake" / "scores" / "model=small_401" / day.name /
                bad.name).exists()
    assert _leftovers(world_copy) == []


def test_a_model_failing_its_checksum_on_the_workers_writes_nothing(cluster, world_copy: Path):
    ws = Workspace(world_copy)
    model = ws.registry.load(MODEL)
    ref = _ref(world_copy)
    artifact = world_copy / "models" / "small" / "1" / "model.ubj"
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # changed after the driver loaded it
    with closing(open_lake(world_copy)) as lake, pytest.raises(ChecksumError):
        ray_engine.score_on_ray(lake, model, ref, scored_at=STAMP)
    assert not (world_copy / "lake" / "scores").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_cluster_is_a_clear_error_within_30s(world_copy: Path, capsys):
    address = f"127.0.0.1:{_free_port()}"
    started = time.monotonic()
    rc = main(["--workspace", str(world_copy), "score", "--model", MODEL, "--engine", "ray",
               "--ray-address", address])
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"Cannot reach the Ray cluster at {address}" in err
    assert not (world_copy / "lake" / "scores").exists()
    with pytest.raises(EngineError, match="not HOST:PORT"):
        ray_engine.connect("127.0.0.1:notaport")


def test_without_ray_the_cli_says_how_to_install_it(world_copy: Path, capsys,
                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    for command in ("score", "explain"):
        rc = main(["--workspace", str(world_copy), command, "--model", MODEL,
                   "--engine", "ray"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert "pip install fraudlens[ray]" in err
    assert not (world_copy / "lake" / "scores").exists()


def test_the_cli_explains_a_sampled_window_on_the_cluster_like_the_local_engine(
        cluster, reference: Path, world_copy: Path, tmp_path: Path, capsys):
    local = tmp_path / "local"
    shutil.copytree(world_copy, local)
    for path in (local, world_copy):
        shutil.copytree(reference / "lake" / "scores", path / "lake" / "scores")
    window = ["--since", "2026-11-15", "--sample", "1500", "--seed", "3"]
    assert main(["--workspace", str(world_copy), "score", "--model", MODEL,
                 "--engine", "ray"]) == 0
    assert "scored 0 new transactions" in capsys.readouterr().out
    assert main(["--workspace", str(local), "explain", "--model", MODEL, *window]) == 0
    assert main(["--workspace", str(world_copy), "explain", "--model", MODEL, *window,
                 "--engine", "ray"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == out[1] and "stored SHAP values for" in out[0]
    got = _outputs(world_copy, "shap")
    assert 0 < len(got) < DAYS and got == _outputs(local, "shap")


def test_patterns_on_ray_find_what_the_local_engine_finds(cluster, reference: Path,
                                                          tmp_path: Path):
    """The cases the store lacks are explained on Ray; clustering stays local: same SHAP
    matrix, row for row, so the same findings and members."""
    from app.services import pattern_review
    from data_access.review_queries import Window, last_full_week

    path = tmp_path / "workspace"
    shutil.copytree(reference, path, ignore=shutil.ignore_patterns("shap"))
    ws = Workspace(path)
    model = ws.registry.load(MODEL)
    ref = ray_engine.ModelRef.of(ws, MODEL)
    with closing(ws.reader()) as con:
        week = last_full_week(con)
        assert week is not None
        window = Window(week.since, week.since + timedelta(days=4))  # shorter: test time
        local = pattern_review.mine(con, model, window, seed=5)
        remote = pattern_review.mine(
            con, model, window, seed=5,
            explain_rows=lambda frame: ray_engine.explain_frame_on_ray(ref, frame,
                                                                       min_chunk_rows=200))
    assert local.counts["shap_computed"] > 100 and local.counts == remote.counts
    pd.testing.assert_frame_equal(local.findings, remote.findings)
    pd.testing.assert_frame_equal(local.members, remote.members)


# --------------------------------------------------------------------------- S3 (moto)


def _upload(client, bucket: str, prefix: str, workspace: Path, days: int) -> None:
    lake = workspace / "lake"
    for dataset in ("transactions", "labels"):
        for day in sorted((lake / dataset).iterdir())[-days:]:
            for f in day.glob("*.parquet"):
                client.put_object(Bucket=bucket, Key=f"{prefix}/{f.relative_to(lake)}",
                                  Body=f.read_bytes())


def _objects(client, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                  Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            key = obj["Key"][len(prefix) + 1:]
            if key.startswith(("scores/", "shap/")):
                out[key] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def test_on_an_s3_lake_ray_writes_the_local_engines_files(
        cluster, moto_endpoint: str, reference: Path, world_copy: Path,
        monkeypatch: pytest.MonkeyPatch):
    """Two days of the lake on S3: Ray's objects are the local engine's files, byte for byte
    (the local store and the S3 store publish the same Parquet bytes)."""
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    client.create_bucket(Bucket="ray-lake")
    _upload(client, "ray-lake", "prod", world_copy, days=2)
    monkeypatch.setenv("FRAUDLENS_LAKE", "s3://ray-lake/prod")
    monkeypatch.setenv("FRAUDLENS_LAKE_ENDPOINT_URL", moto_endpoint)
    model = Workspace(world_copy).registry.load(MODEL)
    with closing(open_lake(world_copy)) as lake:
        assert not lake.store.is_local
        rows = ray_engine.score_on_ray(lake, model, _ref(world_copy), scored_at=STAMP)
        assert ray_engine.explain_on_ray(lake, model, _ref(world_copy)) == rows > 0
    got = _objects(client, "ray-lake", "prod")
    want = {f"{d}/{k}": v for d in ("scores", "shap") for k, v in _outputs(reference, d).items()}
    assert len(got) == 4 and got == {k: want[k] for k in got}
