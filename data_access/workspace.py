"""A workspace folder: the warehouse file and the local model registry beside it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import duckdb

from data_access.registry import LocalRegistryRoot, ModelRegistry
from data_access.warehouse import open_reader, open_writer, run_sql, transaction, workspace_dir

MODELS_DIR = "models"


@dataclass(frozen=True)
class Workspace:
    """A workspace folder; `Workspace("dir")` and `Workspace.at(None)` both work."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def at(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        return cls(workspace_dir(path))

    @cached_property
    def registry(self) -> ModelRegistry:
        """The workspace's model registry: `models/` in the workspace, or the root named by
        FRAUDLENS_REGISTRY (`s3://bucket/prefix`, `sagemaker://group`) with a verified local
        cache in the workspace. Kept per Workspace object so a remote root's degraded state
        and retry cool-down last."""
        spec = os.environ.get("FRAUDLENS_REGISTRY")
        if not spec:
            return ModelRegistry(LocalRegistryRoot(self.path / MODELS_DIR))
        from data_access.registry_roots import CACHE_DIR, open_root

        endpoint = os.environ.get("FRAUDLENS_REGISTRY_ENDPOINT_URL")
        return ModelRegistry(open_root(spec, cache_dir=self.path / CACHE_DIR,
                                       endpoint_url=endpoint))

    @property
    def warehouse(self) -> Path:
        from data_access.warehouse import WAREHOUSE_FILE

        return self.path / WAREHOUSE_FILE

    def reader(self) -> duckdb.DuckDBPyConnection:
        return open_reader(self.path)

    def writer(self, create: bool = False) -> duckdb.DuckDBPyConnection:
        return open_writer(self.path, create=create)


def sync_models(con: duckdb.DuckDBPyConnection, registry: ModelRegistry) -> int:
    """Mirror the registry's manifests into the warehouse's `models` table."""
    manifests = registry.list()
    now = datetime.now(UTC)
    with transaction(con):
        run_sql(con, "DELETE FROM models")
        for m in manifests:
            run_sql(con,
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [m.key, m.name, m.version, m.framework, m.stage, m.sha256,
                 m.metrics.get("roc_auc"), m.metrics.get("pr_auc"),
                 json.dumps(m.to_dict(), sort_keys=True), now])
    return len(manifests)
