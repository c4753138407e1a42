"""Pattern Review: the weekly meeting's page — findings (clusters of SHAP vectors) with their
rule, backtest, amount at risk and change since last week; annotations; audited exports."""

import hashlib
from datetime import timedelta

import streamlit as st

from app.services import pattern_review
from app.shell import caches, case_work, components, finding_panel
from app.shell.auth import audit_event, can, require
from app.shell.resources import journal, lake_cursor, load_model, manifests
from app.views import review_pack
from data_access import review_journal
from explainers.errors import AuditError, FraudLensError

principal = require("review", "Pattern review")
st.title("Pattern Review")
st.caption("What the model is finding this week, and what it misses. Each finding groups cases "
           "the model explains alike (clusters of SHAP vectors), with a short rule that picks "
           "them out of all transactions, backtested against the labels known today.")

infos = caches.models()
if not infos:
    components.missing("No model is registered.", "fraudlens demo")
    st.stop()
c1, c2, c3 = st.columns([2, 2, 1], vertical_alignment="bottom")
with c1:
    model_id = components.model_picker(infos, key="review_model")
default = caches.last_full_week()
if default is None:
    components.missing("The warehouse holds no transactions.", "fraudlens demo")
    st.stop()
dates = c2.date_input("Event dates (UTC)", (default.since, default.until - timedelta(days=1)),
                      key="review_dates",
                      help="Defaults to the newest full week (Monday to Sunday, UTC) with at "
                           "least a quarter of its transactions labelled: newer weeks hold too "
                           "few labels for the confirmed-fraud rates and backtests to mean much")
if len(dates) != 2:
    st.stop()
window = pattern_review.Window(dates[0], dates[1] + timedelta(days=1))
extra = next((m for m in manifests() if m["model_id"] == model_id), {})
threshold = pattern_review.model_threshold(extra)
if c3.button("Mine findings", type="primary", icon=":material/hub:", key="review_mine"):
    try:
        with st.spinner("Clustering this window's cases and backtesting their rules…"):
            with lake_cursor() as cur:
                result = pattern_review.mine(cur, load_model(model_id), window,
                                             seed=caches.sample_seed(), threshold=threshold)
            review_journal.store_findings(journal(), model_id, window.since, window.until,
                                 result.findings, result.members, principal.actor)
    except FraudLensError as exc:
        st.error(f"Mining failed: {exc}")

table = review_journal.stored_findings(journal(), model_id, window.since, window.until)
if table.empty:
    st.info(f"No findings yet for {model_id}, {window.text()}. Press **Mine findings** "
            f"(cases scored ≥ {threshold:g}, and confirmed fraud scored below it; a window "
            "with neither has no findings).")
    st.stop()
current = table[table["change"] != "gone"]
gone = table[table["change"] == "gone"]
st.caption(f"{len(current)} findings, {pattern_review.mined_at_text(table)} · threshold "
           f"{threshold:g} · flagged = scored at or above it; missed = confirmed fraud below it.")
notes = review_journal.latest_annotations(journal(), current["finding_id"])
status = dict(zip(notes["finding_id"], notes["status"], strict=True))
decided = case_work.finding_outcomes(
    review_journal.stored_members(journal(), model_id, window.since, window.until))

st.dataframe(review_pack.findings_overview(current, status), hide_index=True,
             key="review_overview", column_config={
                 "at risk (USD)": st.column_config.NumberColumn(format="dollar"),
                 "rule precision": st.column_config.NumberColumn(format="%.1f%%"),
                 "rule recall": st.column_config.NumberColumn(format="%.1f%%"),
                 "alerts a day": st.column_config.NumberColumn(format="%.1f")})
labels = {row.finding_id: review_pack.finding_label(row, status.get(row.finding_id,
                                                                    "not annotated"))
          for row in current.itertuples(index=False)}
if current.empty:
    st.info("No finding this week: every finding of the previous week is gone (below).")
finding_id = st.selectbox("Finding", list(labels), format_func=labels.__getitem__,
                          key="review_finding",
                          help="One finding at a time, in rank order; the table above has "
                               "them all")
if finding_id is not None:
    finding_panel.show(next(current[current["finding_id"] == finding_id].itertuples()), model_id,
                       label=labels[finding_id], decided=decided, notes=notes,
                       principal=principal)

if len(gone):
    st.subheader("Gone since the previous week")
    st.dataframe(gone[["finding_id", "population", "cases_previous_week", "top_drivers"]],
                 hide_index=True)

st.subheader("Export")
if not can(principal, "export"):
    st.info("Your role may not export data.")
    st.stop()
stem = pattern_review.export_stem(model_id, window)  # the dates the page shows
details = {"model": model_id, "since": str(window.since), "until": str(window.until)}
components.audited_csv_download("findings CSV", pattern_review.csv_table(table, notes),
                                target=f"findings:{model_id}", file_name=f"findings_{stem}.csv",
                                key="review_findings", details=details)
components.audited_csv_download("SHAP summary CSV", pattern_review.shap_summary_table(table),
                                target=f"findings-shap:{model_id}",
                                file_name=f"findings_shap_{stem}.csv", key="review_shap",
                                details=details)
version = (model_id, str(window), str(table["mined_at"].iloc[0]),
           tuple(zip(notes["finding_id"], notes["revision"], strict=True)))
prepared = st.session_state.get("_review_pack")
if (prepared is None or prepared[0] != version) and st.button(
        "Prepare HTML review pack", icon=":material/download:", key="review_pack_prepare"):
    pack = review_pack.review_pack_html(table, notes).encode("utf-8")
    digest = hashlib.sha256(pack).hexdigest()
    try:
        audit_event("export", f"review-pack:{model_id}", "ok",
                    {**details, "sha256": digest, "bytes": len(pack), "format": "html"})
        prepared = st.session_state["_review_pack"] = (version, pack, digest)
    except AuditError as exc:
        st.error(f"Export refused: the audit record could not be written ({exc}).")
if prepared is not None and prepared[0] == version:
    st.download_button("Download HTML review pack", prepared[1], file_name=f"review_{stem}.html",
                       mime="text/html", on_click="ignore", type="primary",
                       key="review_pack_download", icon=":material/download:")
    st.caption(f"SHA-256 {prepared[2][:16]}… · recorded in the audit trail")
