"""Experiments: treatment against control on matured labels, in model metrics and in money,
with the sample-ratio check and how model and business metrics move together week by week.
The numbers are `fraudlens experiment`'s (one stored report per experiment and data version)."""

import time
from datetime import UTC, datetime

import streamlit as st

from app.services.experiments import ExperimentReport, ExperimentSettings
from app.shell import caches, components, resources
from app.shell.auth import require
from app.shell.classifier_panel import classifier_panel
from app.views import experiment_report as view
from data_access.report_cache import Kept
from explainers.errors import FraudLensError

require("compare", "Experiments")
st.title("Experiments")
st.text("Treatment against control on matured labels only. Intervals are 95% bootstrap "
        "percentiles over resampled accounts; differences are paired.")

names = caches.experiment_names()
if not names:
    components.missing("No experiment has been imported.",
                       "fraudlens import assignments FILE")
    st.stop()
name = st.selectbox("Experiment", names, key="exp_name")


@st.cache_data(ttl=600, max_entries=8, show_spinner=False)
def _computed(path: str, name: str, settings: ExperimentSettings, version: str,
              asked: float) -> ExperimentReport:
    """Computed on the lake now and kept for `version`; the stage lines replay in a collapsed
    box from the cache; `asked` (when a recompute was asked for) makes a recompute run anew."""
    with st.status("Measuring the experiment on matured labels…", expanded=True) as status:
        report = caches.experiment_compute(name, settings, version, progress=status.write)
        status.update(label="Measured the experiment on matured labels", state="complete",
                      expanded=False)
    return report


def _ask_recompute(key: tuple) -> None:
    st.session_state["exp_recompute"] = (key, time.time())


settings = ExperimentSettings(seed=caches.sample_seed())  # what `fraudlens precompute` keeps
try:
    version = resources.data_version()
    kept = caches.experiment_kept(name, settings, version)
    key = (name, settings, version)
    asked = st.session_state.pop("exp_recompute", None)
    asked_at = asked[1] if asked and asked[0] == key else None
    if kept is None or asked_at is not None:  # nothing kept for this experiment, or asked
        report = _computed(str(resources.workspace().path), name, settings, version,
                           asked_at or 0.0)
        kept = Kept(report, version, datetime.now(UTC), True)
    else:
        report = kept.result
except FraudLensError as exc:
    st.error("This experiment cannot be measured:")
    st.code(str(exc), language=None)
    st.stop()
memo = ("experiment", name, kept.data_version, str(kept.written_at), repr(settings))
components.kept_notice(kept, until="the data or the experiment changes", key="exp_refresh",
                       on_click=_ask_recompute, args=(key,))
st.text(f"{report.start:%Y-%m-%d} to {report.end:%Y-%m-%d} (UTC) · labels as of "
        f"{report.as_of:%Y-%m-%d %H:%M} UTC · transactions up to {report.mature_until:%Y-%m-%d} "
        f"(matured, {report.settings.maturity_days} days) · control: {report.control}")
for warning in report.warnings:  # they name arms from the imported file: plain text only
    st.text(f"⚠ {warning}")

st.header("Arms")
st.dataframe(view.arms_overview(report), hide_index=True)
if report.srm is not None:
    st.text(f"Sample ratio: chi-square {report.srm.chi2:.3f}, p = {report.srm.p_value:.3g} — "
            + ("MISMATCH" if report.srm.mismatch else "no mismatch")
            + f" (alpha {report.srm.alpha})")
    st.dataframe(view.srm_table(report), hide_index=True)

st.header("Model and business metrics")
if report.stats.empty:
    st.info("Not yet measurable: no arm has matured labels.")
else:
    st.dataframe(view.per_arm_table(report), hide_index=True)
    st.subheader("Differences to control")
    st.caption("An asterisk (*) after an interval: it excludes zero.")
    st.dataframe(view.differences_table(report), hide_index=True)
    components.altair(view.differences_chart, report, memo=memo)

st.header("Classifier statistics at each arm's threshold")
classifier_panel(report.classifier, {a.arm: a.threshold for a in report.arms}, key="exp_cls")

st.header("Model metrics and business metrics, week by week")
st.caption("Every experiment, arm and week with matured labels.")
st.dataframe(view.correlation_table(report), hide_index=True)
components.altair(view.weekly_chart, report, memo=memo, width="stretch")

st.header("Take it elsewhere")
details = {"experiment": report.name, "data_version": report.data_version}
d1, d2 = st.columns(2)
with d1:
    components.audited_csv_download("arms CSV", view.arms_table(report),
                                    target="experiment arms", file_name="experiment_arms.csv",
                                    key="exp_arms_csv", details=details)
with d2:
    components.audited_csv_download("weekly CSV", view.weekly_table(report),
                                    target="experiment weekly",
                                    file_name="experiment_weekly.csv", key="exp_weekly_csv",
                                    details=details)
st.code(f"fraudlens experiment --name {report.name} --out experiment.html", language="bash")
