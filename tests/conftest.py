"""Shared fixtures: one small seeded demo workspace per test session."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
    """A private copy of the demo workspace that a test may change. Results kept in its
    `.cache` by any earlier test are left behind, so no test depends on the order."""
    target = tmp_path / "workspace"
    shutil.copytree(demo_workspace, target, ignore=shutil.ignore_patterns(".cache"))
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


# --------------------------------------------------------------------------- AWS (moto)

FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SAGEMAKER")


@contextmanager
def moto_server() -> Iterator[tuple[str, object]]:
    """A ThreadedMotoServer on 127.0.0.1 and a free port (the OS picks it, no race):
    (endpoint URL, server)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}", server
    finally:
        stop_moto(server)


def stop_moto(server: object) -> None:
    """Stop serving and close the listening socket (idempotent): connections are refused."""
    inner = getattr(server, "_server", None)
    if getattr(server, "_stopped", False):
        return
    server.stop()  # type: ignore[attr-defined]
    if inner is not None:
        inner.server_close()
    server._stopped = True  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def aws_env() -> Iterator[None]:
    """Fake credentials and region; nothing from the user's AWS configuration."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAKE_AWS_ENV.items():
            mp.setenv(key, value)
        for key in UNSET:
            mp.delenv(key, raising=False)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(aws_env: None) -> Iterator[str]:
    """The endpoint URL of a moto server shared by the session (S3 and SageMaker)."""
    with moto_server() as (url, _server):
        yield url


class PrivateMoto:
    """A moto server of one's own, for a test that stops it: `.url`, `.stop()`."""

    def __init__(self, url: str, server: object) -> None:
        self.url = url
        self._server = server

    def stop(self) -> None:
        stop_moto(self._server)


@pytest.fixture
def private_moto(aws_env: None) -> Iterator[PrivateMoto]:
    """A moto server only this test uses (it may stop it); stopped at the end regardless."""
    with moto_server() as (url, server):
        yield PrivateMoto(url, server)
