"""Global Patterns: what drives a model's scores across a cohort of transactions."""

from datetime import timedelta

import streamlit as st

from app import components, queries
from app.auth import can, require

principal = require("patterns", "Global Patterns")
st.title("Global Patterns")
st.caption("Which features drive the model's scores across a cohort, and how. Contributions "
           "are SHAP values in log-odds: positive pushes towards fraud, negative towards legit.")

infos = queries.models()
if not infos:
    components.missing("No model is registered.", "fraudlens demo")
    st.stop()
model_id = components.model_picker(infos, key="patterns_model")
schema = queries.model_info(model_id).schema
stored = queries.shap_coverage().query("model_id == @model_id")
if stored.empty or int(stored["stored"].iloc[0]) == 0:
    components.missing(f"No SHAP values are stored for {model_id}; global patterns are computed "
                       "from the SHAP store. Fill it (add `--sample 200000` for a seeded sample "
                       "on large warehouses):", f"fraudlens explain --model {model_id}")
    st.stop()

summary = queries.warehouse_summary()
first, last = summary.first_event.date(), summary.last_event.date()
c1, c2, c3, c4 = st.columns(4)
window = c1.date_input("Event dates (UTC)", (first, last), min_value=first, max_value=last,
                       key="cohort_dates")
band = c2.slider("Score band", 0.0, 1.0, (0.0, 1.0), 0.01, key="cohort_band",
                 help="Only transactions this model scored within the band")
segment = c3.selectbox("Segment by", [None, *schema.categorical], key="cohort_segment",
                       format_func=lambda s: "all transactions" if s is None else s)
segment_value = c4.selectbox("Segment value", schema.feature(segment).categories or (),
                             key=f"cohort_value_{segment}") if segment else None
since, until = (window[0], window[-1]) if window else (None, None)
cohort = queries.cohort_of(since, until, band[0], band[1], segment, segment_value)

table = queries.cohort_summary(model_id, cohort)
rows = int(table["row_count"].iloc[0]) if len(table) else 0
if rows == 0:
    st.info("No transaction with stored SHAP values falls in this cohort. Widen the dates or "
            "the score band, or choose another segment value.")
    st.stop()
st.caption(f"Cohort: {cohort.describe()} · {rows:,} transactions with stored SHAP values.")
ranked = [f for f in table["feature"] if f in schema.names]
descriptions = {f.name: f.description for f in schema.features}


@st.fragment
def importance() -> None:
    st.subheader("Feature importance")
    kind = st.radio("Measure", ["Mean |SHAP| (this cohort)", "Gain (the model's own)",
                                "Permutation (ROC AUC drop)"], horizontal=True, key="imp_kind")
    if kind.startswith("Mean"):
        frame, value, title = table, "mean_abs_shap", "Mean |SHAP| (log-odds)"
        st.caption("Average size of each feature's contribution over the cohort.")
    elif kind.startswith("Gain"):
        frame, value, title = queries.gain_table(model_id), "gain", "Share of total gain"
        st.caption("How much each feature's splits improved the model in training; it does "
                   "not depend on the cohort.")
    else:
        with st.spinner("Shuffling each feature on a labelled sample…"):
            result = queries.permutation_table(model_id, cohort)
        if result is None:
            st.info("Permutation importance needs both fraud and legit labels in the cohort; "
                    "this cohort has only one kind (or no labels yet).")
            return
        frame, n, auc = result
        value, title = "auc_drop", "ROC AUC lost when shuffled"
        st.caption(f"Seeded sample of {n:,} labelled cohort transactions, baseline ROC AUC "
                   f"{auc:.3f}, 3 shuffles per feature.")
    frame = frame.assign(description=frame["feature"].map(descriptions))
    components.chart("importance", frame, value=value, title=title, key="imp_chart")


@st.fragment
def beeswarm() -> None:
    st.subheader("How values push scores (beeswarm)")
    n = st.select_slider("Transactions sampled", [500, 1000, 2000, 5000], 1000, key="bee_n")
    points = queries.beeswarm_points(model_id, cohort, n)
    st.caption(f"{min(n, rows):,} transactions (seeded sample) × the 10 most important "
               "features. Each dot is a transaction; colour is the feature's value from low "
               "(blue) to high (red) within the sample; grey dots are categories or missing "
               "values (hover to see them).")
    components.chart("beeswarm", points, key="bee_chart")


@st.fragment
def dependence() -> None:
    st.subheader("Dependence on one feature")
    feature = st.selectbox("Feature", ranked, key="dep_feature",
                           format_func=lambda f: f"{f} — {descriptions.get(f, '')}")
    partner = next(f for f in ranked if f != feature)
    why = "the most important other feature"
    if st.toggle("Colour by the strongest interacting feature (computes SHAP interaction "
                 f"values on {queries.INTERACTION_ROWS} transactions; takes seconds)",
                 key="dep_interactions"):
        with st.spinner("Computing SHAP interaction values…"):
            partners = queries.strongest_partners(model_id, cohort, 1000)
        match = partners[partners["feature"] == feature] if partners is not None else None
        if match is not None and not match.empty and match["partner"].iloc[0]:
            partner = str(match["partner"].iloc[0])
            why = "its strongest interaction partner (mean |SHAP interaction value|)"
        else:
            why = (f"the most important other feature ({feature} is not among the "
                   f"{queries.INTERACTION_TOP_K} features whose interactions are computed)")
    points = queries.dependence_points(model_id, cohort, 1000, feature, partner)
    st.caption(f"SHAP of {feature} against its value for 1,000 sampled transactions; colour "
               f"is {partner}, {why}.")
    components.chart("dependence", points, feature=feature, color_by=partner,
                     categorical=schema.feature(feature).is_categorical,
                     color_categorical=schema.feature(partner).is_categorical, key="dep_chart")


importance()
beeswarm()
dependence()

st.subheader("Export")
if not can(principal, "export"):
    st.info("Your role may not export data.")
else:
    st.caption("The same bytes as `fraudlens export shap-summary` for this cohort: feature, "
               "mean_abs_shap, mean_shap, rank, model, cohort, row_count.")
    components.audited_csv_download(
        "SHAP summary (CSV)", table, target=f"shap-summary:{model_id}",
        file_name=f"shap_summary_{model_id.replace('@', '_v')}.csv", key="shap_summary",
        details={"model": model_id, "cohort": cohort.describe()})
    if band == (0.0, 1.0) and segment is None and since and until:
        st.code(f"fraudlens export shap-summary --model {model_id} --since {since} "
                f"--until {until + timedelta(days=1)} --out shap_summary.csv", language="bash")
