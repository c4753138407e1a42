"""Home: what this workspace holds, and the command to run when something is missing."""

import streamlit as st

from app.shell import caches, components
from app.shell.auth import require
from app.views import charts
from explainers.errors import FraudLensError

require("cases", "Home")
st.title("FraudLens")
st.caption("What is loaded in this workspace, and what to run next when something is missing.")

try:
    summary = caches.warehouse_summary()
    infos = caches.models()
    statuses = caches.model_statuses(infos, caches.scored_counts(), caches.shap_coverage())
except FraudLensError as exc:
    components.missing(str(exc), "fraudlens demo", kind="error")
    st.stop()

st.subheader("Transactions")
if summary.transactions == 0:
    components.missing("The warehouse holds no transactions yet.",
                       "fraudlens import transactions FILE --labels LABELS_FILE")
else:
    a, b, c, d = st.columns([1, 1.5, 1, 1])
    a.metric("Transactions", f"{summary.transactions:,}",
             help=f"{summary.accounts:,} accounts")
    days = (summary.last_event - summary.first_event).days + 1
    b.metric(f"Time window {summary.last_event:%Y} (UTC, {days} days)",
             f"{summary.first_event:%d %b} – {summary.last_event:%d %b}",
             help=f"Event times from {summary.first_event:%Y-%m-%d %H:%M} to "
                  f"{summary.last_event:%Y-%m-%d %H:%M} UTC")
    c.metric("Outcome known (labelled)", components.pct(summary.label_share),
             help=f"{summary.labelled:,} transactions have a fraud/legit label")
    d.metric("Fraud among labelled",
             components.pct(summary.labelled_fraud / summary.labelled if summary.labelled
                            else None, 2),
             help=f"{summary.labelled_fraud:,} confirmed fraud")
    if summary.labelled == 0:
        components.missing("No outcomes are known yet, so similar cases show no outcome and "
                           "permutation importance is unavailable. Import labels:",
                           "fraudlens import transactions FILE --labels LABELS_FILE")

st.subheader("Models")
if not statuses:
    components.missing("No model is registered in this workspace. Build the demo, or register "
                       "a model trained elsewhere:",
                       "fraudlens demo\nfraudlens models register FILE --name NAME --version V "
                       "--framework xgboost --schema schema.json")
else:
    st.dataframe(
        [{"model": s.info.model_id, "framework": s.info.framework, "stage": s.info.stage,
          "training holdout ROC AUC": s.info.roc_auc, "training holdout PR AUC": s.info.pr_auc,
          "transactions scored": s.scored, "SHAP values stored": s.stored,
          "SHAP coverage": s.shap_share} for s in statuses],
        hide_index=True,
        column_config={
            "training holdout ROC AUC": st.column_config.NumberColumn(format="%.3f"),
            "training holdout PR AUC": st.column_config.NumberColumn(format="%.3f"),
            "transactions scored": st.column_config.NumberColumn(format="localized"),
            "SHAP values stored": st.column_config.NumberColumn(format="localized"),
            "SHAP coverage": st.column_config.ProgressColumn(
                format="percent", min_value=0.0, max_value=1.0,
                help="Share of this model's scored transactions with stored SHAP values"),
        })
    st.caption("Training holdout: the rows each model was evaluated on when it was trained "
               "(its manifest's `metrics`), so each model has its own. Model Comparison "
               "scores every candidate on one shared matured holdout instead, so its AUCs "
               "differ from these.")
    todo = [s for s in statuses if s.next_command]
    if todo:
        st.markdown("**What to run next**")
        for s in todo:
            what = ("is registered but has scored nothing" if s.scored == 0 else
                    f"has SHAP values stored for {s.stored:,} of its {s.scored:,} scored "
                    "transactions. Case Explorer computes missing ones on demand; Global "
                    "Patterns covers stored ones only")
            components.missing(f"{s.info.model_id} {what}.", s.next_command)
    else:
        st.success("Every model has scored every transaction and has its SHAP values stored.",
                   icon=":material/check_circle:")

if summary.transactions:
    st.subheader("Label coverage per week")
    st.caption("Share of each week's transactions whose outcome is known. Chargebacks arrive "
               "weeks after the event, so recent weeks are only partly labelled.")
    components.chart(charts.label_coverage_chart(caches.weekly_labels()))
