"""Model Comparison: judge candidates on one matured holdout, then promote the better one."""

import time
from dataclasses import replace
from datetime import UTC, datetime

import streamlit as st

from app.services import model_comparison as comparison
from app.services import promotion
from app.shell import caches, classifier_panel, components, resources
from app.shell.auth import audit_event, can, require
from app.shell.resources import lake_cursor, load_model, workspace
from app.views import comparison_report
from app.views.charts import waterfall_chart
from data_access.report_cache import Kept
from explainers.errors import AuditError, FraudLensError
from explainers.latency import LatencyMeasurement

principal = require("compare", "Model comparison")
st.title("Model Comparison")
st.caption("Candidates judged on the same matured holdout: labelled transactions after every "
           "candidate's training data, whose labels have had time to arrive. Intervals are 95% "
           "bootstrap percentiles; differences are paired (same resamples for every model).")

infos = caches.models()
if len(infos) < 2:
    components.missing("Comparing needs two or more registered models.", "fraudlens demo")
    st.stop()
labels = {m.model_id: components.model_label(m) for m in infos}
c1, c2 = st.columns([5, 3])
chosen = c1.multiselect("Candidates", list(labels), key="cmp_models",
                        default=list(comparison.default_candidates(infos)),
                        format_func=lambda m: labels.get(m, m),
                        help="Two or more registered models; each needs scores "
                             "(`fraudlens score`) and ideally stored SHAP values")
if len(chosen) < 2:
    st.info("Pick two or more models to compare.")
    st.stop()
reference = c2.selectbox("Reference (the model you would switch from)", chosen,
                         index=chosen.index(comparison.default_reference(infos, chosen)),
                         key="cmp_reference", format_func=lambda m: labels.get(m, m))


@st.cache_data(ttl=120, show_spinner=False)
def _newest_label(path: str):
    with lake_cursor() as cur:
        return comparison.newest_label_time(cur)


newest = _newest_label(str(workspace().path))
defaults = comparison.default_settings(caches.sample_seed())  # what `fraudlens precompute` keeps
with st.expander("Holdout, business and SLA settings", icon=":material/tune:"):
    a, b, c = st.columns(3)
    as_of = a.date_input("Labels known as of (UTC)", value=newest.date() if newest else None,
                         key="cmp_as_of", help="Only labels that had arrived by the end of "
                         "this day count. Default: the day of the newest label.")
    maturity = b.number_input("Label maturity (days)", 0, 365, defaults.maturity_days,
                              key="cmp_maturity",
                              help="Transactions younger than this at the as-of date still "
                                   "have labels arriving (chargebacks); they are left out")
    coverage = c.slider("Minimum weekly label coverage", 0.5, 1.0, defaults.min_week_coverage,
                        0.01,
                        key="cmp_coverage", format="%.2f",
                        help="Weeks where a smaller share of transactions is labelled are "
                             "left out: their labels are biased towards fast-arriving fraud")
    d, e, f = st.columns(3)
    capacity = d.number_input("Review capacity (cases per day)", 1, 1_000_000,
                              defaults.capacity, key="cmp_capacity")
    review_cost = e.number_input("Cost of one review (USD)", 0.0, 100_000.0,
                                 defaults.review_cost, step=1.0, key="cmp_review_cost")
    sla_ms = f.number_input("SLA: single-row latency p99 (ms)", 0.01, 10_000.0,
                            defaults.sla_p99_ms, key="cmp_sla")
settings = replace(
    defaults, as_of=as_of if newest is None or as_of != newest.date() else None,
    maturity_days=int(maturity), min_week_coverage=float(coverage), capacity=int(capacity),
    review_cost=float(review_cost), sla_p99_ms=float(sla_ms))


@st.cache_data(max_entries=32, show_spinner="Timing the model on this machine…")
def _latency(path: str, model_id: str, sha256: str, _manifest, _model,
             _frame) -> LatencyMeasurement:
    """Per model checksum: timing costs seconds and the model cannot change under its sha."""
    return comparison.timed_with(workspace().registry)(_model, _manifest, _frame)


def _timed(model, manifest, frame) -> LatencyMeasurement:
    return _latency(str(workspace().path), model.key, manifest.sha256, manifest, model, frame)


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _computed(path: str, refs: tuple[str, ...], shas: tuple[str, ...], ref: str,
              cfg: comparison.ComparisonSettings, version: str,
              asked: float) -> comparison.ComparisonReport:
    """Computed on the lake now and kept for `version` (keyed by the models' checksums, the
    lake's data version and the settings). The stage lines (as `fraudlens compare` prints
    them) are created in here, so a cached report replays them in a collapsed box; `asked`
    (when a recompute was asked for) makes a recompute run anew."""
    manifests = [workspace().registry.resolve(r) for r in refs]
    with st.status("Comparing on the matured holdout…", expanded=True) as status:
        status.write(f"loading {', '.join(refs)}")
        models = [load_model(r) for r in refs]
        with lake_cursor() as cur:
            report = comparison.build_report(cur, manifests, models, cfg, reference=ref,
                                             latency=_timed, progress=status.write)
        comparison.keep_report(workspace().path, report, version)
        caches.clear_kept()
        when = report.created_at[:19].replace("T", " ")
        status.update(label=f"Compared on the matured holdout at {when} UTC",
                      state="complete", expanded=False)
    return report


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def _waterfalls(path: str, version: str, model_ids: tuple[str, ...], shas: tuple[str, ...],
                txn: str, label: float) -> comparison.CaseWaterfalls:
    """Both models' waterfalls for one disagreement (amount, SHAP steps: no PII), per data
    version and model checksums: selecting a row computes them once, not on every run."""
    models = [load_model(m) for m in model_ids]
    with lake_cursor() as cur:
        return comparison.case_waterfalls(cur, models, txn, label)


def _ask_recompute(parts: tuple, version: str) -> None:
    st.session_state["cmp_recompute"] = (parts, version, time.time())


version = resources.data_version()
try:
    shas = tuple(workspace().registry.resolve(m).sha256 for m in chosen)
    parts = comparison.kept_parts(chosen, shas, reference, settings)
    kept = caches.newest_kept(comparison.KEPT_KIND, comparison.ComparisonReport, parts,
                              version)
    asked = st.session_state.pop("cmp_recompute", None)
    asked_at = asked[2] if asked and asked[:2] == (parts, version) else None
    if kept is None or asked_at is not None:  # nothing kept for these models, or asked for
        report = _computed(str(workspace().path), tuple(chosen), shas, reference, settings,
                           version, asked_at or 0.0)
        kept = Kept(report, version, datetime.now(UTC), True)
    else:
        report = kept.result
except FraudLensError as exc:
    st.error(str(exc))
    st.stop()
for warning in report.warnings:
    st.warning(warning)
# what the charts are drawn from: each is built once per report, not on every run
memo = (report.created_at, tuple(report.model_ids), report.reference, repr(report.settings))

h = report.holdout
st.subheader("Holdout")
age, refresh = st.columns([4, 1], vertical_alignment="center")
if kept.current:
    age.caption(f"This comparison was computed at {kept.age_text()} for these models' "
                "checksums, the lake's current data and these settings; it is kept until one "
                "of them changes.")
    refresh.button("Recompute", icon=":material/refresh:", key="cmp_refresh",
                   on_click=_ask_recompute, args=(parts, version))
else:
    age.warning(f"Showing the comparison computed at {kept.age_text()} for these models and "
                "settings. The lake has changed since (new data), so its numbers may be out "
                "of date.", icon=":material/history:")
    refresh.button("Recompute on current data", icon=":material/refresh:", key="cmp_refresh",
                   on_click=_ask_recompute, args=(parts, version))
m1, m2, m3, m4 = st.columns(4)
m1.metric("Transactions", f"{h.rows:,}")
m2.metric("Fraud cases", f"{h.fraud:,}", help=f"${h.fraud_usd:,.0f} of fraud")
m3.metric("Event window (UTC)", f"{h.start:%b %d} – {h.end:%b %d}", help=f"{h.days} days")
m4.metric("Labels as of (UTC)", f"{h.as_of:%b %d, %H:%M}", help=f"{h.as_of:%Y-%m-%d %H:%M:%S} UTC")
st.caption(f"Every metric below is on this matured holdout ({h.rows:,} transactions, "
           f"{h.start:%Y-%m-%d} – {h.end:%Y-%m-%d}), shared by all candidates; Home shows "
           "each model's own training holdout, so its AUCs differ. Transactions left out, "
           "each counted once under its first reason:")
st.dataframe(h.exclusion_frame(), hide_index=True, column_config={
    "reason": st.column_config.TextColumn("reason", width="large"),
    "rows": st.column_config.NumberColumn("transactions", format="localized")})

pair = report.pairs[0]
if len(report.pairs) > 1:  # explanations and disagreements compare the reference with one
    challenger = st.selectbox("Challenger", [p.challenger for p in report.pairs],
                              key="cmp_challenger")
    pair = report.pair(challenger)


def _metrics() -> None:
    """Metrics with intervals, their chart and calibration."""
    st.subheader("Metrics")
    st.caption(f"Estimate [95% interval] from {report.metrics.n_resamples} bootstrap resamples "
               f"(seed {report.metrics.seed}). The last column is the paired difference to "
               f"{report.reference}; * marks an interval that excludes zero. Precision in the top "
               f"{settings.capacity} per day: each day's {settings.capacity} highest scores are "
               "reviewed.")
    st.dataframe(comparison_report.metrics_table(report), hide_index=True)
    components.altair(comparison_report.metrics_chart, report, memo=memo)
    st.markdown("**Calibration** — observed fraud rate against the mean score, per score bin of "
                "width 10%; on the dashed diagonal a score is the probability of fraud.")
    components.altair(comparison_report.calibration_chart, report, memo=memo, width="stretch")


def _cost() -> None:
    """Cost at each model's best threshold, and what switching saves."""
    st.subheader("Cost at each model's best threshold")
    st.caption(f"Missed fraud costs its amount; each review costs ${settings.review_cost:,.2f}; at "
               f"most {settings.capacity} reviews a day, highest scores first. Each model's "
               f"threshold minimises its total cost over the {h.days}-day holdout (◆ on the "
               "chart).")
    st.dataframe(comparison_report.cost_table(report), hide_index=True)
    for pair in report.pairs:
        verb = "saves" if pair.savings_usd >= 0 else "costs"
        box = st.success if pair.savings_usd >= 0 else st.warning
        box(f"Switching from **{pair.reference}** to **{pair.challenger}** {verb} "
            f"**${abs(pair.savings_usd):,.0f}** on the holdout "
            f"(${abs(pair.savings_per_day_usd):,.0f} per day).")
    components.altair(comparison_report.cost_chart, report, memo=memo, width="stretch")


def _over_time() -> None:
    """Stability per week (or day) and the serving SLA."""
    st.subheader("Stability over time")
    st.caption("ROC AUC and PR AUC per " + ("week" if report.stability_freq == "W" else
               "day (the holdout spans fewer than three weeks)") + "; a falling line is drift.")
    components.altair(comparison_report.stability_chart, report, memo=memo)

    st.subheader("Serving SLA")
    if report.latency:
        first = report.latency[0]
        st.caption(f"Measured on this machine ({first.machine}): {first.single_row_calls} one-row "
                   "predictions with the input already built (p50/p99), plus building the input "
                   f"from a transaction row; batches of {first.batch_rows:,} rows end to end. "
                   "Timings are cached per model checksum.")
        st.dataframe(comparison_report.latency_table(report), hide_index=True)


def _explanations() -> None:
    """Feature importance of the reference and the challenger compared."""
    st.subheader("Explanations compared")
    for model_id, source in report.attribution_sources:
        st.caption(f"{model_id}: mean |SHAP| from the {source}")
    imp = pair.importance
    st.metric("Spearman rank correlation of feature importance",
              "—" if imp.spearman != imp.spearman else f"{imp.spearman:.3f}",
              help="1: both models rank features the same; 0: unrelated orders")
    left, right = st.columns([1, 1])
    with left:
        st.markdown("**Mean |SHAP| over the holdout**, the 15 features either model leans on most")
        components.altair(comparison_report.importance_pair_chart, imp,
                          memo=(*memo, pair.reference, pair.challenger), width="stretch")
    with right:
        if pair.segments:
            st.markdown(f"**Per {pair.segments[0].segment}**: how alike the two importance orders "
                        f"are within each segment; ranks are {pair.reference} vs "
                        f"{pair.challenger}")
            st.dataframe(comparison_report.segment_table(pair), hide_index=True)
    st.markdown("**Features that differ most** — a flipped direction first, then the largest rank "
                "shift. Direction: the sign of the correlation between a feature's value and its "
                "SHAP value.")
    st.dataframe(comparison_report.most_different_table(imp), hide_index=True)


def _disagreements() -> None:
    """Transactions flagged by exactly one model, with both waterfalls."""
    st.subheader("Where the models disagree")
    st.caption(f"{pair.disagreement_total:,} transactions after the training window are flagged by "
               f"exactly one of {pair.reference} and {pair.challenger} at the thresholds above; "
               "largest amounts first. Select a row to see both explanations.")
    view = comparison_report.disagreement_view(pair)
    score_cols = [c for c in view.columns if c.startswith("score ")]
    event = st.dataframe(view, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key=f"cmp_disagree_{pair.challenger}", column_config={
                             "time (UTC)": st.column_config.DatetimeColumn(
                                 format="YYYY-MM-DD HH:mm"),
                             "amount (USD)": st.column_config.NumberColumn(format="dollar"),
                             **{c: st.column_config.NumberColumn(format="percent")
                                for c in score_cols}})
    rows = list(event.selection.rows) if event is not None else []
    if len(view):
        picked = view.iloc[rows[0] if rows else 0]
        txn = str(picked["transaction"])
        label = {"fraud": 1.0, "legit": 0.0}.get(picked["label"], float("nan"))
        case = _waterfalls(str(workspace().path), version, (pair.reference, pair.challenger),
                           tuple(workspace().registry.resolve(m).sha256
                                 for m in (pair.reference, pair.challenger)), txn, label)
        st.markdown(f"**{txn}** · ${case.amount_usd:,.2f} · label: {picked['label']}")
        for col, (model_id, steps) in zip(st.columns(2), case.steps, strict=True):
            with col:
                st.markdown(f"**{model_id}** (SHAP, log-odds; "
                            f"{dict(case.sources)[model_id]})")
                components.altair(waterfall_chart, steps, width="stretch",
                                  memo=(version, txn, model_id, dict(case.sources)[model_id]))


def _thresholds() -> None:
    """Classifier statistics at a threshold."""
    classifier_panel.comparison_sections(report)


def _pruning() -> None:
    """The pruning frontier against the SLA."""
    st.subheader("Pruning for the SLA")
    classifier_panel.pruning_section(report.model_ids, report.settings.sla_p99_ms)


def _decide() -> None:
    """Exports, the HTML report command, and promotion."""
    st.subheader("Decide")
    details = {"models": list(report.model_ids), "reference": report.reference,
               "as_of": h.as_of.isoformat(), "holdout_rows": h.rows}
    d1, d2 = st.columns(2)
    with d1:
        components.audited_csv_download(
            "metrics CSV", comparison_report.numbers_table(report),
            target="model comparison metrics",
            file_name="comparison_metrics.csv", key="cmp_metrics_csv", details=details)
    with d2:
        components.audited_csv_download(
            "attributions CSV", comparison_report.attributions_table(report),
            target="model comparison attributions", file_name="comparison_attributions.csv",
            key="cmp_attr_csv", details=details)
    st.caption("The same comparison as a self-contained HTML report (charts included, no internet "
               "needed):")
    st.code(f"fraudlens compare {' '.join(report.model_ids)} --out comparison.html",
            language="bash")

    done = st.session_state.pop("cmp_promoted", None)
    if done:
        st.success(done)
    if can(principal, "promote"):
        with st.form("cmp_promote", border=True):
            st.markdown("**Promote a candidate to champion** (a registry stage change, recorded in "
                        "the audit trail; the previous champion of that name is archived)")
            target = st.selectbox("Model", list(report.model_ids), key="cmp_promote_model",
                                  index=None, placeholder="Choose the model to promote",
                                  format_func=lambda m: labels.get(m, m))
            reason = st.text_input("Reason (required)", key="cmp_promote_reason",
                                   placeholder="e.g. higher recall at 1% FPR, lower cost")
            if st.form_submit_button("Promote to champion", type="primary"):
                try:
                    st.session_state["cmp_promote_pending"] = promotion.checked_request(
                        target, reason)
                except FraudLensError as exc:
                    st.error(f"Not promoted: {exc}")
        pending = st.session_state.get("cmp_promote_pending")
        if pending is not None:
            st.warning(f"Promote {pending.model_id} to champion? The current champion of its "
                       f"name is archived. Reason: {pending.reason}", icon=":material/warning:")
            yes, no = st.columns(2)
            if no.button("Cancel", key="cmp_promote_cancel"):
                del st.session_state["cmp_promote_pending"]
                st.rerun()
            if yes.button(f"Confirm: promote {pending.model_id}", type="primary",
                          key="cmp_promote_confirm"):
                del st.session_state["cmp_promote_pending"]
                try:
                    result = promotion.promote(workspace().registry, pending.model_id, audit_event,
                                               pending.reason)
                except (AuditError, FraudLensError) as exc:
                    st.error(f"Not promoted: {exc}")
                else:
                    archived = ", ".join(result.archived) or "none"
                    st.session_state["cmp_promoted"] = (
                        f"{result.model_id} is now champion (was {result.previous_stage}); "
                        f"archived: {archived}. The warehouse's model list catches up on the next "
                        "`fraudlens` command.")
                    resources._manifests_at.clear()  # the registry changed: list it anew
                    st.rerun()
    else:
        st.caption("Promoting a model needs the ML engineer role.")


# One section at a time: only the open tab runs and is sent to the browser (the whole report
# was 83 elements), and the open tab is in the URL (`compare?section=Disagreements`).
SECTIONS = {"Metrics": _metrics, "Cost": _cost, "Over time and SLA": _over_time,
            "Explanations": _explanations, "Disagreements": _disagreements,
            "Thresholds": _thresholds, "Pruning": _pruning, "Decide": _decide}
for tab, draw in zip(st.tabs(list(SECTIONS), key="section", bind="query-params"),
                     SECTIONS.values(), strict=True):
    if tab.open:
        with tab:
            draw()
