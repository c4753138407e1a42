"""Global Patterns: what drives a model's scores across a cohort of transactions."""

from datetime import timedelta

import streamlit as st

from app.services.case import md_escape
from app.shell import caches, components
from app.shell.auth import can, require
from app.views import charts
from data_access.shap_store import describe_summary

principal = require("patterns", "Global Patterns")
st.title("Global Patterns")
st.caption("Which features drive the model's scores across a cohort, and how. Contributions "
           "are SHAP values in log-odds: positive pushes towards fraud, negative towards legit.")

summary = components.warehouse_or_stop()
infos = components.models_or_stop()
model_id = components.model_picker(infos, key="patterns_model")
schema = caches.model_info(model_id).schema
stored = caches.shap_coverage().query("model_id == @model_id")
if stored.empty or int(stored["stored"].iloc[0]) == 0:
    components.missing(f"No SHAP values are stored for {model_id}; global patterns are computed "
                       "from the SHAP store. Fill it (add `--sample 200000` for a seeded sample "
                       "on large warehouses):", f"fraudlens explain --model {model_id}")
    st.stop()

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
cohort = caches.cohort_of(since, until, band[0], band[1], segment, segment_value)

table = caches.cohort_summary(model_id, cohort)
rows = int(table["row_count"].iloc[0]) if len(table) else 0
if rows == 0:
    st.info("No transaction with stored SHAP values falls in this cohort. Widen the dates or "
            "the score band, or choose another segment value.")
    st.stop()
st.caption(f"**{rows:,}** transactions with stored SHAP values"
           + (f" · {since:%d %b} – {until:%d %b %Y} (UTC)" if since and until else "")
           + f" · score {band[0]:.0%}–{band[1]:.0%}"
           + md_escape(f" · {segment} = {segment_value}" if segment else ""))
ranked = [f for f in table["feature"] if f in schema.names]
descriptions = {f.name: f.description for f in schema.features}


IMPORTANCE_TOP = 20


@st.fragment
def importance() -> None:
    st.subheader("Feature importance")
    measure = st.radio("Measure", caches.IMPORTANCE_MEASURES, horizontal=True, key="imp_kind")
    with st.spinner("Computing…"):
        view = caches.importance(model_id, cohort, measure)
    if view.table is None:
        st.info(view.note)
        return
    total = len(view.table)
    show_all = total > IMPORTANCE_TOP and st.toggle(f"Show all {total} features",
                                                      key="imp_all")
    shown = total if show_all or total <= IMPORTANCE_TOP else IMPORTANCE_TOP
    st.caption(f"{view.note} Showing {'all ' if shown == total else ''}{shown} of {total} "
               "features" + ("" if shown == total else ", largest first") + ".")
    components.chart(charts.importance_chart(view.table, view.value, view.title,
                                             top_n=shown), key=f"imp_chart_{shown}")


@st.fragment
def beeswarm() -> None:
    st.subheader("How values push scores (beeswarm)")
    n = st.select_slider("Transactions sampled", [500, 1000, 2000, 5000], caches.BEESWARM_ROWS,
                         key="bee_n")
    points = caches.beeswarm_points(model_id, cohort, n)
    st.caption(f"{min(n, rows):,} transactions (seeded sample) × the 10 most important "
               "features. Each dot is a transaction; colour is the feature's value from low "
               "(blue) to high (red) within the sample; grey dots are categories or missing "
               "values (hover to see them).")
    components.chart(charts.beeswarm_chart(points), key="bee_chart")


@st.fragment
def dependence() -> None:
    st.subheader("Dependence on one feature")
    feature = st.selectbox("Feature", ranked, key="dep_feature",
                           format_func=lambda f: f"{f} — {descriptions.get(f, '')}")
    partner = next(f for f in ranked if f != feature)
    why = "the most important other feature"
    if st.toggle("Colour by the strongest interacting feature (SHAP interaction values on "
                 f"{caches.INTERACTION_ROWS} transactions: seconds, longer for CatBoost)",
                 key="dep_interactions"):
        with st.spinner("Computing SHAP interaction values…"):
            partners = caches.strongest_partners(model_id, cohort, 1000)
        match = partners[partners["feature"] == feature] if partners is not None else None
        if match is not None and not match.empty and match["partner"].iloc[0]:
            partner = str(match["partner"].iloc[0])
            why = "its strongest interaction partner (mean |SHAP interaction value|)"
        else:
            why = (f"the most important other feature ({feature} is not among the "
                   f"{caches.INTERACTION_TOP_K} features whose interactions are computed)")
    points = caches.dependence_points(model_id, cohort, caches.DEPENDENCE_ROWS, feature,
                                      partner)
    categorical = schema.feature(feature).is_categorical
    log_x = not categorical and st.toggle(
        "Log scale for the value (symlog: spreads skewed values such as account age; zero "
        "stays on the axis)", key="dep_log_x")
    st.caption(md_escape(f"SHAP of {feature} against its value for {caches.DEPENDENCE_ROWS:,} "
                         "sampled transactions; "
                         f"colour is {partner}, {why}."))
    components.chart(charts.dependence_chart(
        points, feature, partner, categorical=categorical,
        color_categorical=schema.feature(partner).is_categorical, log_x=log_x),
        key=f"dep_chart_{log_x}")


importance()
beeswarm()
dependence()

st.subheader("Export")
if not can(principal, "export"):
    st.info("Your role may not export data.")
else:
    st.caption("The same bytes as `fraudlens export shap-summary` for this cohort: feature, "
               "description, mean_abs_shap, mean_shap, rank, model, cohort, row_count.")
    components.audited_csv_download(
        "SHAP summary (CSV)", describe_summary(table, descriptions),
        target=f"shap-summary:{model_id}",
        file_name=f"shap_summary_{model_id.replace('@', '_v')}.csv", key="shap_summary",
        details={"model": model_id, "cohort": cohort.describe()})
    if band == (0.0, 1.0) and segment is None and since and until:
        st.code(f"fraudlens export shap-summary --model {model_id} --since {since} "
                f"--until {until + timedelta(days=1)} --out shap_summary.csv", language="bash")
