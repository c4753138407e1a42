"""Model comparison, the ML engineer's job: one matured holdout for two or more candidates,
`explainers.comparison_stats`, `review_cost` and `latency` on it, a `ComparisonReport` out.
No Streamlit, no SQL (`data_access.holdout`), no drawing (`app.views.comparison_report`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from app.services.case import case_explanation, waterfall_steps
from app.services.comparison_attributions import FEATURE_SAMPLE, holdout_attributions
from app.views.comparison_report import report_html
from data_access import report_cache
from data_access.case_queries import AMOUNT_COLUMN, transaction_row
from data_access.cohort_queries import feature_rows
from data_access.exports import BeforeCommit, ExportResult, atomic_write_bytes
from data_access.holdout import candidate_rows, labels_as_of, newest_label_time, rows_until
from data_access.registry import Manifest, ModelRegistry
from data_access.warehouse import table_columns
from explainers import comparison_stats as cmp
from explainers import review_cost
from explainers.errors import ValidationError
from explainers.latency import LatencyMeasurement, Sla, measure_latency
from explainers.model import LoadedModel
from explainers.timeutil import to_utc

__all__ = [
    "CaseWaterfalls",
    "ComparisonReport",
    "ComparisonSettings",
    "HoldoutSummary",
    "PairComparison",
    "build_report",
    "case_waterfalls",
    "default_candidates",
    "default_reference",
    "default_settings",
    "keep_report",
    "kept",
    "kept_parts",
    "newest_label_time",
    "timed_with",
    "write_html_report",
]

LatencyFn = Callable[[LoadedModel, Manifest, pd.DataFrame], LatencyMeasurement]
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
    thresholds: tuple[review_cost.ThresholdChoice, ...]
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

    def threshold(self, model_id: str) -> review_cost.ThresholdChoice:
        return next(t for t in self.thresholds if t.model == model_id)

    def pair(self, challenger: str) -> PairComparison:
        return next(p for p in self.pairs if p.challenger == challenger)


# --------------------------------------------------------------------------- assembling


def _training_end(manifests: Sequence[Manifest]) -> tuple[pd.Timestamp | None, list[str]]:
    """The latest known training end, and a warning naming models whose end is unknown (empty,
    unparsable): with none known the holdout is chosen from matured labels alone."""
    ends, unknown = [], []
    for m in manifests:
        try:  # an empty end would be NaT, which no row is after
            end = to_utc(str(m.training_window.get("end") or "").strip() or None)
        except ValueError:
            end = pd.NaT
        if pd.isna(end):
            unknown.append(m.key)
        else:
            ends.append(end)
    warnings = []
    if unknown:
        basis = ("the other models' training ends and matured labels" if ends
                 else "matured labels alone")
        warnings.append(f"No training window end is recorded for {', '.join(unknown)}: the "
                        f"holdout is chosen from {basis} and may contain rows it was trained "
                        "on. Register it with --training-start/--training-end.")
    return (max(ends) if ends else None), warnings


def _as_of(con: duckdb.DuckDBPyConnection, chosen: date | None) -> pd.Timestamp:
    return labels_as_of(con, chosen, "there is nothing to judge models on")


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



@dataclass(frozen=True, eq=False)
class _Holdout:
    """The candidate rows (`pool`), the matured holdout drawn from them and its labels."""

    pool: pd.DataFrame
    frame: pd.DataFrame
    y: np.ndarray
    summary: HoldoutSummary


def _checked(con: duckdb.DuckDBPyConnection, manifests: Sequence[Manifest],
             models: Sequence[LoadedModel], settings: ComparisonSettings,
             reference: str | None) -> tuple[list[str], str, str | None]:
    """The model ids, the reference and the segment column (None when absent), or an error
    that says what to change."""
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
    return ids, reference, settings.segment if settings.segment in columns else None


def _select_holdout(con: duckdb.DuckDBPyConnection, ids: list[str],
                    train_end: pd.Timestamp | None, as_of: pd.Timestamp, segment: str | None,
                    settings: ComparisonSettings, warnings: list[str]) -> _Holdout:
    pool = candidate_rows(con, ids, train_end, as_of, segment)
    before = rows_until(con, train_end) if train_end is not None else 0
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
    amount = holdout["amount_usd"].to_numpy(dtype=float)
    summary = HoldoutSummary(
        as_of=as_of, mature_until=rules.mature_until, train_end=train_end,
        start=holdout["event_time"].min(), end=holdout["event_time"].max(),
        rows=len(holdout), fraud=int(y.sum()), fraud_usd=float((amount * y).sum()),
        days=len(np.unique(day)), exclusions=tuple(exclusions))
    if summary.fraud < 30:
        warnings.append(f"The holdout has only {summary.fraud} fraud cases: intervals are wide.")
    return _Holdout(pool, holdout, y, summary)


@dataclass(frozen=True, eq=False)
class _Scores:
    metrics: cmp.MetricsResult
    calibration: pd.DataFrame
    thresholds: tuple[review_cost.ThresholdChoice, ...]
    stability: pd.DataFrame
    freq: str


def _score(h: _Holdout, ids: list[str], reference: str,
           settings: ComparisonSettings) -> _Scores:
    """Bootstrapped metrics, calibration, cost-minimising thresholds and stability."""
    holdout, y = h.frame, h.y
    day = holdout["event_time"].dt.floor("D").to_numpy()
    scores = {m: holdout[f"score_{m}"].to_numpy(dtype=float) for m in ids}
    amount = holdout["amount_usd"].to_numpy(dtype=float)
    metrics = cmp.bootstrap_metrics(y, scores, day, capacity=settings.capacity,
                                    n_resamples=settings.n_resamples, seed=settings.seed,
                                    reference=reference)
    calibration = pd.concat([cmp.calibration_table(y, scores[m], m) for m in ids],
                            ignore_index=True)
    cost = review_cost.CostModel(review_cost=settings.review_cost, capacity=settings.capacity)
    thresholds = tuple(review_cost.choose_threshold(m, scores[m], y, amount, day, cost)
                       for m in ids)
    weeks = cmp.week_start(holdout["event_time"]).nunique()
    freq = "W" if weeks >= 3 else "D"
    stability = cmp.period_metrics(y, scores, holdout["event_time"], freq)
    return _Scores(metrics, calibration, thresholds, stability, freq)


def _timings(models: Sequence[LoadedModel], manifests: Sequence[Manifest],
             features: pd.DataFrame, latency: LatencyFn | None, settings: ComparisonSettings,
             say: Callable[[str], None]) -> list[LatencyMeasurement]:
    if latency is None:
        return []
    timing_rows = features.sample(n=min(TIMING_ROWS, len(features)), random_state=settings.seed)
    timings = []
    for model, manifest in zip(models, manifests, strict=True):
        say(f"timing {model.key}")
        timings.append(latency(model, manifest, timing_rows))
    return timings


def _pairs(pool: pd.DataFrame, ids: list[str], reference: str,
           summaries: dict[str, dict[str | None, pd.DataFrame]], scored: _Scores,
           summary: HoldoutSummary, segment: str | None,
           settings: ComparisonSettings) -> tuple[PairComparison, ...]:
    """Each challenger against the reference: importance, disagreements, savings."""
    score_cols = [f"score_{m}" for m in ids]
    cases = pool.loc[pool["scored"], ["transaction_id", "event_time", "amount_usd", "is_fraud",
                                      *score_cols]].copy()
    cases["is_fraud"] = cases["is_fraud"].astype(float)
    chosen = {t.model: t.threshold for t in scored.thresholds}
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
        every = review_cost.disagreements(cases, reference, challenger, chosen, limit=len(cases))
        ref_cost, ch_cost = (next(t for t in scored.thresholds if t.model == m)
                             for m in (reference, challenger))
        saved = ref_cost.total_cost_usd - ch_cost.total_cost_usd
        pairs.append(PairComparison(
            reference, challenger, overall, per_segment,
            every.head(settings.disagreement_limit), len(every), saved,
            saved / summary.days if summary.days else np.nan))
    return tuple(pairs)


def _disagreement_cases(con: duckdb.DuckDBPyConnection, models: Sequence[LoadedModel],
                        pairs: tuple[PairComparison, ...], settings: ComparisonSettings,
                        say: Callable[[str], None]) -> tuple[CaseWaterfalls, ...]:
    """Paired waterfalls for the first pair's largest disagreements."""
    if not pairs or settings.waterfall_cases <= 0:
        return ()
    say("explaining the largest disagreements")
    first = pairs[0]
    pair_models = [m for m in models if m.key in (first.reference, first.challenger)]
    return tuple(case_waterfalls(con, pair_models, str(row["transaction_id"]),
                                 float(row["is_fraud"]))
                 for _, row in first.disagreements.head(settings.waterfall_cases).iterrows())


def build_report(con: duckdb.DuckDBPyConnection, manifests: Sequence[Manifest],
                 models: Sequence[LoadedModel], settings: ComparisonSettings, *,
                 reference: str | None = None, latency: LatencyFn | None = None,
                 progress: Callable[[str], None] | None = None) -> ComparisonReport:
    """Compare `models` (two or more, with their manifests in the same order) on one matured
    holdout. `latency` times a model (None skips SLA fit); `progress` hears each step."""
    say = progress or (lambda _msg: None)
    ids, reference, segment = _checked(con, manifests, models, settings, reference)
    train_end, warnings = _training_end(manifests)
    as_of = _as_of(con, settings.as_of)

    say("selecting the matured holdout")
    h = _select_holdout(con, ids, train_end, as_of, segment, settings, warnings)
    say(f"bootstrap: {settings.n_resamples} resamples of {len(h.frame):,} rows")
    scored = _score(h, ids, reference, settings)

    say("reading features of the holdout")
    all_features = list(dict.fromkeys(n for m in models for n in m.schema.names))
    sample_ids = h.frame["transaction_id"].sample(
        n=min(FEATURE_SAMPLE, len(h.frame)), random_state=settings.seed)
    features = feature_rows(con, sample_ids.tolist(), all_features)
    timings = _timings(models, manifests, features, latency, settings, say)

    say("comparing attributions")
    summaries, sources, attributions = holdout_attributions(con, models, h.frame, features,
                                                         segment, settings, warnings)
    pairs = _pairs(h.pool, ids, reference, summaries, scored, h.summary, segment, settings)
    case_list = _disagreement_cases(con, models, pairs, settings, say)
    return ComparisonReport(
        settings=settings,
        candidates=tuple(Candidate(m.key, m.framework, m.stage, m.sha256,
                                   str(m.training_window.get("end") or "unknown"))
                         for m in manifests),
        reference=reference, holdout=h.summary, metrics=scored.metrics,
        calibration=scored.calibration, thresholds=scored.thresholds,
        stability=scored.stability, stability_freq=scored.freq,
        latency=tuple(timings), sla=Sla(p99_ms=settings.sla_p99_ms),
        attributions=attributions, attribution_sources=tuple(sources), pairs=pairs,
        cases=case_list, warnings=tuple(warnings),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"))


# --------------------------------------------------------------------------- kept results
# The page's defaults live here so that the page, `fraudlens compare` and `fraudlens
# precompute` key a kept comparison the same way.

KEPT_KIND = "comparison"


def default_settings(seed: int) -> ComparisonSettings:
    """The settings Model Comparison opens with (labels as of the newest label)."""
    return ComparisonSettings(as_of=None, maturity_days=30, min_week_coverage=0.95,
                              capacity=20, review_cost=5.0, sla_p99_ms=10.0, seed=seed,
                              waterfall_cases=0)


def default_candidates(infos: Sequence[Any]) -> tuple[str, ...]:
    """The candidates Model Comparison opens with: the first two models that are not
    archived, in the registry's order (champions first); `infos` are `ModelInfo`s."""
    live = [m.model_id for m in infos if m.stage != "archived"] or [m.model_id for m in infos]
    return tuple(live[:2])


def default_reference(infos: Sequence[Any], chosen: Sequence[str]) -> str:
    """The reference among `chosen`: its first champion, else the first chosen."""
    stages = {m.model_id: m.stage for m in infos}
    return next((m for m in chosen if stages.get(m) == "champion"), chosen[0])


def kept_parts(refs: Sequence[str], shas: Sequence[str], reference: str,
               settings: ComparisonSettings) -> tuple[object, ...]:
    """What a kept comparison is keyed by besides the lake's data version: the candidates,
    their checksums, the reference and the settings."""
    return (tuple(refs), tuple(shas), reference, repr(settings))


def kept(workspace: str | Path, refs: Sequence[str], shas: Sequence[str], reference: str,
         settings: ComparisonSettings, data_version: str) -> report_cache.Kept | None:
    """The comparison kept for this data version, else the newest one kept for earlier data
    (`current` False), else None. Never computes."""
    return report_cache.read_newest(workspace, KEPT_KIND,
                                    kept_parts(refs, shas, reference, settings),
                                    ComparisonReport, data_version)


def keep_report(workspace: str | Path, report: ComparisonReport, data_version: str) -> bool:
    """Keep `report` for its candidates' checksums, reference and settings on `data_version`.
    A report drawn with waterfall cases (`fraudlens compare`) is kept as the page computes it
    (no cases; the rest is the same)."""
    if report.settings.waterfall_cases:
        report = replace(report, settings=replace(report.settings, waterfall_cases=0),
                         cases=())
    refs = [c.model_id for c in report.candidates]
    shas = [c.sha256 for c in report.candidates]
    return report_cache.keep(workspace, KEPT_KIND,
                             kept_parts(refs, shas, report.reference, report.settings),
                             data_version, report)


def write_html_report(report: ComparisonReport, path: str | Path,
                      before_commit: BeforeCommit | None = None) -> ExportResult:
    """Write `report_html(report)` atomically; `before_commit` (e.g. the audit record) runs
    before the file appears."""
    data = report_html(report).encode("utf-8")
    digest = atomic_write_bytes(path, data, before_commit)
    return ExportResult(str(Path(path).resolve()), digest, None, len(data))
