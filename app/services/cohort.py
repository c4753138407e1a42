"""A model's behaviour over a cohort (the Global Patterns page): the cohort the widgets
describe, importance by three measures in words, and the SHAP sample as an Explanation.
No Streamlit and no SQL: `app.shell.caches` reads and caches, this module decides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from data_access.shap_store import Cohort
from explainers.explanation import Explanation
from explainers.schema import FeatureSchema

__all__ = ["IMPORTANCE_MEASURES", "ImportanceView", "cohort_of", "importance_view",
           "sample_explanation"]

IMPORTANCE_MEASURES = ("Mean |SHAP| (this cohort)", "Gain (the model's own)",
                       "Permutation (ROC AUC drop)")


def cohort_of(since: date | None = None, until: date | None = None, min_score: float = 0.0,
              max_score: float = 1.0, segment: str | None = None,
              segment_value: str | None = None) -> Cohort:
    """The Cohort the pattern widgets describe: `until` is the last day shown (inclusive),
    score bounds at 0 and 1 mean no bound, a segment needs both a feature and a value."""
    has_segment = bool(segment) and segment_value is not None
    return Cohort(since=since, until=None if until is None else until + timedelta(days=1),
                  min_score=None if min_score <= 0 else float(min_score),
                  max_score=None if max_score >= 1 else float(max_score),
                  segment=segment if has_segment else None,
                  segment_value=str(segment_value) if has_segment else None)


@dataclass(frozen=True)
class ImportanceView:
    """One importance measure ready to draw: the table (None when it cannot be computed),
    its value column, axis title, and a note saying what it measures."""

    table: pd.DataFrame | None
    value: str
    title: str
    note: str


def importance_view(measure: str, table: pd.DataFrame | None, meanings: Mapping[str, str],
                    permutation: tuple[int, float] | None = None) -> ImportanceView:
    """`table` (mean |SHAP|, gain or permutation, by `measure`) with each feature's meaning and
    a note on what the measure says; `permutation` is (rows used, baseline AUC)."""
    if measure == IMPORTANCE_MEASURES[1]:
        view = ImportanceView(table, "gain", "Share of total gain",
                              "How much each feature's splits improved the model in training; "
                              "it does not depend on the cohort.")
    elif measure == IMPORTANCE_MEASURES[2]:
        if table is None or permutation is None:
            return ImportanceView(None, "auc_drop", "", "Permutation importance needs both "
                                  "fraud and legit labels in the cohort; this cohort has only "
                                  "one kind, or no labels yet.")
        n, auc = permutation
        view = ImportanceView(table, "auc_drop", "ROC AUC lost when shuffled",
                              f"Seeded sample of {n:,} labelled cohort transactions, baseline "
                              f"ROC AUC {auc:.3f} (the sample may include training rows), "
                              "3 shuffles per feature.")
    else:
        view = ImportanceView(table, "mean_abs_shap", "Mean |SHAP| (log-odds)",
                              "Average size of each feature's contribution over the cohort.")
    described = view.table.assign(description=view.table["feature"].map(meanings))
    return ImportanceView(described, view.value, view.title, view.note)


def sample_explanation(shap: pd.DataFrame, feats: pd.DataFrame,
                       schema: FeatureSchema) -> Explanation | None:
    """Stored SHAP rows and the same transactions' features as an Explanation (values, base
    value, model-input data); None for an empty sample."""
    if shap.empty:
        return None
    data = schema.model_input(feats).frame.reset_index(drop=True)
    return Explanation(values=shap[schema.names].to_numpy(dtype=float),
                       base_value=float(shap["base_value"].iloc[0]),
                       feature_names=tuple(schema.names), data=data,
                       flagged=shap["flagged"].to_numpy(dtype=bool),
                       row_ids=shap["transaction_id"].to_numpy(dtype=object))
