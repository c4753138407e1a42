"""Monitoring: is the model still working while fraud evolves? Weekly performance with late
labels, drift and data quality by feature source, attribution drift, alerts and their
acknowledgement (audited). The numbers are `fraudlens monitor`'s."""

import time
from datetime import UTC, datetime

import streamlit as st

from app.services import monitoring
from app.services.monitoring_rules import MonitoringRules, load_rules
from app.shell import caches, components, resources
from app.shell.auth import audit_event, can, require
from app.shell.resources import audit, workspace
from app.views import monitoring_report as view
from data_access.report_cache import Kept
from explainers.errors import AuditError, FraudLensError

principal = require("patterns", "Monitoring")
st.title("Monitoring")
st.text("Weekly performance as labels arrive, drift and data quality by feature source, "
        "attribution drift, and the alerts they raise.")

summary = components.warehouse_or_stop()
infos = components.models_or_stop()
c1, c2 = st.columns([2, 2], vertical_alignment="bottom")
with c1:
    model_id = components.model_picker(infos, key="monitor_model")
first, last = monitoring.page_window(summary)
dates = c2.date_input("Event dates (UTC)", (first, last), min_value=first, max_value=last,
                      key="monitor_dates")
if len(dates) != 2:
    st.stop()
since, until = dates
window = monitoring.kept_window(since, until, summary)  # the whole lake: precomputed


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _computed(path: str, model_id: str, since, until, rules: MonitoringRules, version: str,
              asked: float) -> monitoring.MonitoringReport:
    """Computed on the lake now and kept for `version`; the stage lines replay in a collapsed
    box from the cache; `asked` (when a recompute was asked for) makes a recompute run anew."""
    with st.status("Computing weekly performance, drift and alerts…", expanded=True) as status:
        report = caches.monitoring_compute(model_id, since, until, rules, version,
                                           progress=status.write)
        status.update(label="Computed weekly performance, drift and alerts",
                      state="complete", expanded=False)
    return report


def _ask_recompute(key: tuple) -> None:
    st.session_state["monitor_recompute"] = (key, time.time())


try:
    rules = load_rules(workspace().path)
    version = resources.data_version()
    kept = caches.monitoring_kept(model_id, *window, rules, version)
    key = (model_id, window, repr(rules), version)
    asked = st.session_state.pop("monitor_recompute", None)
    asked_at = asked[1] if asked and asked[0] == key else None
    if kept is None or asked_at is not None:  # nothing kept for this model and window, or asked
        report = _computed(str(workspace().path), model_id, *window, rules, version,
                           asked_at or 0.0)
        kept = Kept(report, version, datetime.now(UTC), True)
    else:
        report = kept.result
except FraudLensError as exc:
    st.error("Monitoring cannot run:")
    st.code(str(exc), language=None)
    st.stop()
memo = ("monitoring", model_id, kept.data_version, str(kept.written_at), str(window),
        repr(rules))
st.text(f"{report.model_id} · labels as of {report.as_of:%Y-%m-%d %H:%M} UTC · reference: "
        f"{report.reference.basis}")
components.kept_notice(kept, until="the data, the model, the dates or the rules change",
                       key="monitor_refresh", on_click=_ask_recompute, args=(key,))
for warning in report.warnings:
    st.text(f"Note: {warning}")

st.header("Active alerts")
acks = monitoring.acknowledgements(audit().records(action=monitoring.ACK_ACTION,
                                                   limit=10_000))
if not report.alerts:
    st.success("No alert fires under these rules.")
else:
    st.dataframe(view.alerts_table(report, acks), hide_index=True, key="monitor_alerts",
                 column_config={"What": st.column_config.TextColumn(width="large")})
    labels = {a.alert_id: f"{a.alert_id} · {a.week} · {a.kind}" for a in report.alerts}
    chosen = st.selectbox("Explain an alert", list(labels), format_func=labels.get,
                          key="monitor_alert")
    alert = report.alert(chosen)
    st.text(alert.message)
    components.altair(view.chart_for, report, alert, memo=(*memo, alert.alert_id), height=420,
                      key="monitor_alert_chart")
    if chosen in acks:
        st.text(f"Acknowledged by {acks[chosen]['by']} at {acks[chosen]['at']}: "
                f"{acks[chosen]['note']}")
    else:
        with st.form("monitor_ack"):
            note = st.text_input("Note", key="monitor_ack_note",
                                 placeholder="What was done about it")
            if st.form_submit_button("Acknowledge alert"):
                try:
                    audit_event(monitoring.ACK_ACTION, chosen, "ok",
                                {"note": note, "model": model_id, "week": str(alert.week),
                                 "alert": alert.message})
                    st.rerun()
                except AuditError as exc:
                    st.error(f"Not acknowledged: the audit record could not be written ({exc}).")

st.header("Performance by week")
st.dataframe(view.weekly_table(report), hide_index=True, key="monitor_weekly")
st.text(f"Capacity: the top {rules.k_per_week} transactions of a week by score "
        f"({rules.capacity_per_day} reviews a day). 95% Poisson-bootstrap intervals, "
        f"{rules.n_resamples} resamples, seed {rules.seed}. '≈' values are estimates from how "
        "fraud labels of mature weeks arrived.")
left, right = st.columns(2)
with left:  # charts built once per kept report (memo), not on every run
    components.altair(view.label_chart, report, memo=memo, height=360, key="monitor_labels")
metric = right.selectbox("Metric", list(view.METRICS), format_func=view.METRICS.get,
                         key="monitor_metric")
with right:
    components.altair(view.performance_chart, report, metric, memo=(*memo, metric), height=360,
                      key="monitor_metric_chart")

st.header("Data quality by feature source")
st.dataframe(view.source_table(report), hide_index=True, key="monitor_sources")
weeks = [str(w) for w in report.weekly["week"]]
week = st.selectbox("Features in week", weeks, index=len(weeks) - 1, key="monitor_week")
st.dataframe(view.feature_table(report, week), hide_index=True, key="monitor_features")

st.header("Attribution drift")
if report.attribution is None:
    st.text("No SHAP values are stored for this model.")
else:
    st.dataframe(view.attribution_table(report, week), hide_index=True, key="monitor_attr")

st.header("Segments")
columns = caches.segment_columns()
segment = st.selectbox("Split weekly performance by", columns,
                       index=columns.index("country") if "country" in columns else 0,
                       key="monitor_segment")
if segment:
    st.dataframe(view.segment_table(caches.monitoring_segments(model_id, segment, report.span,
                                                               report.as_of, rules)),
                 hide_index=True, key="monitor_segment_table")

if can(principal, "export"):
    st.header("Export")
    details = {"model": model_id, "since": str(since), "until": str(until)}
    components.audited_csv_download("weekly CSV", view.weekly_csv(report),
                                    target=f"monitoring:{model_id}",
                                    file_name="monitor_weekly.csv", key="monitor_weekly_csv",
                                    details=details)
    components.audited_csv_download("alerts CSV", view.alerts_csv(report),
                                    target=f"monitoring-alerts:{model_id}",
                                    file_name="monitor_alerts.csv", key="monitor_alerts_csv",
                                    details=details)
