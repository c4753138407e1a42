"""Every cache the pages use, in one place: parameterised lake reads and service results,
keyed by the workspace (and so by the lake the app reads) as well as the arguments.

`st.cache_data` holds only small results without PII (aggregates, scores, SHAP, the queue's
non-PII columns); anything with PII (a transaction's row, an account search) is queried per
run by id and never cached. Every query runs on its own cursor of the shared read-only
connection. The logic lives in `app.services` and the SQL in `data_access`: a cache here
binds one of those to the app's connection and adds nothing else.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any, TypeVar, cast

import duckdb
import numpy as np
import pandas as pd
import streamlit as st

from app.services import (
    case,
    experiments,
    monitoring,
    overview,
    pattern_review,
    precompute,
)
from app.services.classifier import holdout_classifier_stats as _holdout_classifier_stats
from app.services.cohort import (
    IMPORTANCE_MEASURES,
    ImportanceView,
    cohort_of,
    importance_view,
    sample_explanation,
)
from app.services.monitoring_rules import MonitoringRules
from app.services.overview import ModelInfo, model_statuses
from app.shell.resources import data_version, lake_cursor, load_model, manifests, workspace
from app.views import charts
from data_access import (
    case_queries,
    cohort_queries,
    monitoring_queries,
    report_cache,
    shap_store,
    warehouse_stats,
)
from data_access.shap_store import Cohort
from data_access.warehouse_stats import WarehouseSummary
from explainers.classifier_stats import ClassifierStats
from explainers.explanation import Explanation
from explainers.schema import FeatureSchema

__all__ = [
    "IMPORTANCE_MEASURES",
    "INTERACTION_ROWS",
    "INTERACTION_TOP_K",
    "ImportanceView",
    "ModelInfo",
    "WarehouseSummary",
    "account_cases",
    "beeswarm_points",
    "beeswarm_sample",
    "case_explanation",
    "case_scores",
    "clear_kept",
    "cohort_explanation",
    "cohort_of",
    "cohort_summary",
    "dependence_points",
    "experiment_compute",
    "experiment_kept",
    "gain_table",
    "importance",
    "model_info",
    "model_statuses",
    "models",
    "monitoring_compute",
    "monitoring_kept",
    "monitoring_segments",
    "neighbour_pool",
    "newest_kept",
    "permutation_table",
    "queue",
    "sample_seed",
    "score_ranking",
    "scored_counts",
    "segment_columns",
    "shap_coverage",
    "similar_cases",
    "strongest_partners",
    "timeline",
    "transaction",
    "warehouse_summary",
    "weekly_labels",
]

_TTL = 120  # seconds: a new `fraudlens score/explain` shows up within two minutes
# The pages' default views, which `warm_defaults` computes ahead of the first visit.
QUEUE_DAYS = 13  # the queue shows the newest two weeks (the last day plus 13 before it)
QUEUE_BAND = (0.5, 1.0)
BEESWARM_ROWS = 1000
DEPENDENCE_ROWS = 1000
F = TypeVar("F", bound=Callable[..., Any])


PAGE_RESULTS = "pages"  # report_cache kind of the aggregate results kept on disk


def _per_workspace(*, kept: bool = False, returns: Any = None,
                   **cache_options: Any) -> Callable[[F], F]:
    """`st.cache_data`, keyed by the workspace path and the lake's data version as well as the
    arguments, so one process never serves one workspace's results for another, and new data
    shows on the next run.

    With `kept`, the result is also kept on disk per data version (`report_cache.keep`: JSON
    and Parquet, never pickle), so a restarted server, or a server whose warm-up computed it
    (`warm_defaults`), reads it instead of scanning the lake again. Only for aggregate,
    non-PII results; `returns` is the result's type when `func` does not annotate it."""
    def decorate(func: F) -> F:
        def keyed(ws: str, version: str, *args: Any, **kwargs: Any) -> Any:
            if not kept:
                return func(*args, **kwargs)
            hint = returns or typing.get_type_hints(func).get("return")
            stable = (func.__qualname__, *map(repr, args),
                      *(f"{k}={v!r}" for k, v in sorted(kwargs.items())))
            found = report_cache.read_kept(ws, PAGE_RESULTS, stable, version, hint)
            if found is not None:
                return found.result
            result = func(*args, **kwargs)
            report_cache.keep(ws, PAGE_RESULTS, stable, version, result)
            return result

        # Streamlit keys a cache by module, qualified name and source: make each one distinct.
        keyed.__module__ = func.__module__
        keyed.__qualname__ = f"{func.__qualname__}.per_workspace"
        cached = st.cache_data(show_spinner=False, **cache_options)(keyed)

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            return cached(str(workspace().path), data_version(), *args, **kwargs)

        return cast("F", call)
    return decorate


@contextmanager
def _cursor() -> Iterator[duckdb.DuckDBPyConnection]:
    with lake_cursor() as cur:
        yield cur


def _on_cursor(query: Callable[..., Any], *, kept: bool = False,
               **cache_options: Any) -> Callable[..., Any]:
    """`query(con, *args)` run on a fresh cursor of the app's reader; cached per workspace
    when `cache_options` are given (never for results that hold PII), and kept on disk too
    with `kept`."""
    def run(*args: Any, **kwargs: Any) -> Any:
        with _cursor() as cur:
            return query(cur, *args, **kwargs)

    run.__name__ = query.__name__
    run.__qualname__ = f"{query.__module__}.{query.__qualname__}"
    run.__doc__ = query.__doc__
    if not cache_options:
        return run
    returns = typing.get_type_hints(query).get("return") if kept else None
    return _per_workspace(kept=kept, returns=returns, **cache_options)(run)


def sample_seed() -> int:
    """The seed for every sample the pages draw (FRAUDLENS_SEED, default 7): the one
    `fraudlens precompute` keys its results with."""
    return precompute.sample_seed()


# --------------------------------------------------------------------------- what is loaded


def models() -> list[ModelInfo]:
    """Registered models, champions first, then by name and version."""
    return overview.model_infos(manifests())


def model_info(model_id: str) -> ModelInfo | None:
    return next((m for m in models() if m.model_id == model_id), None)


def _schema(model_id: str) -> FeatureSchema:
    info = model_info(model_id)
    return info.schema if info else load_model(model_id).schema


warehouse_summary = _on_cursor(warehouse_stats.warehouse_summary, kept=True, ttl=_TTL)
weekly_labels = _on_cursor(warehouse_stats.weekly_labels, kept=True, ttl=_TTL)
scored_counts = _on_cursor(warehouse_stats.scored_counts, kept=True, ttl=_TTL)
shap_coverage = _on_cursor(shap_store.coverage, kept=True, ttl=_TTL)

# --------------------------------------------------------------------------- cases

transaction = _on_cursor(case_queries.transaction_row)  # PII: never cached, mask before showing
account_cases = _on_cursor(case_queries.account_transactions)  # a typed account id: not cached


@st.cache_resource(ttl=_TTL, max_entries=8, show_spinner=False)
def _score_ranking(path: str, version: str, model_id: str) -> case_queries.ScoreRanking:
    with _cursor() as cur:
        return case_queries.score_ranking(cur, model_id)


def score_ranking(model_id: str) -> case_queries.ScoreRanking:
    """The model's scores, sorted once per data version: a case's rank is a binary search.
    One shared, read-only copy (a resource, not data: 8 bytes a scored row would otherwise
    be copied on every case opened)."""
    return _score_ranking(str(workspace().path), data_version(), model_id)


@_per_workspace(ttl=60, max_entries=256)
def case_scores(transaction_id: str) -> pd.DataFrame:
    """Every model's score for the case and its rank among all that model scored."""
    with _cursor() as cur:
        return case_queries.case_scores(cur, transaction_id, score_ranking)


timeline = _on_cursor(case_queries.account_timeline, ttl=60, max_entries=256)


@_per_workspace(kept=True, ttl=60, max_entries=64)
def queue(model_id: str, since: date | None, until: date | None, min_score: float,
          max_score: float, countries: tuple[str, ...], min_amount: float | None,
          max_amount: float | None, limit: int = 200) -> pd.DataFrame:
    """Highest-scored transactions for the filters (no PII columns, so it may be cached)."""
    f = case_queries.QueueFilter(model_id, since, until, min_score, max_score, countries,
                                 min_amount, max_amount, limit)
    with _cursor() as cur:
        return case_queries.fetch_queue(cur, f)


@_per_workspace(ttl=_TTL, max_entries=4)
def neighbour_pool(model_id: str) -> case.NeighbourPool | None:
    with _cursor() as cur:
        return case.neighbour_pool(cur, model_id, seed=sample_seed())


def similar_cases(found: case.CaseExplanation, k: int = 5) -> pd.DataFrame | None:
    """The case's nearest labelled neighbours in SHAP space with their details; None when
    the model has no SHAP store to compare against."""
    pool = neighbour_pool(found.model_id)
    if pool is None:
        return None
    with _cursor() as cur:
        return case.similar_cases(cur, found, pool, k=k)


def case_explanation(model_id: str, row: pd.DataFrame) -> case.CaseExplanation:
    """The case's SHAP from the store (one targeted query), else computed on demand."""
    return _case_explanation(model_id, str(row["transaction_id"].iloc[0]), row)


@_per_workspace(ttl=60, max_entries=256)
def _case_explanation(model_id: str, transaction_id: str,
                      _row: pd.DataFrame) -> case.CaseExplanation:
    # keyed by model and transaction only (`_row` is not hashed); the result holds the
    # model's feature values and SHAP, none of the row's PII columns
    model = load_model(model_id)
    with _cursor() as cur:
        return case.case_explanation(cur, model, _row)


# --------------------------------------------------------------------------- global patterns


@_per_workspace(kept=True, ttl=_TTL, max_entries=64)
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


@_per_workspace(ttl=_TTL, max_entries=32)
def permutation_table(model_id: str, cohort: Cohort, sample: int = 2000,
                      n_repeats: int = 3) -> tuple[pd.DataFrame, int, float] | None:
    """ROC AUC drop per shuffled feature on a seeded sample of the cohort's labelled rows:
    (table, rows used, baseline AUC), or None when the sample lacks fraud or legit labels."""
    from explainers.importance import permutation_importance

    model = load_model(model_id)
    with _cursor() as cur:
        df = cohort_queries.labelled_sample(cur, model_id, model.schema, cohort, sample,
                                            sample_seed())
    y = df["is_fraud"].to_numpy(dtype=int)
    if len(np.unique(y)) < 2:
        return None
    result = permutation_importance(model, df, y, n_repeats=n_repeats, seed=sample_seed(),
                                    sample=None)
    return result.table, result.n_rows, result.baseline_auc


def importance(model_id: str, cohort: Cohort, measure: str) -> ImportanceView:
    """Mean |SHAP| over the cohort (the SHAP store), the model's gain (training), or the
    ROC AUC lost when shuffling each feature (a labelled sample of the cohort)."""
    info = model_info(model_id)
    meanings = {f.name: f.description for f in info.schema.features} if info else {}
    if measure == IMPORTANCE_MEASURES[1]:
        return importance_view(measure, gain_table(model_id), meanings)
    if measure == IMPORTANCE_MEASURES[2]:
        result = permutation_table(model_id, cohort)
        if result is None:
            return importance_view(measure, None, meanings)
        table, n, auc = result
        return importance_view(measure, table, meanings, (n, auc))
    return importance_view(measure, cohort_summary(model_id, cohort), meanings)


@_per_workspace(kept=True, ttl=_TTL, max_entries=16)
def beeswarm_sample(model_id: str, cohort: Cohort, rows: int) -> tuple[pd.DataFrame,
                                                                      pd.DataFrame]:
    """A seeded sample of at most `rows` stored SHAP rows of the cohort and the feature
    values of the same transactions (in the same order)."""
    schema = _schema(model_id)
    with _cursor() as cur:
        shap = shap_store.values(cur, model_id, cohort, schema.categorical, limit=rows,
                                 sample_seed=sample_seed())
        if shap.empty:
            return shap, pd.DataFrame()
        ids = shap["transaction_id"].astype(str)
        feats = cohort_queries.feature_rows(cur, ids.tolist(), schema.names)
    feats = feats.set_index("transaction_id").loc[ids].reset_index()
    return shap, feats


def cohort_explanation(model_id: str, cohort: Cohort, rows: int) -> Explanation | None:
    """The beeswarm sample as an Explanation (values, base value, model-input data)."""
    shap, feats = beeswarm_sample(model_id, cohort, rows)
    return sample_explanation(shap, feats, _schema(model_id))


@_per_workspace(kept=True, ttl=_TTL, max_entries=16)
def beeswarm_points(model_id: str, cohort: Cohort, rows: int, top: int = 10) -> pd.DataFrame:
    """Beeswarm rows (app.views.charts.beeswarm_data) for the cohort's `top` features by mean
    |SHAP| on a seeded sample of at most `rows` transactions."""
    shap, feats = beeswarm_sample(model_id, cohort, rows)
    schema = _schema(model_id)
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


@_per_workspace(kept=True, ttl=_TTL, max_entries=32)
def dependence_points(model_id: str, cohort: Cohort, rows: int, feature: str,
                      color_by: str | None) -> pd.DataFrame | None:
    """Dependence-plot points (explainers.interactions.dependence_data) on the sample."""
    from explainers.interactions import dependence_data

    expl = cohort_explanation(model_id, cohort, rows)
    if expl is None:
        return None
    return dependence_data(expl, feature, color_by=color_by, sample=None, seed=sample_seed())


# --------------------------------------------------------------------------- pattern review

last_full_week = _on_cursor(pattern_review.last_full_week, kept=True, ttl=_TTL)

# --------------------------------------------------------------------------- monitoring

segment_columns = _on_cursor(monitoring_queries.segment_columns, kept=True, ttl=_TTL)


def _manifest(model_id: str) -> dict[str, Any]:
    return next(m for m in manifests() if m["model_id"] == model_id)


def monitoring_kept(model_id: str, since: date | None, until: date | None,
                    rules: MonitoringRules, version: str) -> report_cache.Kept | None:
    """The report kept for the lake's data `version`, else the newest one kept for earlier
    data, else None; never computes."""
    return newest_kept(monitoring.KEPT_KIND, monitoring.MonitoringReport,
                       monitoring.kept_parts(_manifest(model_id), rules, since, until), version)


def monitoring_compute(model_id: str, since: date | None, until: date | None,
                       rules: MonitoringRules, version: str,
                       progress: Callable[[str], None] | None = None
                       ) -> monitoring.MonitoringReport:
    """Compute the report on the lake now and keep it for `version` (a first visit with
    nothing kept, or a refresh); not cached here."""
    with _cursor() as cur:
        report = monitoring.kept_report(cur, workspace().path, version, _manifest(model_id),
                                        rules, since, until, progress=progress, refresh=True)
    clear_kept()
    return report


@_per_workspace(kept=True, ttl=_TTL, max_entries=32)
def monitoring_segments(model_id: str, segment: str, span: tuple[pd.Timestamp, pd.Timestamp],
                        as_of: pd.Timestamp, rules: MonitoringRules) -> pd.DataFrame:
    """The weekly performance table per value of `segment`, for the shown report's window
    and label time (`report.span`, `report.as_of`)."""
    with _cursor() as cur:
        return monitoring.segment_weekly_at(cur, model_id, segment, span, as_of, rules)


# --------------------------------------------------------------------------- experiments


experiment_names = _on_cursor(experiments.experiment_names, ttl=_TTL)


def experiment_kept(name: str, settings: experiments.ExperimentSettings, version: str
                    ) -> report_cache.Kept | None:
    """The report kept for the lake's data `version`, else the newest one kept for earlier
    data, else None; never computes."""
    return newest_kept(experiments.KEPT_KIND, experiments.ExperimentReport,
                       experiments.kept_parts(name, settings), version)


def experiment_compute(name: str, settings: experiments.ExperimentSettings, version: str,
                       progress: Callable[[str], None] | None = None
                       ) -> experiments.ExperimentReport:
    """Compute the report on the lake now and keep it for `version`; not cached here."""
    with _cursor() as cur:
        report = experiments.build_report(cur, name, settings, data_version=version,
                                          progress=progress)
    experiments.keep_report(workspace().path, report)
    clear_kept()
    return report


@_per_workspace(kept=True, returns=tuple[ClassifierStats, ...], ttl=_TTL, max_entries=8)
def holdout_classifier_stats(model_ids: tuple[str, ...], settings: Any) -> tuple:
    """ROC/PR curves, confusion tables and deciles on Model Comparison's matured holdout."""
    manifests = [workspace().registry.resolve(m) for m in model_ids]
    with _cursor() as cur:
        return _holdout_classifier_stats(cur, manifests, settings)


# --------------------------------------------------------------------------- kept on disk


# a resource, not data: every run and session shares the one read-only report (no copy per run,
# and the charts drawn from it are built once, see components.altair)
@st.cache_resource(ttl=60, max_entries=32, show_spinner=False)
def _newest_kept(path: str, kind: str, stable: tuple[object, ...], version: str,
                 _cls: type) -> report_cache.Kept | None:
    return report_cache.read_newest(path, kind, stable, _cls, version)


def newest_kept(kind: str, cls: type, stable: tuple[object, ...], version: str
                ) -> report_cache.Kept | None:
    """A deterministic result kept under the workspace (`fraudlens precompute`, a command or
    an earlier visit), keyed by `stable` (checksums, settings) and the lake's data version:
    the one for `version` (`current`), else the newest kept for earlier data, else None.
    Survives restarts; JSON and Parquet only, never pickle."""
    return _newest_kept(str(workspace().path), kind, stable, version, cls)


def clear_kept() -> None:
    """Forget what `newest_kept` read: a result was just kept."""
    _newest_kept.clear()
