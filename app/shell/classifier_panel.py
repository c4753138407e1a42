"""Page sections for a classifier at a threshold (ROC/PR curves, confusion matrix with a
threshold slider, lift by decile) and for the pruning frontier. Model Comparison calls
`comparison_sections(report)`; the Experiments page calls `classifier_panel`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import streamlit as st

from app.services import pruning
from app.shell import caches, components
from app.shell.resources import data_version, lake_cursor, load_model, workspace
from app.views import classifier_charts, pruning_report
from explainers.classifier_stats import ClassifierStats
from explainers.errors import FraudLensError

__all__ = ["classifier_panel", "comparison_sections", "pruning_section"]


def classifier_panel(stats: Sequence[ClassifierStats], thresholds: Mapping[str, float], *,
                     key: str) -> None:
    """Curves with each model's threshold marked, a confusion matrix (counts and USD) under a
    threshold slider, and lift and cumulative precision by score decile."""
    if not stats:
        st.info("No labelled rows to draw classifier statistics from yet.")
        return
    st.dataframe(classifier_charts.summary_table(stats, thresholds), hide_index=True)
    memo = (key, tuple((s.model_id, s.rows, s.fraud, s.roc_auc, s.pr_auc) for s in stats),
            data_version(),
            tuple(sorted(thresholds.items())))
    left, right = st.columns(2)
    for column, curve in ((left, "roc"), (right, "pr")):
        with column:
            components.altair(classifier_charts.curve_chart, stats, curve, thresholds,
                              memo=(*memo, curve), width="stretch")
    ids = [s.model_id for s in stats]
    a, b = st.columns([2, 3])
    chosen = a.selectbox("Model", ids, key=f"{key}_model")
    picked = next(s for s in stats if s.model_id == chosen)
    threshold = b.slider("Threshold (flag when score ≥ threshold)", 0.0, 1.0,
                         float(round(thresholds.get(chosen, 0.5), 4)), 0.0005, format="%.4f",
                         key=f"{key}_threshold_{chosen}")
    confusion = picked.confusion(threshold)
    st.caption("Confusion matrix at the threshold, in transactions and in USD:")
    st.dataframe(classifier_charts.confusion_table(confusion), hide_index=True)
    m1, m2, m3 = st.columns(3)
    m1.metric("Precision", "—" if confusion.precision != confusion.precision
              else f"{confusion.precision:.3f}")
    m2.metric("Recall", "—" if confusion.recall != confusion.recall
              else f"{confusion.recall:.3f}")
    m3.metric("False-positive rate", f"{confusion.false_positive_rate:.4f}")
    components.altair(classifier_charts.decile_chart, stats, memo=memo, width="stretch")
    st.dataframe(classifier_charts.decile_table(picked), hide_index=True)


def pruning_section(model_ids: Sequence[str], sla_p99_ms: float) -> None:
    """The stored pruning frontier for these models, or a button (and the command) that
    computes and stores it; never recomputed on a plain page run."""
    settings = pruning.FrontierSettings(sla_p99_ms=float(sla_p99_ms))
    manifests = [workspace().registry.resolve(m) for m in model_ids]
    found = pruning.stored_frontier(workspace().path, manifests, data_version(), settings)
    command = f"fraudlens models frontier {' '.join(model_ids)} --sla-p99-ms {sla_p99_ms:g}"
    if found is None:
        st.caption("Not computed yet for these models and this data. Run it here, or in a "
                   "terminal (it prints its stages):")
        st.code(command, language="bash")
        if not st.button("Compute the pruning frontier", key="cmp_frontier_go"):
            return
        try:
            with st.spinner("Scoring truncated ensembles and timing them…"), \
                    lake_cursor() as cur:
                found = pruning.cached_frontier(
                    cur, workspace().path, manifests, [load_model(m) for m in model_ids],
                    data_version(), settings)
        except FraudLensError as exc:
            st.error(str(exc))
            return
    c = found.calibration
    st.caption(f"ROC AUC on {found.holdout_rows:,} matured holdout rows ({found.holdout_fraud:,} "
               f"fraud); p99 of single-row predictions, calibrated to the reference machine "
               f"(reference workload {c.workload_ms:.1f} ms here vs {c.reference_ms:g} ms, "
               f"factor {c.factor:.2f}; load average {c.load_1m:.2f}); computed "
               f"{found.created_at}. ◆ marks the fewest trees within "
               f"{found.settings.tolerance:g} ROC AUC of the full model.")
    components.altair(pruning_report.frontier_chart(found), width="stretch")
    st.dataframe(pruning_report.frontier_table(found), hide_index=True)
    for m in found.models:
        st.text(f"{m.model_id}: fraudlens models prune {m.model_id} --trees {m.smallest_within} "
                "--version <new version>")


def comparison_sections(report: Any) -> None:
    """Model Comparison's classifier statistics (its "Thresholds" tab)."""
    st.subheader("Classifier statistics at a threshold")
    thresholds = {t.model: t.threshold for t in report.thresholds}
    try:
        stats = caches.holdout_classifier_stats(tuple(report.model_ids), report.settings)
    except FraudLensError as exc:
        st.error(str(exc))
    else:
        classifier_panel(stats, thresholds, key="cmp_cls")
