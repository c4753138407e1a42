"""A workspace folder: the lake, the local model registry and the journal beside them."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from data_access.lake import DATASETS, Lake
from data_access.registry import LocalRegistryRoot, ModelRegistry
from data_access.warehouse import open_lake_for, open_reader, workspace_dir
from explainers.errors import WarehouseError

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
    def lake_path(self) -> Path:
        return self.path / "lake"

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A hardened connection with the lake's datasets as views (nothing is locked)."""
        return open_reader(self.path)

    def lake(self, create: bool = False) -> Lake:
        return open_lake_for(self.path, create=create)

    def sync_models(self) -> None:
        """Mirror the registry into the lake's `models` dataset, when there is a lake."""
        try:
            lake = self.lake()
        except WarehouseError:
            return
        try:
            sync_models(lake, self.registry)
        finally:
            lake.close()


def sync_models(lake: Lake, registry: ModelRegistry) -> int:
    """Mirror the registry's manifests into the lake's `models` dataset (one file, replaced)."""
    manifests = registry.list()
    now = pd.Timestamp.now(tz=UTC)
    rows = [{"model_id": m.key, "name": m.name, "version": m.version, "framework": m.framework,
             "stage": m.stage, "sha256": m.sha256,
             "roc_auc": _float(m.metrics.get("roc_auc")), "pr_auc": _float(m.metrics.get("pr_auc")),
             "manifest": json.dumps(m.to_dict(), sort_keys=True), "synced_at": now}
            for m in manifests]
    frame = pd.DataFrame(rows, columns=list(DATASETS["models"]))
    frame["synced_at"] = pd.to_datetime(frame["synced_at"], utc=True)
    for col in ("roc_auc", "pr_auc"):
        frame[col] = frame[col].astype("float64")
    lake.publish("models/models.parquet", pa.Table.from_pandas(frame, preserve_index=False))
    lake.refresh(force=True)
    return len(manifests)


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")
