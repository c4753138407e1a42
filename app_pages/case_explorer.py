"""Case Explorer: find a case by id, account or queue; see each model's score and why."""

import streamlit as st

from app.services import case as case_service
from app.services.case import md_escape
from app.shell import caches, case_work, components
from app.shell.auth import require
from app.shell.masking_ui import pii_view
from app.shell.what_if_panel import what_if_panel
from app.views import charts
from explainers.errors import FraudLensError

require("cases", "Case Explorer")
st.title("Case Explorer")

summary = components.warehouse_or_stop()
infos = components.models_or_stop()
ids = [m.model_id for m in infos]
txn = case_service.clean_id(st.query_params.get("txn"))
if st.query_params.get("txn") and txn is None:
    st.warning("The link's transaction id is not a valid id (letters, digits, _ . : -).")
linked = case_service.resolve_model(st.query_params.get("model"), ids,
                             [m.model_id for m in infos if m.stage == "champion"])
if st.query_params.get("model") and linked is None:
    st.warning(f"The link names a model that is not registered; showing {ids[0]} instead.")
model_id = components.model_picker(
    infos, key="case_model", default=linked, label="Model",
    help="Ranks the queue and explains the case. Every model's score is shown for the case.")
schema = caches.model_info(model_id).schema
countries = schema.feature("country").categories if "country" in schema.names else ()
components.case_finder(model_id, countries or (), summary.first_event.date(),
                       summary.last_event.date())

if txn is None:
    st.info("Open a case: type its transaction id, look up an account, or pick one from the "
            "queue. A link like `cases?txn=T000000668&model=fraud_xgb@1` opens a case directly.")
    st.stop()
row = caches.transaction(txn)
if row.empty:
    components.missing(f"There is no transaction {txn} in this workspace. Check the id; if it "
                       "is new, import it and score it:",
                       f"fraudlens import transactions FILE\nfraudlens score --model {model_id}",
                       kind="warning")
    st.stop()
if not components.audit_case_view(txn, model_id):
    st.stop()
if st.query_params.get("model") != model_id:
    st.query_params["model"] = model_id

st.header(f"Case {md_escape(txn)}")
st.markdown(f"Link to this case: `{components.case_url(txn, model_id)}`")
scores = caches.case_scores(txn)
if scores.empty:
    components.missing("No model has scored this transaction yet.",
                       f"fraudlens score --model {model_id}")
for col, (_, s) in zip(st.columns(max(len(scores), 1)), scores.iterrows(), strict=False):
    col.metric(f"{s['model_id']} score", components.score_pct(s["score"]),
               help="Probability of fraud according to this model")
    col.caption(f"rank {int(s['rank']):,} of {int(s['scored']):,} scored · "
                f"top {components.pct(s['top_share'], 2)}")

try:
    case = caches.case_explanation(model_id, row)
except FraudLensError as exc:
    st.error(f"This case cannot be explained with {model_id}: {exc}")
    st.stop()
st.subheader(f"Why {md_escape(model_id)} scored it {components.score_pct(case.probability)}")
st.caption("SHAP values from the SHAP store, in log-odds." if case.source == "store" else
           "SHAP values computed on demand (this case is not in the SHAP store; "
           f"`fraudlens explain --model {model_id}` stores them), in log-odds.")
chart_col, reasons_col = st.columns([3, 2])


@st.fragment
def waterfall() -> None:
    left, right = st.columns([3, 2])
    top_n = left.slider("Features shown", 3, len(case.feature_names), 10, key="wf_top")
    scale = right.segmented_control("Scale", charts.WATERFALL_SCALES, key="wf_scale",
                                    default="log-odds") or "log-odds"
    steps = case_service.waterfall_steps(case, schema, top_n)
    components.chart(charts.waterfall_chart(steps, scale), key=f"waterfall_{scale}")
    if scale == "probability":
        st.caption("Each bar is the change in fraud probability when its feature is added, in "
                   "this order (largest SHAP first), starting from the base value's "
                   "probability: the changes add up to p(case) − p(base). A feature's change "
                   "depends on the order; its log-odds value does not.")
    else:
        st.caption("Bars add up from the base value (the model's average output) to this "
                   "case's score in log-odds; the last bar gives the probability. Red pushes "
                   "towards fraud, blue towards legit.")


with chart_col:
    waterfall()
with reasons_col:
    reasons = case_service.case_reasons(case, schema)
    moves = case_service.probability_changes(case)
    st.markdown("**What makes it look like fraud**")
    st.markdown("\n".join(f"- {case_service.reason_text(r, schema, moves.get(r.feature))}"
                          for r in reasons.towards_fraud) or "- nothing")
    st.markdown("**What makes it look legitimate**")
    st.markdown("\n".join(f"- {case_service.reason_text(r, schema, moves.get(r.feature))}"
                          for r in reasons.towards_legit) or "- nothing")
    st.caption("pp: percentage points of fraud probability, each feature added in the "
               "waterfall's order, so they sum to p(case) − p(base).")

what_if_panel(txn, row, model_id, schema)

details_col, outcome_col = st.columns([2, 3])
with details_col:
    st.subheader("Transaction")
    st.caption("PII is masked; an admin can unmask it with a reason, which is audited.")
    # st.dataframe, not st.table: a table renders its cells as Markdown, and these are data
    st.dataframe(case_service.detail_rows(pii_view(row, case_id=txn), schema), hide_index=True,
                 key="case_details")
with outcome_col:
    case_work.disposition_panel(txn, model_id)

with st.container():  # full width: the similar-cases table has many columns
    st.subheader("Similar past cases")
    similar = caches.similar_cases(case)
    if similar is None:
        components.missing(f"No SHAP values are stored for {model_id}, so there are no past "
                           "cases to compare with.", f"fraudlens explain --model {model_id}")
    elif similar.empty:
        st.info("No labelled cases are in the SHAP store yet; outcomes arrive with labels.")
    else:
        st.caption("Labelled cases whose SHAP vectors are nearest to this one: scored for the "
                   "same reasons. How did they turn out? `outcome` is the chargeback label; "
                   "`analyst_outcome` is an analyst's decision (earlier, noisier). Select one "
                   "to open it.")
        components.pick_case(case_work.with_analyst_outcome(similar), "similar", model_id)

st.subheader("The account around this case")
st.caption(f"The account's transactions 30 days either side, coloured by {md_escape(model_id)} "
           "score; "
           "the ringed point is this case. Amounts in USD on a log scale.")
components.chart(charts.timeline_chart(caches.timeline(txn, model_id)))
