"""Cached, parameterised warehouse queries for the pages: frames and dataclasses out.

`st.cache_data` holds only small results without PII (aggregates, scores, SHAP, the queue's
non-PII columns); anything with PII (a transaction's row, an account search) is queried per
run by id and never cached. Every query runs on its own cursor of the shared read-only
connection.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import pandas as pd
import streamlit as st

from app.services import case as cases
from app.shell.resources import load_model, manifests, reader, workspace
from app.views import charts
from data_access import shap_store
from data_access.shap_store import Cohort
from data_access.warehouse import fetch_df, quote_ident
from explainers.explanation import Explanation
from explainers.schema import FeatureSchema

__all__ = [
    "IMPORTANCE_MEASURES",
    "ImportanceView",
    "ModelInfo",
    "ModelStatus",
    "WarehouseSummary",
    "account_cases",
    "beeswarm_points",
    "beeswarm_sample",
    "case_explanation",
    "case_scores",
    "case_summaries",
    "cohort_explanation",
    "cohort_of",
    "cohort_summary",
    "dependence_points",
    "gain_table",
    "importance",
    "model_info",
    "model_statuses",
    "models",
    "neighbour_pool",
    "permutation_table",
    "queue",
    "sample_seed",
    "scored_counts",
    "shap_coverage",
    "similar_cases",
    "strongest_partners",
    "timeline",
    "transaction",
    "warehouse_summary",
    "weekly_labels",
]

_TTL = 120  # seconds: a new `fraudlens score/explain` shows up within two minutes
F = TypeVar("F", bound=Callable[..., Any])


def _per_workspace(**cache_options: Any) -> Callable[[F], F]:
    """`st.cache_data`, keyed by the workspace path as well as the arguments, so one process
    never serves one workspace's results for another."""
    def decorate(func: F) -> F:
        def keyed(ws: str, *args: Any, **kwargs: Any) -> Any:
            return func(*args, **kwargs)

        # Streamlit keys a cache by module, qualified name and source: make each one distinct.
        keyed.__module__ = func.__module__
        keyed.__qualname__ = f"{func.__qualname__}.per_workspace"
        cached = st.cache_data(show_spinner=False, **cache_options)(keyed)

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            return cached(str(workspace().path), *args, **kwargs)

        return cast("F", call)
    return decorate


def sample_seed() -> int:
    """The seed for every sample the pages draw (FRAUDLENS_SEED, default 7)."""
    try:
        return int(os.environ.get("FRAUDLENS_SEED", "7"))
    except ValueError:
        return 7


@contextmanager
def _cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    cur = reader().cursor()
    try:
        yield cur
    finally:
        cur.close()


# --------------------------------------------------------------------------- what is loaded


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


def models() -> list[ModelInfo]:
    """Registered models, champions first, then by name and version."""
    out = []
    for m in manifests():
        metrics = m.get("metrics", {})
        out.append(ModelInfo(
            m["model_id"], m["name"], str(m["version"]), m["framework"], m["stage"],
            metrics.get("roc_auc"), metrics.get("pr_auc"), str(m.get("created_at", "")),
            FeatureSchema.from_dict(m["feature_schema"])))
    stage_order = {"champion": 0, "candidate": 1, "archived": 2}
    return sorted(out, key=lambda i: (stage_order.get(i.stage, 3), i.name, i.version))


def model_info(model_id: str) -> ModelInfo | None:
    return next((m for m in models() if m.model_id == model_id), None)


@dataclass(frozen=True)
class WarehouseSummary:
    transactions: int
    accounts: int
    first_event: pd.Timestamp | None
    last_event: pd.Timestamp | None
    labelled: int
    labelled_fraud: int

    @property
    def label_share(self) -> float:
        return self.labelled / self.transactions if self.transactions else 0.0


@_per_workspace(ttl=_TTL)
def warehouse_summary() -> WarehouseSummary:
    with _cursor() as cur:
        n, accounts, first, last = cur.execute(
            "SELECT count(*), count(DISTINCT account_id), min(event_time), max(event_time) "
            "FROM transactions").fetchone()
        labelled, fraud = cur.execute(
            "SELECT count(*), coalesce(sum(l.is_fraud), 0) FROM labels l "
            "SEMI JOIN transactions t USING (transaction_id)").fetchone()
    return WarehouseSummary(int(n), int(accounts), _ts(first), _ts(last), int(labelled),
                            int(fraud))


def _ts(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


@_per_workspace(ttl=_TTL)
def weekly_labels() -> pd.DataFrame:
    """Per week (Monday, UTC): transactions, labelled, fraud, share labelled."""
    with _cursor() as cur:
        df = fetch_df(
            cur,
            "SELECT date_trunc('week', t.event_time) AS week, count(*) AS transactions, "
            "count(l.transaction_id) AS labelled, coalesce(sum(l.is_fraud), 0) AS fraud "
            "FROM transactions t LEFT JOIN labels l USING (transaction_id) "
            "GROUP BY 1 ORDER BY 1")
    df["share"] = df["labelled"] / df["transactions"]
    return df


@_per_workspace(ttl=_TTL)
def scored_counts() -> pd.DataFrame:
    """Per model: transactions scored, flagged inputs, last scoring time."""
    with _cursor() as cur:
        return fetch_df(cur, "SELECT model_id, count(*) AS scored, "
                             "count(*) FILTER (WHERE flagged) AS flagged_inputs, "
                             "max(scored_at) AS last_scored FROM scores GROUP BY 1")


@_per_workspace(ttl=_TTL)
def shap_coverage() -> pd.DataFrame:
    """Per model with a SHAP table: rows stored against rows scored."""
    with _cursor() as cur:
        return shap_store.coverage(cur)


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


# --------------------------------------------------------------------------- cases


@_per_workspace(ttl=60, max_entries=64)
def queue(model_id: str, since: date | None, until: date | None, min_score: float,
          max_score: float, countries: tuple[str, ...], min_amount: float | None,
          max_amount: float | None, limit: int = 200) -> pd.DataFrame:
    """Highest-scored transactions for the filters (no PII columns, so it may be cached)."""
    f = cases.QueueFilter(model_id, since, until, min_score, max_score, countries, min_amount,
                          max_amount, limit)
    with _cursor() as cur:
        return cases.fetch_queue(cur, f)


def transaction(transaction_id: str) -> pd.DataFrame:
    """One transaction with every column, PII included: never cached, mask before showing."""
    with _cursor() as cur:
        return cases.transaction_row(cur, transaction_id)


def account_cases(account_id: str, model_id: str) -> pd.DataFrame:
    """An account's transactions (looked up by a typed account id: not cached)."""
    with _cursor() as cur:
        return cases.account_transactions(cur, account_id, model_id)


@_per_workspace(ttl=60, max_entries=256)
def case_scores(transaction_id: str) -> pd.DataFrame:
    with _cursor() as cur:
        return cases.case_scores(cur, transaction_id)


@_per_workspace(ttl=60, max_entries=256)
def timeline(transaction_id: str, model_id: str) -> pd.DataFrame:
    with _cursor() as cur:
        return cases.account_timeline(cur, transaction_id, model_id)


@_per_workspace(ttl=60, max_entries=256)
def case_summaries(transaction_ids: tuple[str, ...], model_id: str) -> pd.DataFrame:
    with _cursor() as cur:
        return cases.case_summaries(cur, list(transaction_ids), model_id)


def similar_cases(case: cases.CaseExplanation, k: int = 5) -> pd.DataFrame | None:
    """The case's nearest labelled neighbours in SHAP space with their details; None when
    the model has no SHAP store to compare against."""
    pool = neighbour_pool(case.model_id)
    if pool is None:
        return None
    near = cases.similar_cases(case, pool, k=k)
    if near.empty:
        return near
    details = case_summaries(tuple(near["transaction_id"]), case.model_id).drop(
        columns=["outcome"])
    out = near.merge(details, on="transaction_id", how="left")
    first = ["transaction_id", "outcome", "distance", "score", cases.AMOUNT_COLUMN, "txn_type"]
    return out[[c for c in first if c in out.columns]
               + [c for c in out.columns if c not in first]]


def case_explanation(model_id: str, row: pd.DataFrame) -> cases.CaseExplanation:
    """The case's SHAP from the store (one targeted query), else computed on demand."""
    return _case_explanation(model_id, str(row["transaction_id"].iloc[0]), row)


@_per_workspace(ttl=60, max_entries=256)
def _case_explanation(model_id: str, transaction_id: str,
                      _row: pd.DataFrame) -> cases.CaseExplanation:
    # keyed by model and transaction only (`_row` is not hashed); the result holds the
    # model's feature values and SHAP, none of the row's PII columns
    model = load_model(model_id)
    with _cursor() as cur:
        return cases.case_explanation(cur, model, _row)


@_per_workspace(ttl=_TTL, max_entries=4)
def neighbour_pool(model_id: str, size: int = 20_000) -> cases.NeighbourPool | None:
    with _cursor() as cur:
        return cases.neighbour_pool(cur, model_id, size=size, seed=sample_seed())


# --------------------------------------------------------------------------- global patterns


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


@_per_workspace(ttl=_TTL, max_entries=64)
def cohort_summary(model_id: str, cohort: Cohort) -> pd.DataFrame:
    """`shap_store.summary` for the cohort: exactly what `fraudlens export shap-summary`
    writes (feature, mean_abs_shap, mean_shap, rank, model, cohort, row_count)."""
    info = model_info(model_id)
    segments = info.schema.categorical if info else []
    with _cursor() as cur:
        return shap_store.summary(cur, model_id, cohort, segments)


@_per_workspace(ttl=_TTL, max_entries=16)
def gain_table(model_id: str) -> pd.DataFrame:
    from explainers.importance import gain_importance

    return gain_importance(load_model(model_id))


def _labelled_sample(cur: duckdb.DuckDBPyConnection, model_id: str, schema: FeatureSchema,
                     cohort: Cohort, limit: int, seed: int) -> pd.DataFrame:
    where, params = cohort.where(schema.categorical)
    cols = ", ".join(f"t.{quote_ident(n)}" for n in schema.names)
    return fetch_df(
        cur,
        f"SELECT t.transaction_id, {cols}, l.is_fraud FROM transactions t "
        "JOIN scores sc ON sc.transaction_id = t.transaction_id AND sc.model_id = ? "
        f"JOIN labels l ON l.transaction_id = t.transaction_id WHERE {where} "
        "ORDER BY hash(t.transaction_id || ?), t.transaction_id LIMIT ?",
        [model_id, *params, str(seed), int(limit)])


@_per_workspace(ttl=_TTL, max_entries=32)
def permutation_table(model_id: str, cohort: Cohort, sample: int = 2000,
                      n_repeats: int = 3) -> tuple[pd.DataFrame, int, float] | None:
    """ROC AUC drop per shuffled feature on a seeded sample of the cohort's labelled rows:
    (table, rows used, baseline AUC), or None when the sample lacks fraud or legit labels."""
    from explainers.importance import permutation_importance

    model = load_model(model_id)
    with _cursor() as cur:
        df = _labelled_sample(cur, model_id, model.schema, cohort, sample, sample_seed())
    y = df["is_fraud"].to_numpy(dtype=int)
    if len(np.unique(y)) < 2:
        return None
    result = permutation_importance(model, df, y, n_repeats=n_repeats, seed=sample_seed(),
                                    sample=None)
    return result.table, result.n_rows, result.baseline_auc


IMPORTANCE_MEASURES = ("Mean |SHAP| (this cohort)", "Gain (the model's own)",
                       "Permutation (ROC AUC drop)")


@dataclass(frozen=True)
class ImportanceView:
    """One importance measure ready to draw: the table (None when it cannot be computed),
    its value column, axis title, and a note saying what it measures."""

    table: pd.DataFrame | None
    value: str
    title: str
    note: str


def importance(model_id: str, cohort: Cohort, measure: str) -> ImportanceView:
    """Mean |SHAP| over the cohort (the SHAP store), the model's gain (training), or the
    ROC AUC lost when shuffling each feature (a labelled sample of the cohort)."""
    info = model_info(model_id)
    meanings = {f.name: f.description for f in info.schema.features} if info else {}
    if measure == IMPORTANCE_MEASURES[1]:
        view = ImportanceView(gain_table(model_id), "gain", "Share of total gain",
                              "How much each feature's splits improved the model in training; "
                              "it does not depend on the cohort.")
    elif measure == IMPORTANCE_MEASURES[2]:
        result = permutation_table(model_id, cohort)
        if result is None:
            return ImportanceView(None, "auc_drop", "", "Permutation importance needs both "
                                  "fraud and legit labels in the cohort; this cohort has only "
                                  "one kind, or no labels yet.")
        table, n, auc = result
        view = ImportanceView(table, "auc_drop", "ROC AUC lost when shuffled",
                              f"Seeded sample of {n:,} labelled cohort transactions, baseline "
                              f"ROC AUC {auc:.3f} (the sample may include training rows), "
                              "3 shuffles per feature.")
    else:
        view = ImportanceView(cohort_summary(model_id, cohort), "mean_abs_shap",
                              "Mean |SHAP| (log-odds)",
                              "Average size of each feature's contribution over the cohort.")
    table = view.table.assign(description=view.table["feature"].map(meanings))
    return ImportanceView(table, view.value, view.title, view.note)


def _feature_rows(cur: duckdb.DuckDBPyConnection, schema: FeatureSchema,
                  ids: list[str]) -> pd.DataFrame:
    cols = ", ".join(quote_ident(n) for n in schema.names)
    return fetch_df(cur, f"SELECT transaction_id, {cols} FROM transactions "
                         "WHERE transaction_id IN (SELECT unnest(?::VARCHAR[]))", [ids])


@_per_workspace(ttl=_TTL, max_entries=16)
def beeswarm_sample(model_id: str, cohort: Cohort, rows: int) -> tuple[pd.DataFrame,
                                                                      pd.DataFrame]:
    """A seeded sample of at most `rows` stored SHAP rows of the cohort and the feature
    values of the same transactions (in the same order)."""
    info = model_info(model_id)
    schema = info.schema if info else load_model(model_id).schema
    with _cursor() as cur:
        shap = shap_store.values(cur, model_id, cohort, schema.categorical, limit=rows,
                                 sample_seed=sample_seed())
        if shap.empty:
            return shap, pd.DataFrame()
        feats = _feature_rows(cur, schema, shap["transaction_id"].astype(str).tolist())
    feats = feats.set_index("transaction_id").loc[shap["transaction_id"]].reset_index()
    return shap, feats


def cohort_explanation(model_id: str, cohort: Cohort, rows: int) -> Explanation | None:
    """The beeswarm sample as an Explanation (values, base value, model-input data)."""
    shap, feats = beeswarm_sample(model_id, cohort, rows)
    if shap.empty:
        return None
    info = model_info(model_id)
    schema = info.schema if info else load_model(model_id).schema
    data = schema.model_input(feats).frame.reset_index(drop=True)
    return Explanation(values=shap[schema.names].to_numpy(dtype=float),
                       base_value=float(shap["base_value"].iloc[0]),
                       feature_names=tuple(schema.names), data=data,
                       flagged=shap["flagged"].to_numpy(dtype=bool),
                       row_ids=shap["transaction_id"].to_numpy(dtype=object))


@_per_workspace(ttl=_TTL, max_entries=16)
def beeswarm_points(model_id: str, cohort: Cohort, rows: int, top: int = 10) -> pd.DataFrame:
    """Beeswarm rows (app.views.charts.beeswarm_data) for the cohort's `top` features by mean
    |SHAP| on a seeded sample of at most `rows` transactions."""
    shap, feats = beeswarm_sample(model_id, cohort, rows)
    info = model_info(model_id)
    schema = info.schema if info else load_model(model_id).schema
    if shap.empty:
        return charts.beeswarm_data(shap, feats, schema, [])
    ranked = cohort_summary(model_id, cohort)["feature"].tolist()
    features = [f for f in ranked if f in schema.names][:top]
    return charts.beeswarm_data(shap, feats, schema, features, seed=sample_seed())


INTERACTION_ROWS = 150
INTERACTION_TOP_K = 4


@_per_workspace(ttl=3600, max_entries=16)
def strongest_partners(model_id: str, cohort: Cohort, rows: int) -> pd.DataFrame | None:
    """Each of the top features' strongest interacting partner: SHAP interaction values
    (explainers.interactions) on a seeded sample of INTERACTION_ROWS cohort transactions, for
    the INTERACTION_TOP_K most important features. Costs seconds, so pages ask for it."""
    from explainers.interactions import interaction_values, strongest_interaction

    shap, feats = beeswarm_sample(model_id, cohort, rows)
    if shap.empty:
        return None
    matrix = interaction_values(load_model(model_id), feats, top_k=INTERACTION_TOP_K,
                                sample=INTERACTION_ROWS, seed=sample_seed())
    return strongest_interaction(matrix)


@_per_workspace(ttl=_TTL, max_entries=32)
def dependence_points(model_id: str, cohort: Cohort, rows: int, feature: str,
                      color_by: str | None) -> pd.DataFrame | None:
    """Dependence-plot points (explainers.interactions.dependence_data) on the sample."""
    from explainers.interactions import dependence_data

    expl = cohort_explanation(model_id, cohort, rows)
    if expl is None:
        return None
    return dependence_data(expl, feature, color_by=color_by, sample=None, seed=sample_seed())
