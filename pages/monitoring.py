"""Monitoring: is the model still working while fraud evolves? Weekly performance with late
labels, drift and data quality by feature source, attribution drift, alerts and their
acknowledgement (audited). The numbers are `fraudlens monitor`'s."""

import streamlit as st

from app.services import monitoring
from app.services.monitoring_rules import load_rules
from app.shell import caches, components
from app.shell.auth import audit_event, can, require
from app.shell.resources import audit, workspace
from app.views import monitoring_report as view
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
first, last = summary.first_event.date(), summary.last_event.date()
dates = c2.date_input("Event dates (UTC)", (first, last), min_value=first, max_value=last,
                      key="monitor_dates")
if len(dates) != 2:
    st.stop()
since, until = dates
try:
    rules = load_rules(workspace().path)
    report = caches.monitoring_report(model_id, since, until, rules)
except FraudLensError as exc:
    st.error("Monitoring cannot run:")
    st.code(str(exc), language=None)
    st.stop()
st.text(f"{report.model_id} · labels as of {report.as_of:%Y-%m-%d %H:%M} UTC · reference: "
        f"{report.reference.basis}")
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
    st.altair_chart(view.chart_for(report, alert), height=420, key="monitor_alert_chart")
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
left.altair_chart(view.label_chart(report), height=360, key="monitor_labels")
metric = right.selectbox("Metric", list(view.METRICS), format_func=view.METRICS.get,
                         key="monitor_metric")
right.altair_chart(view.performance_chart(report, metric), height=360,
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
    st.dataframe(view.segment_table(caches.monitoring_segments(model_id, segment, since, until,
                                                               rules)),
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
