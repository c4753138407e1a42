"""Transactions' model features by id, and seeded labelled samples of a cohort: what global
importance, beeswarms and model comparisons read besides the SHAP store."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from data_access.shap_store import Cohort
from data_access.warehouse import fetch_df, quote_ident
from explainers.schema import FeatureSchema

__all__ = ["feature_rows", "labelled_sample"]


def feature_rows(con: duckdb.DuckDBPyConnection, ids: Sequence[str],
                 features: Sequence[str]) -> pd.DataFrame:
    """transaction_id (as text) and the named feature columns of the given transactions,
    ordered by transaction_id."""
    cols = ", ".join(f"t.{quote_ident(f)}" for f in features)
    frame = fetch_df(con, f"SELECT t.transaction_id, {cols} FROM transactions t WHERE "
                     "t.transaction_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY "
                     "t.transaction_id", [list(ids)])
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    return frame


def labelled_sample(con: duckdb.DuckDBPyConnection, model_id: str, schema: FeatureSchema,
                    cohort: Cohort, limit: int, seed: int) -> pd.DataFrame:
    """A seeded sample of at most `limit` of the cohort's scored, labelled transactions:
    transaction_id, the model's features, is_fraud."""
    where, params = cohort.where(schema.categorical)
    cols = ", ".join(f"t.{quote_ident(n)}" for n in schema.names)
    return fetch_df(
        con,
        f"SELECT t.transaction_id, {cols}, l.is_fraud FROM transactions t "
        "JOIN scores sc ON sc.transaction_id = t.transaction_id AND sc.model_id = ? "
        f"JOIN labels l ON l.transaction_id = t.transaction_id WHERE {where} "
        "ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
        [model_id, *params, str(seed), int(limit)])
