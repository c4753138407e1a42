"""What the workspace holds, as the Home page and the model pickers show it: registered models
in a fixed order, and for each the command that would fill what it lacks. No Streamlit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from explainers.schema import FeatureSchema

__all__ = ["ModelInfo", "ModelStatus", "model_infos", "model_statuses"]


@dataclass(frozen=True)
class ModelInfo:
    """A registered model as the pages show it."""

    model_id: str
    name: str
    version: str
    framework: str
    stage: str
    roc_auc: float | None
    pr_auc: float | None
    created_at: str
    schema: FeatureSchema


def model_infos(manifests: Iterable[Mapping[str, Any]]) -> list[ModelInfo]:
    """Registered models (manifest dicts), champions first, then by name and version."""
    out = []
    for m in manifests:
        metrics = m.get("metrics", {})
        out.append(ModelInfo(
            m["model_id"], m["name"], str(m["version"]), m["framework"], m["stage"],
            metrics.get("roc_auc"), metrics.get("pr_auc"), str(m.get("created_at", "")),
            FeatureSchema.from_dict(m["feature_schema"])))
    stage_order = {"champion": 0, "candidate": 1, "archived": 2}
    return sorted(out, key=lambda i: (stage_order.get(i.stage, 3), i.name, i.version))


@dataclass(frozen=True)
class ModelStatus:
    """A model with what the warehouse holds for it and the next command to run, if any."""

    info: ModelInfo
    scored: int
    stored: int
    next_command: str | None

    @property
    def shap_share(self) -> float:
        return self.stored / self.scored if self.scored else 0.0


def model_statuses(infos: list[ModelInfo], scored: pd.DataFrame,
                   coverage: pd.DataFrame) -> list[ModelStatus]:
    """Join models with their scored and SHAP-stored counts; name the command each lacks:
    `fraudlens score` when unscored, `fraudlens explain` when SHAP is missing or partial."""
    n_scored = dict(zip(scored["model_id"], scored["scored"], strict=True))
    n_stored = dict(zip(coverage["model_id"], coverage["stored"], strict=True))
    out = []
    for info in infos:
        s, st_ = int(n_scored.get(info.model_id, 0)), int(n_stored.get(info.model_id, 0))
        command = None
        if s == 0:
            command = f"fraudlens score --model {info.model_id}"
        elif st_ < s:
            command = f"fraudlens explain --model {info.model_id}"
        out.append(ModelStatus(info, s, st_, command))
    return out
