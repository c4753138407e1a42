"""Explain rows of a transactions frame with a loaded model: the one call that batch jobs
(`jobs.explain`) and interactive services (a case, a comparison, the pattern review) share."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from explainers.explanation import Explanation
    from explainers.model import LoadedModel

__all__ = ["explain_frame"]


def explain_frame(model: LoadedModel, frame: pd.DataFrame) -> Explanation:
    """Explain rows of a transactions frame (with `transaction_id`); the backend raises if
    base + sum(SHAP) != margin. The SHAP engine is imported only when this runs."""
    from explainers.backends import explain

    return explain(model, model.prepare(frame), row_ids=frame["transaction_id"].to_numpy())
