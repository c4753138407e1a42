"""AWS fixtures: moto in server mode, a real HTTP endpoint on a loopback port."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

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
