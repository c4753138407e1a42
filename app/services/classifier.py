"""Classifier statistics of compared models on the matured holdout Model Comparison uses:
ROC and PR curves, confusion matrices at any threshold, lift by decile
(`explainers.classifier_stats`). No Streamlit, no SQL."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from app.services import model_comparison as comparison
from data_access.registry import Manifest
from explainers.classifier_stats import ClassifierStats, classifier_stats

__all__ = ["holdout_classifier_stats"]


def holdout_classifier_stats(con: duckdb.DuckDBPyConnection, manifests: Sequence[Manifest],
                             settings: comparison.ComparisonSettings
                             ) -> tuple[ClassifierStats, ...]:
    """One `ClassifierStats` per model on the same matured holdout as `build_report`."""
    ids = [m.key for m in manifests]
    train_end, warnings = comparison._training_end(manifests)
    as_of = comparison._as_of(con, settings.as_of)
    h = comparison._select_holdout(con, ids, train_end, as_of, None, settings, warnings)
    amount = h.frame["amount_usd"].to_numpy(dtype=float)
    return tuple(classifier_stats(m, h.y, h.frame[f"score_{m}"].to_numpy(dtype=float), amount)
                 for m in ids)
