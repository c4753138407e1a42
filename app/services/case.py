"""The analyst's case: links and ids, the case's details as text, its SHAP explanation (stored
or computed now), waterfall steps, reasons in plain words, and similar labelled cases.

No Streamlit and no SQL here: `data_access.case_queries` reads the lake, `app.shell.caches`
caches these for the pages, and tests call them directly with a warehouse connection.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import duckdb
import numpy as np
import pandas as pd

from data_access.case_queries import (
    AMOUNT_COLUMN,
    COUNTRY_COLUMN,
    case_summaries,
    labelled_shap_rows,
    stored_shap_row,
)
from explainers.explanation import Explanation
from explainers.frames import explain_frame
from explainers.model import LoadedModel, sigmoid
from explainers.neighbours import nearest_cases
from explainers.reason_codes import (
    FeatureCatalog,
    ReasonCode,
    bool_statement,
    format_value,
    reason_codes,
)
from explainers.schema import Feature, FeatureSchema
from explainers.timeutil import to_utc

__all__ = [
    "NEIGHBOUR_POOL_SIZE",
    "CaseExplanation",
    "CaseReasons",
    "NeighbourPool",
    "case_explanation",
    "case_link",
    "case_reasons",
    "clean_id",
    "detail_rows",
    "md_escape",
    "nearest_labelled",
    "neighbour_pool",
    "probability_changes",
    "reason_text",
    "resolve_model",
    "shown_value",
    "similar_cases",
    "stored_case_explanation",
    "waterfall_steps",
]

# Labelled stored cases that similar cases are drawn from: big enough to find close ones,
# small enough to hold per model in the app's cache.
NEIGHBOUR_POOL_SIZE = 20_000
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")


def clean_id(text: object) -> str | None:
    """A transaction or account id as typed or linked, stripped; None when it is not one."""
    if not isinstance(text, str):
        return None
    value = text.strip()
    return value if _ID.match(value) else None


def case_link(transaction_id: str, model_id: str | None = None) -> str:
    """The query string that reopens a case (`?txn=ID&model=NAME`)."""
    params = {"txn": transaction_id}
    if model_id:
        params["model"] = model_id
    return "?" + urlencode(params, safe="@")


def resolve_model(requested: object, model_ids: list[str],
                  champions: Collection[str] = ()) -> str | None:
    """A linked model (`name@version`, or `name` for its champion, else its newest version)
    among the registered ids; None when it names none of them."""
    if not isinstance(requested, str) or not requested.strip():
        return None
    wanted = requested.strip()
    if wanted in model_ids:
        return wanted
    same_name = [m for m in model_ids if m.partition("@")[0] == wanted]
    if not same_name:
        return None
    preferred = [m for m in same_name if m in champions]
    return (preferred or sorted(same_name, key=_version_key))[-1]


def _version_key(model_id: str) -> tuple[int, int | str]:
    version = model_id.partition("@")[2]
    return (0, int(version)) if version.isdigit() else (1, version)


# What an analyst reads first about a transaction, when the warehouse has it.
DETAIL_FIRST = ("transaction_id", "event_time", AMOUNT_COLUMN, "currency", "txn_type",
                "payment_method", "asset", "channel", COUNTRY_COLUMN, "account_id")


def detail_rows(row: pd.DataFrame, schema: FeatureSchema | None = None) -> pd.DataFrame:
    """One transaction (already masked) as field/value text rows: the usual details first,
    then every other column that is not a model feature (features are in the waterfall)."""
    if row.empty:
        return pd.DataFrame(columns=["field", "value"])
    features = set(schema.names) if schema else set()
    first = [c for c in DETAIL_FIRST if c in row.columns]
    rest = [c for c in row.columns if c not in first and c not in features]
    record = row.iloc[0]
    out = []
    for col in [*first, *rest]:
        out.append({"field": col.replace("_", " "),
                    "value": _detail_text(col, record[col], schema)})
    return pd.DataFrame(out, columns=["field", "value"])


def _detail_text(column: str, value: Any, schema: FeatureSchema | None) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return format_value(None)  # "missing"
    if column == "event_time":
        return f"{to_utc(value):%Y-%m-%d %H:%M:%S} UTC"
    feature = _feature(schema, column) if schema else None
    if column == AMOUNT_COLUMN and feature is None:
        return format_value(float(value), "USD")
    if feature is not None and not isinstance(value, str):
        return shown_value(value, feature)
    return str(value)


@dataclass(frozen=True)
class CaseExplanation:
    """One case's SHAP contributions (log-odds) for one model, and where they came from."""

    model_id: str
    transaction_id: str
    explanation: Explanation  # one row; data = the feature values the model saw
    source: str  # "store" or "computed on demand"

    @property
    def values(self) -> np.ndarray:
        return self.explanation.values[0]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.explanation.feature_names

    @property
    def base_value(self) -> float:
        return self.explanation.base_value

    @property
    def margin(self) -> float:
        return float(self.explanation.margin()[0])

    @property
    def probability(self) -> float:
        return float(sigmoid(np.array([self.margin]))[0])

    def feature_values(self) -> dict[str, Any]:
        return dict(self.explanation.data.iloc[0].items())

    def top_feature(self) -> str:
        """The feature with the largest |contribution| (ties: schema order)."""
        return self.feature_names[int(np.argmax(np.abs(self.values)))]


def stored_case_explanation(con: duckdb.DuckDBPyConnection, model_id: str,
                            schema: FeatureSchema,
                            transaction: pd.DataFrame) -> CaseExplanation | None:
    """The case's row from the SHAP store, or None when it was not stored."""
    transaction_id = str(transaction["transaction_id"].iloc[0])
    stored = stored_shap_row(con, model_id, transaction_id)
    if stored is None:
        return None
    row, features = stored
    if row.empty or features != schema.names:
        return None
    x = schema.model_input(transaction.iloc[:1])
    expl = Explanation(values=row[features].to_numpy(dtype=float),
                       base_value=float(row["base_value"].iloc[0]), feature_names=tuple(features),
                       data=x.frame, flagged=row["flagged"].to_numpy(dtype=bool),
                       row_ids=np.array([transaction_id], dtype=object))
    return CaseExplanation(model_id, transaction_id, expl, "store")


def case_explanation(con: duckdb.DuckDBPyConnection, model: LoadedModel,
                     transaction: pd.DataFrame) -> CaseExplanation:
    """From the store when present, else computed now with the engine (`explain_frame`)."""
    stored = stored_case_explanation(con, model.key, model.schema, transaction)
    if stored is not None:
        return stored
    transaction_id = str(transaction["transaction_id"].iloc[0])
    expl = explain_frame(model, transaction.iloc[:1])
    return CaseExplanation(model.key, transaction_id, expl, "computed on demand")


# --------------------------------------------------------------------------- waterfall


def waterfall_steps(case: CaseExplanation, schema: FeatureSchema | None = None,
                    top_n: int = 10) -> pd.DataFrame:
    """The waterfall as rows, top to bottom: base value, the `top_n` largest |contributions|,
    "N other features" (their sum), then the final score. Columns: order, kind (base,
    feature, other, final), feature, label, contribution, start, end (log-odds), probability
    (at `end`)."""
    values = np.asarray(case.values, dtype=float)
    data = case.feature_values()
    order = np.argsort(-np.abs(values), kind="stable")
    top, rest = order[:top_n], order[top_n:]
    rows: list[dict[str, Any]] = []
    base = float(case.base_value)
    rows.append({"kind": "base", "feature": "", "label": "Base value (average case)",
                 "contribution": base, "start": 0.0, "end": base})
    level = base
    for j in top:
        name = case.feature_names[j]
        label = f"{name} = {shown_value(data.get(name), _feature(schema, name))}"
        rows.append({"kind": "feature", "feature": name, "label": label,
                     "contribution": float(values[j]), "start": level,
                     "end": level + float(values[j])})
        level += float(values[j])
    if len(rest):
        total = float(values[rest].sum())
        label = f"{len(rest)} other feature" + ("s" if len(rest) > 1 else "")
        rows.append({"kind": "other", "feature": "", "label": label,
                     "contribution": total, "start": level, "end": level + total})
        level += total
    rows.append({"kind": "final", "feature": "", "label": "Model score",
                 "contribution": level, "start": 0.0, "end": level})
    out = pd.DataFrame(rows)
    out.insert(0, "order", np.arange(len(out)))
    out["probability"] = sigmoid(out["end"].to_numpy())
    # the same steps as changes in fraud probability: bars from p(start) to p(end); base and
    # final bars start at 0. Feature and "other" steps add up to p(case) − p(base).
    ends = out["kind"].isin(["base", "final"]).to_numpy()
    out["p_start"] = np.where(ends, 0.0, sigmoid(out["start"].to_numpy()))
    out["p_end"] = out["probability"]
    out["probability_change"] = out["p_end"] - out["p_start"]
    return out


def _feature(schema: FeatureSchema | None, name: str) -> Feature | None:
    if schema is None:
        return None
    try:
        return schema.feature(name)
    except Exception:  # a stored feature the schema no longer lists: show it raw
        return None


def shown_value(value: Any, feature: Feature | None) -> str:
    """A model-input value as analysts read it ($, units, yes/no, a level, 'missing')."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return format_value(None)
    if feature is None:
        return format_value(value if isinstance(value, str) else float(value))
    if feature.is_categorical:
        return str(value)
    return format_value(float(value), feature.unit, feature.dtype)


# --------------------------------------------------------------------------- reasons


@dataclass(frozen=True)
class CaseReasons:
    """The strongest reasons in each direction, in plain words."""

    towards_fraud: tuple[ReasonCode, ...]
    towards_legit: tuple[ReasonCode, ...]


def reason_text(code: ReasonCode, schema: FeatureSchema,
                probability_change: float | None = None) -> str:
    """A reason as one line: what the feature means, its value, its push in log-odds and, when
    given, its change in fraud probability (`probability_changes`). A yes/no feature reads as
    one statement ("The device is new to this account"), never a double negative."""
    feature = _feature(schema, code.feature)
    push = f"{code.shap:+.2f} log-odds"
    if probability_change is not None:
        points = probability_change * 100
        push += (f", {points:+.1f} pp" if points == 0 or abs(points) >= 0.05
                 else f", {'+' if points > 0 else '−'}<0.1 pp")
    if (feature is not None and feature.dtype == "bool" and feature.description
            and code.value is not None):
        return f"**{md_escape(bool_statement(feature.description, bool(code.value)))}** ({push})"
    meaning = feature.description if feature and feature.description else code.feature
    value = shown_value(code.value, feature)
    return f"{md_escape(meaning)}: **{md_escape(value)}** ({push})"


def probability_changes(case: CaseExplanation) -> dict[str, float]:
    """Each feature's change in fraud probability when the waterfall adds it, largest |SHAP|
    first: p(base + earlier steps + this one) − p(base + earlier steps). Along that fixed
    order the changes add up exactly to p(case) − p(base)."""
    values = np.asarray(case.values, dtype=float)
    order = np.argsort(-np.abs(values), kind="stable")
    levels = case.base_value + np.concatenate([[0.0], np.cumsum(values[order])])
    probs = sigmoid(levels)
    return {case.feature_names[j]: float(probs[i + 1] - probs[i]) for i, j in enumerate(order)}


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!<>|~:$])")


def md_escape(text: str) -> str:
    """Text shown through Markdown stays text (no links, emphasis, HTML or LaTeX)."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def case_reasons(case: CaseExplanation, schema: FeatureSchema, top_n: int = 5) -> CaseReasons:
    """Reason codes (explainers.reason_codes) for and against fraud, strongest first."""
    catalog = FeatureCatalog.from_schema(schema)
    return CaseReasons(
        tuple(reason_codes(case.explanation, catalog, top_n=top_n, direction="fraud")),
        tuple(reason_codes(case.explanation, catalog, top_n=max(top_n - 2, 1),
                           direction="legit")))


# --------------------------------------------------------------------------- similar cases


@dataclass(frozen=True)
class NeighbourPool:
    """Labelled stored cases to compare against: ids, SHAP matrix (n, F), outcomes."""

    model_id: str
    feature_names: tuple[str, ...]
    transaction_ids: np.ndarray
    values: np.ndarray
    is_fraud: np.ndarray
    event_time: np.ndarray

    def __len__(self) -> int:
        return len(self.transaction_ids)


def neighbour_pool(con: duckdb.DuckDBPyConnection, model_id: str,
                   size: int = NEIGHBOUR_POOL_SIZE, seed: int = 7) -> NeighbourPool | None:
    """A seeded sample of at most `size` labelled cases from the SHAP store."""
    rows = labelled_shap_rows(con, model_id, size, seed)
    if rows is None:
        return None
    df, features = rows
    return NeighbourPool(model_id, tuple(features), df["transaction_id"].to_numpy(dtype=object),
                         df[features].to_numpy(dtype=float), df["is_fraud"].to_numpy(dtype=int),
                         df["event_time"].to_numpy())


def nearest_labelled(case: CaseExplanation, pool: NeighbourPool, k: int = 5) -> pd.DataFrame:
    """The k labelled cases nearest to this one in SHAP space (the case itself excluded):
    transaction_id, event_time, distance (log-odds), outcome."""
    columns = ["transaction_id", "event_time", "distance", "outcome"]
    if len(pool) == 0 or tuple(pool.feature_names) != tuple(case.feature_names):
        return pd.DataFrame(columns=columns)
    found = nearest_cases(np.asarray(case.values, dtype=float), pool.values, k=k + 1)
    keep = [(i, d) for i, d in zip(found.indices, found.distances, strict=True)
            if pool.transaction_ids[i] != case.transaction_id][:k]
    idx = np.array([i for i, _ in keep], dtype=np.int64)
    return pd.DataFrame({
        "transaction_id": pool.transaction_ids[idx],
        "event_time": pool.event_time[idx],
        "distance": np.array([d for _, d in keep], dtype=float),
        "outcome": np.where(pool.is_fraud[idx] == 1, "fraud", "legit"),
    }, columns=columns)


def similar_cases(con: duckdb.DuckDBPyConnection, case: CaseExplanation, pool: NeighbourPool,
                  k: int = 5) -> pd.DataFrame:
    """The case's nearest labelled neighbours with their details (list columns and score),
    outcome, distance, score and amount first."""
    near = nearest_labelled(case, pool, k=k)
    if near.empty:
        return near
    details = case_summaries(con, near["transaction_id"].tolist(), case.model_id).drop(
        columns=["outcome"])
    out = near.merge(details, on="transaction_id", how="left")
    first = ["transaction_id", "outcome", "distance", "score", AMOUNT_COLUMN, "txn_type"]
    return out[[c for c in first if c in out.columns]
               + [c for c in out.columns if c not in first]]
