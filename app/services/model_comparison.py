"""Model comparison: assemble one matured holdout for two or more candidates from the warehouse
and registry, run `explainers.comparison_stats` / `explainers.latency` on it, and draw or write the
result (Altair charts, a self-contained HTML report, CSV tables). No Streamlit here: the page
and `fraudlens compare` both call `build_report`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import altair as alt
import duckdb
import numpy as np
import pandas as pd

from app.services.case import case_explanation, waterfall_steps
from app.views.charts import waterfall_chart
from app.views.html_report import Chart, Columns, Html, Note, Section, render_html
from data_access import shap_store
from data_access.case_queries import AMOUNT_COLUMN, transaction_row
from data_access.exports import BeforeCommit, ExportResult, atomic_write_bytes
from data_access.registry import Manifest, ModelRegistry
from data_access.shap_store import Cohort
from data_access.warehouse import fetch_df, quote_ident, table_columns
from explainers import comparison_stats as cmp
from explainers.errors import FraudLensError, ValidationError
from explainers.latency import LatencyMeasurement, Sla, measure_latency
from explainers.model import LoadedModel

__all__ = [
    "CaseWaterfalls",
    "ComparisonReport",
    "ComparisonSettings",
    "HoldoutSummary",
    "PairComparison",
    "Promotion",
    "attributions_table",
    "build_report",
    "calibration_chart",
    "case_waterfalls",
    "cost_chart",
    "cost_table",
    "disagreement_view",
    "importance_pair_chart",
    "latency_table",
    "metrics_chart",
    "metrics_table",
    "most_different_table",
    "newest_label_time",
    "numbers_table",
    "promote",
    "report_html",
    "segment_table",
    "stability_chart",
    "timed_with",
    "write_html_report",
]

LatencyFn = Callable[[LoadedModel, Manifest, pd.DataFrame], LatencyMeasurement]
AuditFn = Callable[[str, str, str, Mapping[str, Any]], None]
FEATURE_SAMPLE = 20_000  # holdout rows whose features are read (attributions, timing)
TIMING_ROWS = 1_000


@dataclass(frozen=True)
class ComparisonSettings:
    """Everything a comparison depends on besides the models and the warehouse."""

    as_of: date | None = None  # labels known by the end of this day (UTC); None: newest label
    maturity_days: int = 30
    min_week_coverage: float = 0.95
    capacity: int = 20  # reviews a day
    review_cost: float = 5.0  # USD per review
    n_resamples: int = 200
    seed: int = 7
    sla_p99_ms: float = 10.0
    segment: str | None = "txn_type"
    disagreement_limit: int = 200
    shap_sample: int = 2_000  # rows explained now for a model with nothing stored
    waterfall_cases: int = 3  # top disagreements drawn as paired waterfalls in the report


@dataclass(frozen=True)
class Candidate:
    model_id: str
    framework: str
    stage: str
    sha256: str
    training_end: str


@dataclass(frozen=True)
class HoldoutSummary:
    """The holdout every candidate is judged on, and what was left out."""

    as_of: pd.Timestamp
    mature_until: pd.Timestamp
    train_end: pd.Timestamp | None
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    fraud: int
    fraud_usd: float
    days: int
    exclusions: tuple[cmp.Exclusion, ...]

    def exclusion_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"reason": [e.reason for e in self.exclusions],
                             "rows": [e.rows for e in self.exclusions]})


@dataclass(frozen=True)
class PairComparison:
    """A challenger against the reference: attributions, disagreements, money."""

    reference: str
    challenger: str
    importance: cmp.ImportanceComparison
    segments: tuple[cmp.ImportanceComparison, ...]
    disagreements: pd.DataFrame = field(repr=False, compare=False)
    disagreement_total: int = 0
    savings_usd: float = 0.0  # reference cost − challenger cost on the holdout
    savings_per_day_usd: float = 0.0


@dataclass(frozen=True)
class CaseWaterfalls:
    """One case explained by each model (waterfall steps in log-odds)."""

    transaction_id: str
    amount_usd: float
    is_fraud: float  # NaN: not known yet
    steps: tuple[tuple[str, pd.DataFrame], ...]
    sources: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ComparisonReport:
    settings: ComparisonSettings
    candidates: tuple[Candidate, ...]
    reference: str
    holdout: HoldoutSummary
    metrics: cmp.MetricsResult
    calibration: pd.DataFrame
    thresholds: tuple[cmp.ThresholdChoice, ...]
    stability: pd.DataFrame
    stability_freq: str  # "W" or "D"
    latency: tuple[LatencyMeasurement, ...]
    sla: Sla
    attributions: pd.DataFrame
    attribution_sources: tuple[tuple[str, str], ...]
    pairs: tuple[PairComparison, ...]
    cases: tuple[CaseWaterfalls, ...]
    warnings: tuple[str, ...]
    created_at: str

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(c.model_id for c in self.candidates)

    def threshold(self, model_id: str) -> cmp.ThresholdChoice:
        return next(t for t in self.thresholds if t.model == model_id)

    def pair(self, challenger: str) -> PairComparison:
        return next(p for p in self.pairs if p.challenger == challenger)


# --------------------------------------------------------------------------- assembling


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _training_end(manifests: Sequence[Manifest]) -> tuple[pd.Timestamp | None, list[str]]:
    ends, unknown = [], []
    for m in manifests:
        try:
            ends.append(_utc(str(m.training_window.get("end") or "")))
        except ValueError:
            unknown.append(m.key)
    warnings = []
    if unknown:
        warnings.append(f"No training window end is recorded for {', '.join(unknown)}: the "
                        "holdout may contain rows it was trained on.")
    return (max(ends) if ends else None), warnings


def _as_of(con: duckdb.DuckDBPyConnection, chosen: date | None) -> pd.Timestamp:
    if chosen is not None:
        return _utc(chosen) + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    newest = newest_label_time(con)
    if newest is None:
        raise ValidationError("No labels in the warehouse, so there is nothing to judge models "
                              "on. Import labels with `fraudlens import transactions FILE "
                              "--labels FILE`.")
    return newest


def newest_label_time(con: duckdb.DuckDBPyConnection) -> pd.Timestamp | None:
    """When the newest label arrived (the default as-of time), or None without labels."""
    newest = fetch_df(con, "SELECT max(label_time) AS t FROM labels")["t"].iloc[0]
    return None if pd.isna(newest) else _utc(newest)


def _candidate_rows(con: duckdb.DuckDBPyConnection, model_ids: Sequence[str],
                    after: pd.Timestamp | None, as_of: pd.Timestamp,
                    segment: str | None) -> pd.DataFrame:
    """Transactions after the training windows: amount, segment, the label known as of
    `as_of`, and each model's stored score (score_<model>)."""
    seg = f", CAST(t.{quote_ident(segment)} AS VARCHAR) AS segment" if segment else ""
    joins, cols, params = [], [], [as_of]
    for i, model_id in enumerate(model_ids):
        joins.append(f"LEFT JOIN scores s{i} ON s{i}.transaction_id = t.transaction_id "
                     f"AND s{i}.model_id = ?")
        cols.append(f"s{i}.score AS s{i}")
        params.append(model_id)
    where = "TRUE"
    if after is not None:
        where = "t.event_time > ?"
        params.append(after)
    sql = (f"SELECT t.transaction_id, t.event_time, t.{quote_ident(AMOUNT_COLUMN)} AS amount_usd"
           f"{seg}, l.is_fraud, l.label_time, {', '.join(cols)} FROM transactions t "
           "LEFT JOIN labels l ON l.transaction_id = t.transaction_id AND l.label_time <= ? "
           f"{' '.join(joins)} WHERE {where} ORDER BY t.event_time, t.transaction_id")
    frame = fetch_df(con, sql, params)
    frame = frame.rename(columns={f"s{i}": f"score_{m}" for i, m in enumerate(model_ids)})
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["label_time"] = pd.to_datetime(frame["label_time"], utc=True)
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    return frame


def _feature_rows(con: duckdb.DuckDBPyConnection, ids: Sequence[str],
                  features: Sequence[str]) -> pd.DataFrame:
    cols = ", ".join(f"t.{quote_ident(f)}" for f in features)
    frame = fetch_df(con, f"SELECT t.transaction_id, {cols} FROM transactions t WHERE "
                     "t.transaction_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY "
                     "t.transaction_id", [list(ids)])
    frame["transaction_id"] = frame["transaction_id"].astype(str)
    return frame


def _attributions(con: duckdb.DuckDBPyConnection, model: LoadedModel, holdout: pd.DataFrame,
                  features: pd.DataFrame, settings: ComparisonSettings
                  ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """SHAP values for holdout rows (transaction_id + features) from the store, or computed
    now on a seeded sample; with the matching feature rows and where they came from."""
    names = model.schema.names
    if shap_store.stored_table(con, model.key) is not None:
        cohort = Cohort(since=holdout["event_time"].min(),
                        until=holdout["event_time"].max() + pd.Timedelta(microseconds=1))
        stored = shap_store.values(con, model.key, cohort, limit=4 * FEATURE_SAMPLE,
                                   sample_seed=settings.seed)
        if not stored.empty:
            stored["transaction_id"] = stored["transaction_id"].astype(str)
            stored = stored.merge(features[["transaction_id"]], on="transaction_id")
        if len(stored):
            rows = features.merge(stored[["transaction_id"]], on="transaction_id")
            return (stored[["transaction_id", *names]], rows,
                    f"SHAP store, {len(stored):,} holdout rows")
    from explainers.frames import explain_frame

    sample = features.sample(n=min(settings.shap_sample, len(features)),
                             random_state=settings.seed).sort_values("transaction_id")
    expl = explain_frame(model, sample)
    values = pd.DataFrame(np.asarray(expl.values), columns=list(expl.feature_names))
    values.insert(0, "transaction_id", sample["transaction_id"].to_numpy())
    return values, sample, (f"computed now on a seeded sample of {len(sample):,} holdout rows "
                            "(nothing stored for this model)")


def _numeric(model: LoadedModel) -> list[str]:
    return [f.name for f in model.schema.features if not f.is_categorical]


def _summaries(shap: pd.DataFrame, rows: pd.DataFrame, model: LoadedModel,
               segment: str | None, seg_of: pd.Series | None) -> dict[str | None, pd.DataFrame]:
    """Attribution summaries overall (key None) and per segment value."""
    names = model.schema.names
    merged = shap.merge(rows, on="transaction_id", suffixes=("", "__value"))
    values = merged[[f"{n}__value" for n in names]].set_axis(names, axis=1)
    out = {None: cmp.attribution_summary(merged[names].to_numpy(), values, names,
                                         _numeric(model))}
    if segment and seg_of is not None:
        seg = merged["transaction_id"].map(seg_of)
        for level in sorted(seg.dropna().unique()):
            on = (seg == level).to_numpy()
            out[str(level)] = cmp.attribution_summary(merged.loc[on, names].to_numpy(),
                                                      values.loc[on], names, _numeric(model))
            out[str(level)]["rows"] = int(on.sum())
    out[None]["rows"] = len(merged)
    return out


def case_waterfalls(con: duckdb.DuckDBPyConnection, models: Sequence[LoadedModel],
                    transaction_id: str, is_fraud: float = np.nan,
                    top_n: int = 8) -> CaseWaterfalls:
    """Each model's waterfall for one case: stored SHAP values when present, else computed."""
    row = transaction_row(con, transaction_id)
    if row.empty:
        raise ValidationError(f"There is no transaction {transaction_id} in this workspace")
    steps, sources = [], []
    for model in models:
        case = case_explanation(con, model, row)
        steps.append((model.key, waterfall_steps(case, model.schema, top_n=top_n)))
        sources.append((model.key, case.source))
    amount = float(row[AMOUNT_COLUMN].iloc[0]) if AMOUNT_COLUMN in row.columns else np.nan
    return CaseWaterfalls(transaction_id, amount, is_fraud, tuple(steps), tuple(sources))


def timed_with(registry: ModelRegistry) -> LatencyFn:
    """A latency function that takes a model's size from its registered artifact."""

    def timed(model: LoadedModel, manifest: Manifest, frame: pd.DataFrame) -> LatencyMeasurement:
        size = len(registry.root.read_artifact(manifest))
        return measure_latency(model, frame, size_bytes=size)

    return timed


def build_report(con: duckdb.DuckDBPyConnection, manifests: Sequence[Manifest],
                 models: Sequence[LoadedModel], settings: ComparisonSettings, *,
                 reference: str | None = None, latency: LatencyFn | None = None,
                 progress: Callable[[str], None] | None = None) -> ComparisonReport:
    """Compare `models` (two or more, with their manifests in the same order) on one matured
    holdout. `latency` times a model (None skips SLA fit); `progress` hears each step."""
    say = progress or (lambda _msg: None)
    ids = [m.key for m in models]
    if len(ids) < 2 or len(set(ids)) != len(ids):
        raise ValidationError("Pick two or more different models to compare")
    if [m.key for m in manifests] != ids:
        raise ValidationError("Manifests and models must name the same models in one order")
    reference = reference or ids[0]
    if reference not in ids:
        raise ValidationError(f"The reference model {reference} is not among {', '.join(ids)}")
    columns = table_columns(con, "transactions")
    if AMOUNT_COLUMN not in columns:
        raise ValidationError(f"The cost model needs an `{AMOUNT_COLUMN}` column in "
                              "transactions; import it with the transactions")
    segment = settings.segment if settings.segment in columns else None
    train_end, warnings = _training_end(manifests)
    as_of = _as_of(con, settings.as_of)

    say("selecting the matured holdout")
    pool = _candidate_rows(con, ids, train_end, as_of, segment)
    before = 0
    if train_end is not None:
        before = int(fetch_df(con, "SELECT count(*) AS n FROM transactions WHERE event_time <= ?",
                              [train_end])["n"].iloc[0])
    score_cols = [f"score_{m}" for m in ids]
    rules = cmp.HoldoutRules(as_of=as_of, train_end=train_end,
                             maturity_days=settings.maturity_days,
                             min_week_coverage=settings.min_week_coverage)
    pool["scored"] = pool[score_cols].notna().all(axis=1)
    selection = cmp.select_holdout(pool, rules)
    exclusions = list(selection.exclusions)
    if train_end is not None:
        exclusions[0] = cmp.Exclusion(exclusions[0].reason, exclusions[0].rows + before)
    holdout = pool[selection.mask].reset_index(drop=True)
    y = holdout["is_fraud"].to_numpy(dtype=int) if len(holdout) else np.array([], int)
    if len(holdout) == 0 or y.sum() == 0 or y.sum() == len(y):
        left_out = "; ".join(f"{e.rows:,} {e.reason}" for e in exclusions if e.rows)
        raise ValidationError(
            f"The matured holdout has {len(holdout):,} rows and {int(y.sum())} fraud cases, too "
            f"few to compare models (left out: {left_out}). Choose a later as-of date, a "
            "shorter maturity or a lower coverage threshold.")
    day = holdout["event_time"].dt.floor("D").to_numpy()
    scores = {m: holdout[f"score_{m}"].to_numpy(dtype=float) for m in ids}
    amount = holdout["amount_usd"].to_numpy(dtype=float)
    summary = HoldoutSummary(
        as_of=as_of, mature_until=rules.mature_until, train_end=train_end,
        start=holdout["event_time"].min(), end=holdout["event_time"].max(),
        rows=len(holdout), fraud=int(y.sum()), fraud_usd=float((amount * y).sum()),
        days=len(np.unique(day)), exclusions=tuple(exclusions))
    if summary.fraud < 30:
        warnings.append(f"The holdout has only {summary.fraud} fraud cases: intervals are wide.")

    say(f"bootstrap: {settings.n_resamples} resamples of {len(holdout):,} rows")
    metrics = cmp.bootstrap_metrics(y, scores, day, capacity=settings.capacity,
                                    n_resamples=settings.n_resamples, seed=settings.seed,
                                    reference=reference)
    calibration = pd.concat([cmp.calibration_table(y, scores[m], m) for m in ids],
                            ignore_index=True)
    cost = cmp.CostModel(review_cost=settings.review_cost, capacity=settings.capacity)
    thresholds = tuple(cmp.choose_threshold(m, scores[m], y, amount, day, cost) for m in ids)
    weeks = cmp.week_start(holdout["event_time"]).nunique()
    freq = "W" if weeks >= 3 else "D"
    stability = cmp.period_metrics(y, scores, holdout["event_time"], freq)

    say("reading features of the holdout")
    all_features = list(dict.fromkeys(n for m in models for n in m.schema.names))
    sample_ids = holdout["transaction_id"].sample(
        n=min(FEATURE_SAMPLE, len(holdout)), random_state=settings.seed)
    features = _feature_rows(con, sample_ids.tolist(), all_features)

    timings: list[LatencyMeasurement] = []
    if latency is not None:
        timing_rows = features.sample(n=min(TIMING_ROWS, len(features)),
                                      random_state=settings.seed)
        for model, manifest in zip(models, manifests, strict=True):
            say(f"timing {model.key}")
            timings.append(latency(model, manifest, timing_rows))

    say("comparing attributions")
    seg_of = holdout.set_index("transaction_id")["segment"] if segment else None
    summaries, sources, attribution_rows = {}, [], []
    for model in models:
        shap, rows, source = _attributions(con, model, holdout, features, settings)
        summaries[model.key] = _summaries(shap, rows, model, segment, seg_of)
        sources.append((model.key, source))
        for level, frame in summaries[model.key].items():
            attribution_rows.append(frame.assign(model=model.key, segment=segment or "",
                                                 segment_value=level or "(all)"))
        if source.startswith("computed"):
            warnings.append(f"{model.key}: attributions {source}.")
    attributions = pd.concat(attribution_rows, ignore_index=True)[
        ["model", "segment", "segment_value", "feature", "mean_abs_shap", "mean_shap",
         "direction", "rank", "rows"]]

    cases = pool.loc[pool["scored"], ["transaction_id", "event_time", "amount_usd", "is_fraud",
                                      *score_cols]].copy()
    cases["is_fraud"] = cases["is_fraud"].astype(float)
    chosen = {t.model: t.threshold for t in thresholds}
    pairs = []
    for challenger in ids:
        if challenger == reference:
            continue
        ref_s, ch_s = summaries[reference], summaries[challenger]
        overall = cmp.compare_importance(ref_s[None], ch_s[None], reference_id=reference,
                                         challenger_id=challenger,
                                         rows=int(min(ref_s[None]["rows"].iloc[0],
                                                      ch_s[None]["rows"].iloc[0])))
        per_segment = tuple(
            cmp.compare_importance(ref_s[k], ch_s[k], reference_id=reference,
                                   challenger_id=challenger, segment=segment, segment_value=k,
                                   rows=int(min(ref_s[k]["rows"].iloc[0],
                                                ch_s[k]["rows"].iloc[0])))
            for k in ref_s if k is not None and k in ch_s)
        every = cmp.disagreements(cases, reference, challenger, chosen, limit=len(cases))
        ref_cost, ch_cost = (next(t for t in thresholds if t.model == m)
                             for m in (reference, challenger))
        saved = ref_cost.total_cost_usd - ch_cost.total_cost_usd
        pairs.append(PairComparison(
            reference, challenger, overall, per_segment,
            every.head(settings.disagreement_limit), len(every), saved,
            saved / summary.days if summary.days else np.nan))

    case_list = []
    if pairs and settings.waterfall_cases > 0:
        say("explaining the largest disagreements")
        first = pairs[0]
        pair_models = [m for m in models if m.key in (first.reference, first.challenger)]
        for _, row in first.disagreements.head(settings.waterfall_cases).iterrows():
            case_list.append(case_waterfalls(con, pair_models, str(row["transaction_id"]),
                                             float(row["is_fraud"])))

    return ComparisonReport(
        settings=settings,
        candidates=tuple(Candidate(m.key, m.framework, m.stage, m.sha256,
                                   str(m.training_window.get("end") or "unknown"))
                         for m in manifests),
        reference=reference, holdout=summary, metrics=metrics, calibration=calibration,
        thresholds=thresholds, stability=stability, stability_freq=freq,
        latency=tuple(timings), sla=Sla(p99_ms=settings.sla_p99_ms),
        attributions=attributions, attribution_sources=tuple(sources), pairs=tuple(pairs),
        cases=tuple(case_list), warnings=tuple(warnings),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Promotion:
    model_id: str
    previous_stage: str
    archived: tuple[str, ...]


def promote(registry: ModelRegistry, ref: str, record: AuditFn, reason: str = "") -> Promotion:
    """Make `ref` its name's champion (the registry archives the previous one). The audit
    record is written first, so an unrecorded promotion cannot happen; a failed stage change
    is recorded as failed."""
    target = registry.resolve(ref)
    archives = [m.key for m in registry.list()
                if m.name == target.name and m.stage == "champion" and m.key != target.key]
    details = {"from": target.stage, "to": "champion", "archives": archives,
               "sha256": target.sha256, "reason": reason}
    record("stage_change", target.key, "ok", details)
    try:
        registry.set_stage(target.key, "champion")
    except FraudLensError as exc:
        record("stage_change", target.key, "failed", {**details, "error": str(exc)})
        raise
    return Promotion(target.key, target.stage, tuple(archives))


# --------------------------------------------------------------------------- tables


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or not np.isfinite(value) else format(value, fmt)


def _fmt_for(metric: str) -> str:
    return ".4f" if metric in ("roc_auc", "pr_auc", "brier") else ".1%"


def metrics_table(report: ComparisonReport) -> pd.DataFrame:
    """One row per metric: each model's estimate [95% CI], then each challenger − reference."""
    m = report.metrics
    rows = []
    for name in cmp.metric_names():
        fmt = _fmt_for(name)
        row = {"metric": cmp.metric_label(name, m.capacity)}
        for model in report.model_ids:
            e = m.get(model, name)
            row[model] = f"{_num(e.estimate, fmt)}  [{_num(e.low, fmt)} – {_num(e.high, fmt)}]"
        for pair in report.pairs:
            e = m.get(pair.challenger, name, versus=report.reference)
            dfmt = "+" + fmt
            excludes = np.isfinite(e.low) and (e.low > 0 or e.high < 0)
            row[f"{pair.challenger} − {report.reference}"] = (
                f"{_num(e.estimate, dfmt)}  [{_num(e.low, dfmt)} – {_num(e.high, dfmt)}]"
                + ("  *" if excludes else ""))
        rows.append(row)
    return pd.DataFrame(rows)


def cost_table(report: ComparisonReport) -> pd.DataFrame:
    days = report.holdout.days
    return pd.DataFrame([{
        "model": t.model,
        "flag when score ≥": "never" if not np.isfinite(t.threshold) else f"{t.threshold:.4f}",
        "reviews per day": round(t.reviewed / days, 1),
        "fraud caught": f"{t.fraud_caught} of {t.fraud_caught + t.fraud_missed}",
        "fraud missed (USD)": f"${t.missed_usd:,.0f}",
        "review cost (USD)": f"${t.review_usd:,.0f}",
        "total cost (USD)": f"${t.total_cost_usd:,.0f}",
        "cost per day (USD)": f"${t.cost_per_day_usd:,.0f}",
    } for t in report.thresholds])


def latency_table(report: ComparisonReport) -> pd.DataFrame:
    sla = report.sla
    return pd.DataFrame([{
        "model": t.model_id, "p50 one row (ms)": round(t.p50_ms, 2),
        "p99 one row (ms)": round(t.p99_ms, 2),
        "p50 incl. input prep (ms)": round(t.prep_p50_ms, 2),
        "batch (rows/s)": f"{t.rows_per_s:,.0f}",
        "size": _bytes(t.size_bytes), "trees": t.trees, "max depth": t.max_depth,
        f"meets p99 ≤ {sla.p99_ms:g} ms": "pass" if t.meets(sla) else "FAIL",
    } for t in report.latency])


def _bytes(n: int) -> str:
    if n < 0:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def numbers_table(report: ComparisonReport) -> pd.DataFrame:
    """Every number of the comparison as tidy rows for CSV: model, versus, metric, label,
    estimate, ci_low, ci_high (intervals only for bootstrapped metrics)."""
    rows = [report.metrics.frame()]
    extra = []
    for t in report.thresholds:
        for key, label, value in (
                ("threshold", "Cost-minimising threshold (flag when score >= it)", t.threshold),
                ("reviews", "Reviews on the holdout at that threshold", t.reviewed),
                ("fraud_caught", "Fraud cases caught", t.fraud_caught),
                ("missed_usd", "Fraud missed (USD)", t.missed_usd),
                ("review_usd", "Review cost (USD)", t.review_usd),
                ("total_cost_usd", "Total cost on the holdout (USD)", t.total_cost_usd),
                ("cost_per_day_usd", "Cost per day (USD)", t.cost_per_day_usd)):
            extra.append({"model": t.model, "versus": "", "metric": key, "label": label,
                          "estimate": value})
    for p in report.pairs:
        extra.append({"model": p.challenger, "versus": p.reference, "metric": "savings_usd",
                      "label": "Saved by switching (USD, holdout)", "estimate": p.savings_usd})
        extra.append({"model": p.challenger, "versus": p.reference,
                      "metric": "spearman_importance",
                      "label": "Spearman correlation of mean |SHAP|",
                      "estimate": p.importance.spearman})
    for t in report.latency:
        for key, label, value in (("p50_ms", "Single-row latency p50 (ms)", t.p50_ms),
                                  ("p99_ms", "Single-row latency p99 (ms)", t.p99_ms),
                                  ("prep_p50_ms", "Single-row p50 incl. input prep (ms)",
                                   t.prep_p50_ms),
                                  ("rows_per_s", "Batch throughput (rows/s)", t.rows_per_s),
                                  ("size_bytes", "Model size (bytes)", t.size_bytes),
                                  ("trees", "Trees", t.trees),
                                  ("max_depth", "Max depth", t.max_depth),
                                  ("sla_pass", f"Meets SLA p99 <= {report.sla.p99_ms:g} ms",
                                   float(t.meets(report.sla)))):
            extra.append({"model": t.model_id, "versus": "", "metric": key, "label": label,
                          "estimate": value})
    rows.append(pd.DataFrame(extra))
    return pd.concat(rows, ignore_index=True)


def attributions_table(report: ComparisonReport) -> pd.DataFrame:
    return report.attributions.copy()


# --------------------------------------------------------------------------- charts


def _ids_scale(ids: Sequence[str]) -> alt.Scale:
    # not the red/blue of "raises/lowers the score", which the waterfalls use
    palette = ["#7d3c98", "#17a589", "#d68910", "#566573", "#a04000", "#2e4053"]
    return alt.Scale(domain=list(ids), range=palette[:len(ids)])


def metrics_chart(report: ComparisonReport) -> alt.Chart:
    """Each model's estimate and 95% interval for the ranking metrics."""
    f = report.metrics.frame()
    f = f[(f["versus"] == "") & f["metric"].isin(["roc_auc", "pr_auc", "recall_at_fpr_0.01",
                                                   "precision_at_k"])]
    colour = alt.Color("model:N", scale=_ids_scale(report.model_ids), legend=alt.Legend(
        orient="top", title=None))
    base = alt.Chart(f).encode(y=alt.Y("model:N", title=None, axis=None), color=colour)
    bars = base.mark_rule(strokeWidth=3).encode(
        x=alt.X("ci_low:Q", title="estimate with 95% bootstrap interval",
                scale=alt.Scale(zero=False)), x2="ci_high:Q")
    dots = base.mark_circle(size=90).encode(
        x="estimate:Q", tooltip=[alt.Tooltip("model:N"), alt.Tooltip("label:N", title="metric"),
                                 alt.Tooltip("estimate:Q", format=".4f"),
                                 alt.Tooltip("ci_low:Q", title="95% low", format=".4f"),
                                 alt.Tooltip("ci_high:Q", title="95% high", format=".4f")])
    return (bars + dots).properties(height=60, width=260).facet(
        facet=alt.Facet("label:N", title=None, header=alt.Header(labelFontWeight="bold")),
        columns=2).resolve_scale(x="independent")


def calibration_chart(report: ComparisonReport) -> alt.LayerChart:
    """Observed fraud rate per score bin against the mean score: on the diagonal is
    calibrated."""
    df = report.calibration
    diag = alt.Chart(pd.DataFrame({"p": [0.0, 1.0]})).mark_line(
        color="#999", strokeDash=[4, 4]).encode(x="p:Q", y="p:Q")
    base = alt.Chart(df).encode(
        x=alt.X("mean_predicted:Q", title="Mean score in bin (predicted fraud probability)",
                axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("observed_rate:Q", title="Observed fraud rate in bin",
                axis=alt.Axis(format=".0%"), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("model:N", scale=_ids_scale(report.model_ids),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("model:N"),
                 alt.Tooltip("mean_predicted:Q", title="mean score", format=".1%"),
                 alt.Tooltip("observed_rate:Q", title="observed fraud rate", format=".1%"),
                 alt.Tooltip("rows:Q", title="rows in bin", format=",")])
    points = base.mark_circle(opacity=0.9).encode(
        size=alt.Size("rows:Q", title="rows in bin", scale=alt.Scale(type="log",
                                                                     range=[20, 400])))
    return (diag + base.mark_line(opacity=0.6) + points).properties(height=300)


def stability_chart(report: ComparisonReport) -> alt.Chart:
    """ROC AUC and PR AUC per week (or day) of the holdout, one line per model."""
    df = report.stability.melt(id_vars=["period_start", "model", "rows", "fraud"],
                               value_vars=["roc_auc", "pr_auc"], var_name="metric",
                               value_name="value")
    df["metric"] = df["metric"].map({"roc_auc": "ROC AUC", "pr_auc": "PR AUC"})
    unit = "Week starting" if report.stability_freq == "W" else "Day"
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("period_start:T", title=f"{unit} (UTC)",
                axis=alt.Axis(format="%b %d")),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("model:N", scale=_ids_scale(report.model_ids),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("period_start:T", title=unit.lower(), format="%Y-%m-%d"),
                 alt.Tooltip("model:N"), alt.Tooltip("metric:N"),
                 alt.Tooltip("value:Q", format=".4f"),
                 alt.Tooltip("rows:Q", format=","), alt.Tooltip("fraud:Q", title="fraud cases")],
    ).properties(height=220, width=320).facet(
        column=alt.Column("metric:N", title=None, header=alt.Header(labelFontWeight="bold"))
    ).resolve_scale(y="independent")


def cost_chart(report: ComparisonReport, points: int = 300) -> alt.LayerChart:
    """Total holdout cost against the threshold, per model; the chosen threshold marked."""
    parts = []
    for t in report.thresholds:
        c = t.curve[np.isfinite(t.curve["threshold"])]
        if len(c) > points:
            c = c.iloc[np.unique(np.linspace(0, len(c) - 1, points).round().astype(int))]
        parts.append(c.assign(model=t.model))
    df = pd.concat(parts, ignore_index=True)[["model", "threshold", "reviewed",
                                              "total_cost_usd", "missed_usd"]]
    chosen = pd.DataFrame([{"model": t.model, "threshold": t.threshold,
                            "total_cost_usd": t.total_cost_usd} for t in report.thresholds
                           if np.isfinite(t.threshold)])
    colour = alt.Color("model:N", scale=_ids_scale(report.model_ids),
                       legend=alt.Legend(orient="top", title=None))
    x = alt.X("threshold:Q", title="Threshold (flag when score ≥ it)",
              scale=alt.Scale(type="sqrt", domain=[0, 1]))
    y = alt.Y("total_cost_usd:Q", title="Total cost on the holdout (USD)",
              axis=alt.Axis(format="$,.0f"))
    lines = alt.Chart(df).mark_line().encode(
        x=x, y=y, color=colour,
        tooltip=[alt.Tooltip("model:N"), alt.Tooltip("threshold:Q", format=".4f"),
                 alt.Tooltip("reviewed:Q", title="reviews", format=","),
                 alt.Tooltip("missed_usd:Q", title="fraud missed", format="$,.0f"),
                 alt.Tooltip("total_cost_usd:Q", title="total cost", format="$,.0f")])
    marks = alt.Chart(chosen).mark_point(size=160, filled=True, shape="diamond").encode(
        x=x, y=y, color=colour, tooltip=[alt.Tooltip("model:N"),
                                         alt.Tooltip("threshold:Q", title="chosen threshold",
                                                     format=".4f"),
                                         alt.Tooltip("total_cost_usd:Q", format="$,.0f")])
    return (lines + marks).properties(height=280)


def importance_pair_chart(comparison: cmp.ImportanceComparison, top_n: int = 15) -> alt.Chart:
    """Mean |SHAP| side by side for the features either model ranks highest."""
    t = comparison.table.sort_values("importance", ascending=False).head(top_n)
    order = list(t["feature"])
    df = pd.concat([
        t.assign(model=comparison.reference, value=t["mean_abs_reference"],
                 rank=t["rank_reference"]),
        t.assign(model=comparison.challenger, value=t["mean_abs_challenger"],
                 rank=t["rank_challenger"])])[["feature", "model", "value", "rank"]]
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("value:Q", title="Mean |SHAP| (log-odds)"),
        y=alt.Y("feature:N", sort=order, title=None, axis=alt.Axis(labelLimit=260)),
        yOffset=alt.YOffset("model:N"),
        color=alt.Color("model:N", scale=_ids_scale([comparison.reference,
                                                     comparison.challenger]),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("feature:N"), alt.Tooltip("model:N"),
                 alt.Tooltip("value:Q", title="mean |SHAP|", format=".4f"),
                 alt.Tooltip("rank:Q")],
    ).properties(height=max(160, 34 * len(order)))


def most_different_table(comparison: cmp.ImportanceComparison, n: int = 8) -> pd.DataFrame:
    """The features whose direction or rank differs most, in words."""
    arrow = {1.0: "higher raises the score", -1.0: "higher lowers the score",
             0.0: "no clear direction"}
    unclear = "n/a (category)"
    t = comparison.most_different(n)
    return pd.DataFrame({
        "feature": t["feature"],
        f"rank in {comparison.reference}": t["rank_reference"],
        f"rank in {comparison.challenger}": t["rank_challenger"],
        "rank shift": t["rank_shift"],
        f"direction in {comparison.reference}": t["direction_reference"].map(arrow)
        .fillna(unclear),
        f"direction in {comparison.challenger}": t["direction_challenger"].map(arrow)
        .fillna(unclear),
    }).reset_index(drop=True)


def segment_table(pair: PairComparison) -> pd.DataFrame:
    rows = []
    for c in pair.segments:
        top = c.most_different(1)
        rows.append({
            c.segment or "segment": c.segment_value, "rows": c.rows,
            "Spearman ρ": round(c.spearman, 3) if np.isfinite(c.spearman) else None,
            "differs most": top["feature"].iloc[0] if len(top) else "—",
            "ranks": (f"{int(top['rank_reference'].iloc[0])} vs "
                      f"{int(top['rank_challenger'].iloc[0])}" if len(top) else "—")})
    return pd.DataFrame(rows)


def disagreement_view(pair: PairComparison) -> pd.DataFrame:
    """The disagreement list as an analyst reads it."""
    d = pair.disagreements
    label = d["is_fraud"].map({1.0: "fraud", 0.0: "legit"}).fillna("not known yet")
    return pd.DataFrame({
        "transaction": d["transaction_id"], "time (UTC)": d["event_time"],
        "amount (USD)": d["amount_usd"], "flagged only by": d["flagged_by"],
        f"score {pair.reference}": d["score_reference"],
        f"score {pair.challenger}": d["score_challenger"], "label": label})


# --------------------------------------------------------------------------- HTML report


def _chart(chart: alt.TopLevelMixin) -> Chart:
    return Chart(chart.to_dict(validate=False))


def report_html(report: ComparisonReport) -> str:
    """The comparison as one self-contained HTML page (`html_report.render_html`): tables, and
    Altair charts drawn by the vega-embed that Streamlit ships, inlined."""
    h = report.holdout
    s = report.settings
    lead: list[Any] = [Html.format(
        '<p class="note">Generated {} by FraudLens. Reference model: <b>{}</b>. Bootstrap: '
        "{} resamples, seed {}, 95% percentile intervals.</p>", report.created_at,
        report.reference, report.metrics.n_resamples, report.metrics.seed)]
    lead += [Html.format('<p class="warn">{}</p>', w) for w in report.warnings]
    candidates = Section("Candidates", [pd.DataFrame([
        {"model": c.model_id, "framework": c.framework, "stage": c.stage,
         "training data until": c.training_end, "sha256": c.sha256[:16] + "…"}
        for c in report.candidates])])
    holdout = Section("Holdout", [
        f"{h.rows:,} labelled transactions ({h.fraud:,} fraud, ${h.fraud_usd:,.0f} of fraud) "
        f"from {h.start:%Y-%m-%d %H:%M} to {h.end:%Y-%m-%d %H:%M} UTC over {h.days} days; "
        f"labels as known at {h.as_of:%Y-%m-%d %H:%M} UTC. Rows left out:",
        h.exclusion_frame()])
    metrics = Section("Metrics", [
        Note("Estimate [95% interval]. Differences are paired (same resamples for every "
             "model); * marks an interval that excludes zero. Precision in the top k per day: "
             "each day's k highest scores are reviewed."),
        metrics_table(report), _chart(metrics_chart(report))])
    calibration = Section("Calibration", [_chart(calibration_chart(report))])
    saving = [Html.format("<p>Switching from <b>{}</b> to <b>{}</b> {} <b>${:,.0f}</b> on the "
                          "holdout (${:,.0f} per day).</p>", p.reference, p.challenger,
                          "saves" if p.savings_usd >= 0 else "costs", abs(p.savings_usd),
                          abs(p.savings_per_day_usd)) for p in report.pairs]
    business = Section("Business view", [
        Note(f"Missed fraud costs its amount (USD); each review costs ${s.review_cost:,.2f}; at "
             f"most {s.capacity} reviews a day, highest scores first. Each model's threshold "
             "minimises its total cost on the holdout."),
        cost_table(report), *saving, _chart(cost_chart(report))])
    unit = "week" if report.stability_freq == "W" else "day (the holdout spans under 3 weeks)"
    stability = Section("Stability", [Note(f"Per {unit}."), _chart(stability_chart(report))])
    sla = [Section("Serving SLA", [
        Note(f"Measured on {report.latency[0].machine}: {report.latency[0].single_row_calls} "
             f"single-row predictions, batches of {report.latency[0].batch_rows:,} rows."),
        latency_table(report)])] if report.latency else []
    explanations: list[Any] = [Note(f"{m}: {src}") for m, src in report.attribution_sources]
    for p in report.pairs:
        c = p.importance
        parts: list[Any] = [
            Html.format("<p>Spearman rank correlation of mean |SHAP|: <b>{}</b> over {} "
                        "features.</p>", _num(c.spearman, ".3f"), len(c.table)),
            _chart(importance_pair_chart(c)), "Features that differ most:",
            most_different_table(c)]
        if p.segments:
            parts += [f"Per {p.segments[0].segment or 'segment'}:", segment_table(p)]
        explanations.append(Section(f"{p.reference} vs {p.challenger}", parts))
    disagreements: list[Any] = []
    for p in report.pairs:
        view = disagreement_view(p).head(25).copy()
        view["amount (USD)"] = view["amount (USD)"].map(lambda v: f"${v:,.2f}")
        for col in view.columns:
            if col.startswith("score "):
                view[col] = view[col].map(lambda v: f"{v:.1%}")
        disagreements += [f"{p.disagreement_total:,} transactions after the training window are "
                          f"flagged by exactly one of {p.reference} and {p.challenger} at their "
                          "chosen thresholds; the largest amounts first.", view]
    for case in report.cases:
        label = {1.0: "fraud", 0.0: "legit"}.get(case.is_fraud, "not known yet")
        disagreements.append(Section(
            f"Case {case.transaction_id}: ${case.amount_usd:,.2f}, label {label}",
            [Columns([Section(model, [_chart(waterfall_chart(steps))])
                      for model, steps in case.steps])]))
    return render_html(f"Model comparison: {', '.join(report.model_ids)}", [
        *lead, candidates, holdout, metrics, calibration, business, stability, *sla,
        Section("Explanations", explanations), Section("Disagreements", disagreements)])


def write_html_report(report: ComparisonReport, path: str | Path,
                      before_commit: BeforeCommit | None = None) -> ExportResult:
    """Write `report_html(report)` atomically; `before_commit` (e.g. the audit record) runs
    before the file appears."""
    data = report_html(report).encode("utf-8")
    digest = atomic_write_bytes(path, data, before_commit)
    return ExportResult(str(Path(path).resolve()), digest, None, len(data))
