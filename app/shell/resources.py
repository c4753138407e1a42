"""Streamlit resources: the workspace, its read-only warehouse, the journal, loaded models.

The one place the app caches connections and models (`st.cache_resource`, never mutated
by callers) and the manifest list (`st.cache_data`, 30 s). Everything is keyed by the workspace
path, so changing `FRAUDLENS_WORKSPACE` never serves another workspace's connection. Nothing
here creates a lake: a missing or unreachable one raises WarehouseError.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import duckdb
import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from data_access.audit import AuditLog
from data_access.journal import Journal, open_journal
from data_access.lake import Lake, cursor_for
from data_access.registry_roots import registry_status
from data_access.workspace import Workspace
from explainers.errors import (
    ChecksumError,
    FraudLensError,
    RegistryError,
    RegistryUnavailableError,
)
from explainers.model import LoadedModel

__all__ = ["audit", "data_version", "journal", "lake_cursor", "load_model", "manifests",
           "refused_files", "workspace"]

_LOG = logging.getLogger(__name__)


def _workspace_path() -> str:
    return os.environ.get("FRAUDLENS_WORKSPACE") or "workspace"


@st.cache_resource(show_spinner=False)
def _workspace_at(path: str) -> Workspace:
    return Workspace.at(path)


def workspace() -> Workspace:
    """The workspace named by FRAUDLENS_WORKSPACE (default `workspace/`)."""
    return _workspace_at(_workspace_path())


@st.cache_resource(show_spinner=False)
def _lake_at(path: str) -> Lake:
    lake = Workspace.at(path).lake()
    lake.follow()  # a daemon thread lists the lake; requests only read its snapshot
    return lake


@contextmanager
def lake_cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor of its own over the lake's views, closed afterwards: the one way the app reads
    the lake. DuckDB connections are not thread-safe, so the shared hardened connection (re-
    pointed at new files when the lake changed) is never handed out; every use gets a cursor."""
    lake = _lake_at(_workspace_path())
    lake.refresh_if_stale()
    cur = cursor_for(lake.con)
    try:
        yield cur
    finally:
        cur.close()


def data_version() -> str:
    """The lake's data version: part of every cached result's key, so new data shows at once."""
    lake = _lake_at(_workspace_path())
    lake.refresh_if_stale()
    return lake.version


def refused_files() -> tuple[tuple[str, str], ...]:
    """Lake files refused for a wrong schema: (path, why); the rest still serve."""
    return _lake_at(_workspace_path()).snapshot.refused


def _audit_key() -> str | None:
    """`[audit] hmac_key` from the secrets, if set ($FRAUDLENS_AUDIT_KEY wins over it)."""
    try:
        section = st.secrets.get("audit")
    except (FileNotFoundError, StreamlitSecretNotFoundError):
        return None
    key = section.get("hmac_key") if isinstance(section, Mapping) else None
    return str(key) if key else None


@st.cache_resource(show_spinner=False)
def _journal_at(path: str) -> Journal:
    return open_journal(path, audit_key=_audit_key())


def journal() -> Journal:
    """The journal (audit_log, findings, annotations; SQLite or PostgreSQL). Thread-safe: it
    holds no connection, each operation opens its own, so every session thread may use it."""
    return _journal_at(_workspace_path())


@st.cache_resource(show_spinner=False)
def _audit_at(path: str) -> AuditLog:
    return AuditLog(_journal_at(path))


def audit() -> AuditLog:
    """The audit trail in the journal (signed checkpoints beside it)."""
    return _audit_at(_workspace_path())


@st.cache_data(ttl=30, show_spinner=False)
def _manifests_at(path: str) -> list[dict[str, Any]]:
    return [{**m.to_dict(), "model_id": m.key} for m in _workspace_at(path).registry.list()]


def manifests() -> list[dict[str, Any]]:
    """Registered manifests as dicts (the registry contract's fields plus `model_id`).

    A remote registry that cannot be reached serves its last verified copy (and the page says
    so); with no copy at all, the page shows "registry unavailable" and stops, no traceback."""
    try:
        found = _manifests_at(_workspace_path())
    except RegistryUnavailableError as exc:
        st.error(f"Model registry unavailable: {exc}")
        st.stop()
    degraded, message = registry_status(workspace().registry.root)
    if degraded:
        st.warning(message or "Model registry unavailable; serving the last verified models.")
    return found


@st.cache_resource(show_spinner=False, max_entries=16)
def _model_at(path: str, model_id: str, sha256: str) -> LoadedModel:
    registry = _workspace_at(path).registry
    manifest = registry.resolve(model_id)
    if manifest.sha256 != sha256:
        raise RegistryError(f"{model_id} changed while loading; try again")
    return registry.load(manifest)


@dataclass
class _LastVerified:
    """Per workspace: the last model that passed verification for each model id."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    models: dict[str, LoadedModel] = field(default_factory=dict)


@st.cache_resource(show_spinner=False)
def _last_verified_at(path: str) -> _LastVerified:
    return _LastVerified()


def load_model(model_id: str) -> LoadedModel:
    """A verified model, cached per id and manifest checksum.

    If the current artifact fails verification (or the registry cannot be read), the last
    model that verified keeps serving and a warning says so; with none, the error propagates.
    """
    path = _workspace_path()
    last = _last_verified_at(path)
    try:
        manifest = _workspace_at(path).registry.resolve(model_id)
        model = _model_at(path, model_id, manifest.sha256)
    except (ChecksumError, RegistryError, FraudLensError) as exc:
        with last.lock:
            fallback = last.models.get(model_id)
        if fallback is None:
            raise
        _LOG.warning("serving last verified %s: %s", model_id, exc)
        st.warning(f"{exc} — still using the last verified {fallback.name} "
                   f"version {fallback.version}.")
        return fallback
    with last.lock:
        last.models[model_id] = model
    return model
