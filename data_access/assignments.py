"""Experiment assignments in the lake, and what an experiment report reads.

An assignments file (CSV or Parquet) holds `experiment`, `unit_id`, `unit_type` (account |
transaction), `arm`, `model` (N@V), `threshold`, `start`, `end` (UTC; the window is
[start, end)). Each experiment is published as one file,
`assignments/<experiment-key>/<content-hash>.parquet`, atomically; importing the same rows
again is a no-op, and an experiment already imported with other rows is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.case_queries import AMOUNT_COLUMN
from data_access.lake import Lake, model_key
from data_access.warehouse import check_limits, fetch_df, quote_ident
from explainers.errors import ValidationError

__all__ = ["COLUMNS", "ImportedExperiment", "experiment_names", "experiment_rows",
           "experiment_windows", "import_assignments", "normalise_assignments"]

COLUMNS = ("experiment", "unit_id", "unit_type", "arm", "model", "threshold", "start", "end")
UNIT_TYPES = ("account", "transaction")
_SHOWN = 5  # units named in a refusal


@dataclass(frozen=True)
class ImportedExperiment:
    name: str
    units: int
    arms: tuple[str, ...]
    path: str
    already_present: bool


def _names(values: Iterable[object]) -> str:
    items = sorted({str(v) for v in values})
    more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
    return ", ".join(items[:_SHOWN]) + more


def _times(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    parsed = pd.to_datetime(frame[column], utc=True, errors="coerce", format="mixed")
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValidationError(f"{source}: column {column!r}, row {row + 1}: "
                              f"{frame[column].iloc[row]!r} is not a date")
    return parsed


def normalise_assignments(frame: pd.DataFrame, registered: Sequence[str],
                          source: str = "assignments") -> pd.DataFrame:
    """Typed, checked assignments, or a one-line refusal naming what to fix."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValidationError(f"{source}: missing required column(s): {', '.join(missing)}")
    out = frame[list(COLUMNS)].copy()
    check_limits(out, source)
    for col in ("experiment", "unit_id", "unit_type", "arm", "model"):
        if out[col].isna().any():
            row = int(np.flatnonzero(out[col].isna().to_numpy())[0])
            raise ValidationError(f"{source}: column {col!r}, row {row + 1}: empty value")
        out[col] = out[col].astype(str).str.strip()
    bad_type = ~out["unit_type"].isin(UNIT_TYPES)
    if bad_type.any():
        raise ValidationError(f"{source}: unit_type must be account or transaction, got "
                              f"{_names(out.loc[bad_type, 'unit_type'])}")
    threshold = pd.to_numeric(out["threshold"], errors="coerce")
    if threshold.isna().any() or not threshold.between(0, 1).all():
        raise ValidationError(f"{source}: threshold must be a number between 0 and 1")
    out["threshold"] = threshold.astype(float)
    out["start"], out["end"] = _times(out, "start", source), _times(out, "end", source)
    backwards = out["start"] >= out["end"]
    if backwards.any():
        raise ValidationError(f"{source}: bad dates: every start must be before its end "
                              f"(experiment {_names(out.loc[backwards, 'experiment'])})")
    unknown = sorted(set(out["model"]) - set(registered))
    if unknown:
        raise ValidationError(f"{source}: unregistered model(s) {', '.join(unknown)}; registered: "
                              f"{', '.join(sorted(registered)) or 'none'}")
    _check_experiments(out, source)
    return out.drop_duplicates().sort_values(["experiment", "unit_type", "unit_id"],
                                             kind="mergesort").reset_index(drop=True)


def _check_experiments(frame: pd.DataFrame, source: str) -> None:
    for name, exp in frame.groupby("experiment", sort=True):
        if exp[["start", "end"]].drop_duplicates().shape[0] != 1:
            raise ValidationError(f"{source}: bad dates: experiment {name} has more than one "
                                  "start/end; give every row of an experiment the same window")
        arms = exp[["arm", "model", "threshold"]].drop_duplicates()
        if arms["arm"].duplicated().any():
            raise ValidationError(f"{source}: experiment {name}: arm "
                                  f"{_names(arms.loc[arms['arm'].duplicated(), 'arm'])} names "
                                  "more than one model or threshold")
        units = exp.drop_duplicates(["unit_type", "unit_id", "arm"])
        twice = units.duplicated(["unit_type", "unit_id"], keep=False)
        if twice.any():
            raise ValidationError(f"{source}: experiment {name}: unit(s) in two arms: "
                                  f"{_names(units.loc[twice, 'unit_id'])}")


def _overlaps(new: pd.DataFrame, old: pd.DataFrame, source: str) -> None:
    """Refuse a unit that two experiments with overlapping windows both assign."""
    if old.empty:
        return
    both = new.merge(old, on=["unit_type", "unit_id"], suffixes=("", "_old"))
    both = both[(both["experiment"] != both["experiment_old"])
                & (both["start"] < both["end_old"]) & (both["start_old"] < both["end"])]
    if len(both):
        pairs = _names(both["experiment"] + " / " + both["experiment_old"])
        raise ValidationError(f"{source}: overlapping experiments ({pairs}) assign the same "
                              f"unit(s) in overlapping windows: {_names(both['unit_id'])}")


def _stored(lake: Lake) -> pd.DataFrame:
    cur = lake.cursor()
    try:
        frame = cur.execute("SELECT * FROM assignments").df()
    finally:
        cur.close()
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _content_name(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy()
                            .tobytes()).hexdigest()[:16]
    return f"assignments-{digest}"


def import_assignments(lake: Lake, frame: pd.DataFrame, registered: Sequence[str], *,
                       source: str = "assignments") -> list[ImportedExperiment]:
    """Check every experiment against the file and the lake, then publish one file per
    experiment. Nothing is written unless everything passes."""
    new = normalise_assignments(frame, registered, source)
    done: list[ImportedExperiment] = []
    with lake.store.lock("assignments"):
        lake.refresh(force=True)
        old = _stored(lake)
        _overlaps(new, old, source)
        staged = []
        for name, exp in new.groupby("experiment", sort=True):
            exp = exp.reset_index(drop=True)
            rel = f"assignments/{model_key(str(name))}/{_content_name(exp)}.parquet"
            present = {f.path for f in lake.files("assignments")}
            mine = {p for p in present if p.startswith(f"assignments/{model_key(str(name))}/")}
            if mine and mine != {rel}:
                raise ValidationError(f"{source}: experiment {name} is already imported with "
                                      "other assignments; import it under a new name")
            staged.append((rel, exp, rel in mine))
            done.append(ImportedExperiment(str(name), len(exp), tuple(sorted(exp["arm"].unique())),
                                           rel, rel in mine))
        for rel, exp, present in staged:
            if not present:
                lake.publish(rel, pa.Table.from_pandas(exp, preserve_index=False))
    lake.refresh(force=True)
    return done


# --------------------------------------------------------------------------- reading


def experiment_names(con) -> list[str]:
    frame = fetch_df(con, "SELECT DISTINCT experiment FROM assignments ORDER BY experiment")
    return [str(v) for v in frame["experiment"]]


def experiment_windows(con) -> pd.DataFrame:
    """Per experiment and arm: model, threshold, start, end and the units assigned."""
    frame = fetch_df(con, "SELECT experiment, arm, any_value(model) AS model, "
                     "any_value(threshold) AS threshold, min(start) AS start, max(\"end\") AS "
                     "\"end\", count(*) AS units, any_value(unit_type) AS unit_type "
                     "FROM assignments GROUP BY experiment, arm ORDER BY experiment, arm")
    for col in ("start", "end"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def experiment_rows(con, experiment: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """Every transaction an experiment covers, in its window: arm, account, event time,
    amount, the arm model's stored score and the label known as of `as_of` (NaN: none)."""
    amount = quote_ident(AMOUNT_COLUMN)
    picked = ("a.arm, a.model, a.threshold, t.transaction_id, t.account_id, t.event_time, "
              f"t.{amount} AS amount_usd")
    window = 't.event_time >= a.start AND t.event_time < a."end"'
    sql = f"""
        WITH a AS (SELECT * FROM assignments WHERE experiment = ?),
        hits AS (
          SELECT {picked} FROM a JOIN transactions t
            ON a.unit_type = 'account' AND t.account_id = a.unit_id WHERE {window}
          UNION ALL
          SELECT {picked} FROM a JOIN transactions t
            ON a.unit_type = 'transaction' AND t.transaction_id = a.unit_id WHERE {window})
        SELECT h.*, s.score, l.is_fraud, l.label_time FROM hits h
        LEFT JOIN scores s ON s.transaction_id = h.transaction_id AND s.model_id = h.model
        LEFT JOIN labels l ON l.transaction_id = h.transaction_id AND l.label_time <= ?
        ORDER BY h.event_time, h.transaction_id"""
    frame = fetch_df(con, sql, [experiment, as_of])
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True)
    frame["label_time"] = pd.to_datetime(frame["label_time"], utc=True)
    for col in ("transaction_id", "account_id", "arm", "model"):
        frame[col] = frame[col].astype(str)
    return frame
