"""Case Explorer: find a case by id, account or queue; see each model's score and why."""

from datetime import timedelta

import streamlit as st

from app import cases, components, queries
from app.auth import require
from app.masking_ui import pii_view
from data_access.errors import FraudLensError

require("cases", "Case Explorer")
st.title("Case Explorer")

infos = queries.models()
if not infos:
    components.missing("No model is registered, so there are no scores to explain.",
                       "fraudlens demo")
    st.stop()
ids = [m.model_id for m in infos]
linked_txn = st.query_params.get("txn")
txn = cases.clean_id(linked_txn)
if linked_txn and txn is None:
    st.warning("The link's transaction id is not a valid id (letters, digits, _ . : -).")
linked_model = cases.resolve_model(st.query_params.get("model"), ids,
                                   [m.model_id for m in infos if m.stage == "champion"])
if st.query_params.get("model") and linked_model is None:
    st.warning(f"The link names a model that is not registered; showing {ids[0]} instead.")
model_id = components.model_picker(
    infos, key="case_model", default=linked_model, label="Model",
    help="Ranks the queue and explains the case. Every model's score is shown for the case.")
model = queries.model_info(model_id)


@st.fragment
def finder() -> None:
    by_id, by_account, by_queue = st.tabs(["Transaction id", "Account id", "Queue"])
    with by_id, st.form("open_by_id", border=False):
        typed = st.text_input("Transaction id", placeholder="e.g. T000000668", key="find_txn")
        if st.form_submit_button("Open case", type="primary"):
            found = cases.clean_id(typed)
            if found is None:
                st.warning("Type a transaction id (letters, digits, _ . : -).")
            else:
                components.open_case(found, model_id)
    with by_account:
        account = cases.clean_id(st.text_input("Account id", placeholder="e.g. A0000380",
                                               key="find_account"))
        if account:
            rows = queries.account_cases(account, model_id)
            if rows.empty:
                st.info(f"No transactions for account {account}. Check the id.")
            else:
                picked = components.paged_table(rows, key="account_rows", selectable=True,
                                                column_config=_list_config())
                if picked is not None:
                    components.open_case(str(picked["transaction_id"].iloc[0]), model_id)
    with by_queue:
        _queue()


def _list_config() -> dict:
    return {"event_time": st.column_config.DatetimeColumn("time (UTC)",
                                                          format="YYYY-MM-DD HH:mm"),
            "amount_usd": st.column_config.NumberColumn("amount (USD)", format="dollar"),
            "score": st.column_config.NumberColumn("score", format="percent"),
            "transaction_id": "transaction", "txn_type": "type"}


def _queue() -> None:
    summary = queries.warehouse_summary()
    if summary.last_event is None:
        components.missing("The warehouse has no transactions.", "fraudlens demo")
        return
    last = summary.last_event.date()
    first = summary.first_event.date()
    c1, c2, c3, c4 = st.columns([2, 2, 2, 2])
    window = c1.date_input("Event dates (UTC)", (max(first, last - timedelta(days=13)), last),
                           min_value=first, max_value=last, key="queue_dates")
    band = c2.slider("Score band", 0.0, 1.0, (0.5, 1.0), 0.01, key="queue_band",
                     help="Model score as a probability of fraud")
    country_feature = model.schema.feature("country") if "country" in model.schema.names else None
    countries = c3.multiselect("Country", list(country_feature.categories or ()),
                               key="queue_countries") if country_feature else []
    low, high = c4.columns(2)
    min_amount = low.number_input("Min amount ($)", min_value=0.0, value=None, step=100.0,
                                  key="queue_min_amount")
    max_amount = high.number_input("Max amount ($)", min_value=0.0, value=None, step=100.0,
                                   key="queue_max_amount")
    since, until = (window[0], window[-1]) if window else (None, None)
    rows = queries.queue(model_id, since, until, band[0], band[1], tuple(countries),
                         min_amount, max_amount)
    if rows.empty:
        st.info("No scored transactions match these filters. Widen the dates or score band.")
        return
    st.caption(f"Highest {model_id} scores first, at most 200 cases. Select a row to open it.")
    picked = components.paged_table(rows, key="queue_rows", selectable=True,
                                    column_config=_list_config())
    if picked is not None:
        components.open_case(str(picked["transaction_id"].iloc[0]), model_id)


finder()

if txn is None:
    st.info("Open a case: type its transaction id, look up an account, or pick one from the "
            "queue. A link like `cases?txn=T000000668&model=fraud_xgb@1` opens a case directly.")
    st.stop()

row = queries.transaction(txn)
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

st.header(f"Case {txn}")
st.markdown(f"Link to this case: `{components.case_url(txn, model_id)}`")

scores = queries.case_scores(txn)
if scores.empty:
    components.missing("No model has scored this transaction yet.",
                       f"fraudlens score --model {model_id}")
for col, (_, s) in zip(st.columns(max(len(scores), 1)), scores.iterrows(), strict=False):
    col.metric(f"{s['model_id']} score", components.pct(s["score"]),
               help="Probability of fraud according to this model")
    col.caption(f"rank {int(s['rank']):,} of {int(s['scored']):,} scored · "
                f"top {components.pct(s['top_share'], 2)}")

left, right = st.columns([2, 3])
with left:
    st.subheader("Transaction")
    st.caption("PII is masked; an admin can unmask it with a reason, which is audited.")
    masked = pii_view(row, case_id=txn)
    st.dataframe(cases.detail_rows(masked, model.schema), hide_index=True)

with right:
    st.subheader(f"Why {model_id} scored it")
    try:
        case = queries.case_explanation(model_id, row)
    except FraudLensError as exc:
        st.error(f"This case cannot be explained with {model_id}: {exc}")
        st.stop()
    if case.source == "store":
        st.caption("SHAP values from the SHAP store, in log-odds.")
    else:
        st.caption(f"SHAP values computed on demand (this case is not in the SHAP store; "
                   f"`fraudlens explain --model {model_id}` stores them), in log-odds.")

    @st.fragment
    def waterfall() -> None:
        top_n = st.slider("Features shown", 3, len(case.feature_names), 10, key="wf_top")
        components.chart("waterfall", cases.waterfall_steps(case, model.schema, top_n))
        st.caption("Bars add up from the base value (the model's average output) to this "
                   "case's score in log-odds; the last bar gives the probability. Red pushes "
                   "towards fraud, blue towards legit.")

    waterfall()
    reasons = cases.case_reasons(case, model.schema)
    st.markdown("**Reasons it looks like fraud**")
    st.markdown("\n".join(f"- {r.text}" for r in reasons.towards_fraud) or "- none")
    st.markdown("**Reasons it looks legitimate**")
    st.markdown("\n".join(f"- {r.text}" for r in reasons.towards_legit) or "- none")

st.subheader("The account around this case")
st.caption(f"The account's transactions 30 days either side, coloured by {model_id} score; "
           "the ringed point is this case. Amounts in USD on a log scale.")
components.chart("timeline", queries.timeline(txn, model_id))

st.subheader("Similar past cases")
similar = queries.similar_cases(case)
if similar is None:
    components.missing(f"No SHAP values are stored for {model_id}, so there are no past cases "
                       "to compare with.", f"fraudlens explain --model {model_id}")
elif similar.empty:
    st.info("No labelled cases are in the SHAP store yet; outcomes arrive with labels.")
else:
    st.caption("Labelled cases whose SHAP vectors are nearest to this one (Euclidean distance "
               "in log-odds): cases scored for the same reasons, and how they turned out. "
               "Select one to open it.")
    picked = components.paged_table(
        similar, key="similar", selectable=True,
        column_config={**_list_config(),
                       "distance": st.column_config.NumberColumn(format="%.2f")})
    if picked is not None:
        components.open_case(str(picked["transaction_id"].iloc[0]), model_id)
