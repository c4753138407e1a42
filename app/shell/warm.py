"""The pages' default views computed ahead of their first visit, through the caches (so the
aggregates are kept on disk per data version): run by the server's warm-up and again when new
data lands (`app.shell.serve`)."""

from __future__ import annotations

from datetime import timedelta

from app.services import model_comparison, monitoring
from app.services.monitoring_rules import load_rules
from app.shell import caches
from app.shell.resources import lake_cursor, load_model
from data_access import case_queries
from explainers.frames import explain_frame

__all__ = ["compile_explainers", "warm_defaults"]


def compile_explainers() -> list[str]:
    """Explain one transaction with each live model and drop the result, so that the SHAP
    engine's compiled kernels (numba: 4.7 s for XGBoost on 2 cores, on first use) are built
    before an analyst's first what-if or first case missing from the SHAP store. Returns the
    models done, for the log."""
    with lake_cursor() as cur:
        row = case_queries.any_transaction(cur)
    if row.empty:
        return []
    done = []
    for info in caches.models():
        if info.stage != "archived":
            explain_frame(load_model(info.model_id), row)
            done.append(info.model_id)
    return done


def warm_defaults() -> list[str]:
    """Compute what the pages' first visits read with their default settings, for the lake's
    current data version, through `app.shell.caches` (so it is kept on disk): Home's summary,
    each model's queue, score ranking, similar-case pool and Global Patterns' default cohort
    (summary, beeswarm, dependence), Pattern Review's default week. Run by the server's warm-up and
    again when new data lands (app.shell.serve); returns what it computed, for the log."""
    done = []
    summary = caches.warehouse_summary()
    caches.weekly_labels()
    counts = caches.scored_counts()
    coverage = caches.shap_coverage()
    done.append("home")
    if summary.transactions == 0:
        return done
    caches.last_full_week()
    first, last = summary.first_event.date(), summary.last_event.date()
    scored = set(counts["model_id"])
    stored = set(coverage.loc[coverage["stored"] > 0, "model_id"])
    for info in caches.models():
        if info.stage == "archived":
            continue
        model_id = info.model_id
        if model_id in scored:
            since = max(first, last - timedelta(days=caches.QUEUE_DAYS))
            caches.queue(model_id, since, last, *caches.QUEUE_BAND, (), None, None)
            caches.score_ranking(model_id)  # a case's rank among all scored
        if model_id not in stored:
            continue
        cohort = caches.cohort_of(first, last)
        table = caches.cohort_summary(model_id, cohort)
        ranked = [f for f in table["feature"] if f in info.schema.names]
        if not ranked:
            continue
        caches.neighbour_pool(model_id)  # in memory only (arrays): the serving pass fills it
        caches.beeswarm_points(model_id, cohort, caches.BEESWARM_ROWS)
        if len(ranked) > 1:
            caches.dependence_points(model_id, cohort, caches.DEPENDENCE_ROWS, ranked[0],
                                     ranked[1])
        done.append(model_id)
    _warm_kept_views(summary)
    return done


def _warm_kept_views(summary: caches.WarehouseSummary) -> None:
    """What Model Comparison and Monitoring draw beside their kept reports: the classifier
    statistics of the default comparison and each live model's default segment table."""
    infos = caches.models()
    candidates = tuple(model_comparison.default_candidates(infos))
    if len(candidates) >= 2:
        settings = model_comparison.default_settings(caches.sample_seed())
        caches.holdout_classifier_stats(candidates, settings)
    rules = load_rules(caches.workspace().path)
    version = caches.data_version()
    segments = caches.segment_columns()
    segment = "country" if "country" in segments else (segments[0] if segments else None)
    first, last = monitoring.page_window(summary)
    window = monitoring.kept_window(first, last, summary)
    for info in infos:
        kept = caches.monitoring_kept(info.model_id, *window, rules, version) if segment else None
        if kept is not None and kept.current:
            report = kept.result
            caches.monitoring_segments(info.model_id, segment, report.span, report.as_of,
                                       rules)
