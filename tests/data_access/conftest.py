"""A real PostgreSQL server for the journal (Debian's binaries, `make postgres`). The AWS
fixtures (moto in server mode) live in tests/conftest.py, shared with tests/jobs."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# --------------------------------------------------------------------------- PostgreSQL


def _postgres_bindir() -> Path:
    """The newest Debian PostgreSQL server binaries; fail (not skip) without them."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not found:
        pytest.fail("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb): "
                    "run `make postgres`, which installs Debian's postgresql package", False)
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, user `fraudlens`)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._made = 0

    def url(self, database: str) -> str:
        return f"postgresql://fraudlens@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        self._made += 1
        name = f"journal_{os.getpid()}_{self._made}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')  # name built above, not user input
        return self.url(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """initdb + pg_ctl start in a temp dir, as the `postgres` user when run as root (the server
    refuses root); stopped and removed at the end of the session."""
    bindir = _postgres_bindir()
    root = Path(tempfile.mkdtemp(prefix="fraudlens-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
    data, log = root / "data", root / "server.log"
    port = _free_port()
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}\n{tail}",
                        False)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "fraudlens",
            "-E", "UTF8", "--locale=C", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w",
            "-t", "60", "start")
        server = PostgresServer(port)
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """A database on the session's server, shared by the session."""
    return postgres_server.new_database()


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """A database of this test's own."""
    return postgres_server.new_database()
