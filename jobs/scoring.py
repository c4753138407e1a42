"""Score the lake's transactions with a registered model: one scores file per transactions file.

Each output file is published whole and named after its source, so a killed job leaves whole
files only, a rerun resumes where it stopped, and re-running never duplicates a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.lake import Lake, LakeFile, partition_path
from data_access.lake_store import LakeStore
from data_access.warehouse import quote_ident, table_columns
from explainers.errors import ValidationError, WarehouseError
from explainers.model import LoadedModel, sigmoid
from explainers.schema import FeatureSchema
from jobs.progress import progress

_NUMERIC_SQL = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "BOOLEAN",
                "HUGEINT", "DECIMAL", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


def check_warehouse_features(con: duckdb.DuckDBPyConnection, schema: FeatureSchema) -> None:
    """The lake must hold every feature with a compatible type, or nothing is scored."""
    cols = table_columns(con, "transactions")
    missing = [f.name for f in schema.features if f.name not in cols]
    mistyped = []
    for f in schema.features:
        sql_type = cols.get(f.name)
        if sql_type is None:
            continue
        numeric = sql_type.startswith(_NUMERIC_SQL)
        if not f.is_categorical and not numeric:
            mistyped.append(f"{f.name} (model expects {f.dtype}, the lake has {sql_type})")
    problems = []
    if missing:
        problems.append(f"the lake's transactions lack feature column(s): {', '.join(missing)}")
    if mistyped:
        problems.append(f"mistyped: {', '.join(mistyped)}")
    if problems:
        raise ValidationError("The model's feature schema does not match the lake: "
                              + "; ".join(problems))


def feature_select(schema: FeatureSchema) -> str:
    return ", ".join(quote_ident(n) for n in schema.names)


@dataclass(frozen=True)
class SourceFile:
    """A transactions file and where its derived file for one model goes."""

    source: LakeFile
    day: str
    batch: str

    def output(self, dataset: str, model_id: str) -> str:
        return partition_path(dataset, self.day, self.batch, model_id)


def source_files(lake: Lake, since: date | datetime | None = None,
                 until: date | datetime | None = None) -> list[SourceFile]:
    """Transactions files whose event day lies in [since, until)."""
    lo = None if since is None else pd.Timestamp(since).strftime("%Y-%m-%d")
    hi = None if until is None else pd.Timestamp(until).strftime("%Y-%m-%d")
    out = []
    for f in lake.files("transactions"):
        parts = f.path.split("/")
        day = parts[1][len("date="):] if len(parts) == 3 and parts[1].startswith("date=") else ""
        if not day or (lo and day < lo) or (hi and day >= hi):
            continue
        out.append(SourceFile(f, day, parts[2][: -len(".parquet")]))
    return out


def read_source(lake: Lake | LakeStore, src: SourceFile, columns: list[str]) -> pd.DataFrame:
    """The named columns of one transactions file; a feature the file lacks reads as missing.
    A file that cannot be read stops the job and is named."""
    store = lake.store if isinstance(lake, Lake) else lake
    try:
        present = set(store.read_schema(src.source.path).names)
        table = store.read_table(src.source.path, [c for c in columns if c in present])
    except (OSError, pa.ArrowException) as exc:
        raise WarehouseError(f"Cannot read {store.uri}/{src.source.path}: {exc}") from None
    frame = table.to_pandas()
    for c in columns:
        if c not in frame.columns:
            frame[c] = np.nan
    return frame[columns]


def pending(lake: Lake, model_id: str, dataset: str, sources: list[SourceFile]
            ) -> list[SourceFile]:
    done = {f.path for f in lake.files(dataset if dataset != "shap" else f"shap/{model_id}")}
    return [s for s in sources if s.output(dataset, model_id) not in done]


def score_plan(lake: Lake, model: LoadedModel) -> list[SourceFile]:
    """The transactions files this model has not scored yet (features checked first)."""
    lake.refresh(force=True)
    check_warehouse_features(lake.con, model.schema)
    return pending(lake, model.key, "scores", source_files(lake))


def score_file(store: Lake | LakeStore, model: LoadedModel, src: SourceFile,
               scored_at: datetime) -> pa.Table:
    """One transactions file's scores: the unit of work of every engine (same input, same
    table, so the same bytes once published)."""
    frame = read_source(store, src, ["transaction_id", *model.schema.names])
    x = model.prepare(frame)
    margin = model.margin(x)
    n = len(frame)
    return pa.table({
        "model_id": pa.array(np.full(n, model.key)),
        "transaction_id": pa.array(frame["transaction_id"].astype(str).to_numpy()),
        "score": pa.array(sigmoid(margin)), "margin": pa.array(margin),
        "flagged": pa.array(np.asarray(x.flagged, dtype=bool)),
        "scored_at": pa.array(pd.Series([scored_at] * n, dtype="datetime64[us, UTC]"))})


def score_transactions(lake: Lake, model: LoadedModel, *, fail_after_files: int | None = None,
                       on_file: Callable[[int], None] | None = None,
                       scored_at: datetime | None = None) -> int:
    """Score every transactions file this model has not scored yet; returns rows scored.
    `scored_at` (default: now, UTC) is stamped on every row of the run."""
    todo = score_plan(lake, model)
    if not todo:
        return 0
    scored_at = scored_at or datetime.now(UTC)
    bar = progress(len(todo), f"score {model.key}", unit="files")
    done = 0
    try:
        for i, src in enumerate(todo):
            if fail_after_files is not None and i >= fail_after_files:
                raise RuntimeError("simulated crash in the middle of scoring")
            out = score_file(lake, model, src, scored_at)
            lake.publish(src.output("scores", model.key), out)
            done += out.num_rows
            bar.update(1)
            if on_file:
                on_file(done)
    finally:
        bar.close()
        lake.refresh(force=True)
    return done
