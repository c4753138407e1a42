"""Model Comparison's attributions: each candidate's SHAP values on the matured holdout (from
the SHAP store, else computed on a seeded sample), summarised overall and per segment value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from data_access import shap_store
from data_access.shap_store import Cohort
from explainers import comparison_stats as cmp
from explainers.frames import explain_frame
from explainers.model import LoadedModel

if TYPE_CHECKING:
    from app.services.model_comparison import ComparisonSettings

__all__ = ["FEATURE_SAMPLE", "holdout_attributions"]

FEATURE_SAMPLE = 20_000  # holdout rows whose features are read (attributions, timing)


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


def holdout_attributions(con: duckdb.DuckDBPyConnection, models: Sequence[LoadedModel],
                      holdout: pd.DataFrame, features: pd.DataFrame, segment: str | None,
                      settings: ComparisonSettings, warnings: list[str]
                      ) -> tuple[dict[str, dict[str | None, pd.DataFrame]],
                                 list[tuple[str, str]], pd.DataFrame]:
    """Per model: attribution summaries (overall and per segment value), where the SHAP
    values came from, and all of it as one tidy frame."""
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
    return summaries, sources, attributions
