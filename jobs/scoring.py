"""Score warehouse transactions with a registered model, in chunks, all or nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.warehouse import quote_ident, run_sql, table_columns, transaction
from explainers.errors import ValidationError
from explainers.model import LoadedModel, sigmoid
from explainers.schema import FeatureSchema
from jobs.progress import progress

_NUMERIC_SQL = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "FLOAT", "BOOLEAN",
                "HUGEINT", "DECIMAL", "UBIGINT", "UINTEGER", "USMALLINT", "UTINYINT")


def check_warehouse_features(con: duckdb.DuckDBPyConnection, schema: FeatureSchema) -> None:
    """The warehouse must hold every feature with a compatible type, or nothing is scored."""
    cols = table_columns(con, "transactions")
    missing = [f.name for f in schema.features if f.name not in cols]
    mistyped = []
    for f in schema.features:
        sql_type = cols.get(f.name)
        if sql_type is None:
            continue
        numeric = sql_type.startswith(_NUMERIC_SQL)
        if not f.is_categorical and not numeric:
            mistyped.append(f"{f.name} (model expects {f.dtype}, warehouse has {sql_type})")
    problems = []
    if missing:
        problems.append(f"warehouse lacks feature column(s): {', '.join(missing)}")
    if mistyped:
        problems.append(f"mistyped: {', '.join(mistyped)}")
    if problems:
        raise ValidationError("The model's feature schema does not match the warehouse: "
                              + "; ".join(problems))


def feature_select(schema: FeatureSchema) -> str:
    return ", ".join(quote_ident(n) for n in schema.names)


def score_transactions(con: duckdb.DuckDBPyConnection, model: LoadedModel, *,
                       chunk_rows: int = 250_000,
                       fail_after_chunks: int | None = None,
                       on_chunk: Callable[[int], None] | None = None) -> int:
    """Score every transaction this model has not scored yet. One transaction: a failure
    anywhere leaves no new score rows. Returns the number of rows scored."""
    check_warehouse_features(con, model.schema)
    model_id = model.key
    todo = con.execute(
        "SELECT count(*) FROM transactions t WHERE NOT EXISTS (SELECT 1 FROM scores s "
        "WHERE s.model_id = ? AND s.transaction_id = t.transaction_id)",
        [model_id]).fetchall()[0][0]
    if todo == 0:
        return 0
    scored_at = datetime.now(UTC)
    bar = progress(todo, f"score {model_id}")
    done = 0
    reader_cur = con.cursor()  # streams from a snapshot while `con` writes
    with transaction(con):
        reader = reader_cur.sql(
            f"SELECT transaction_id, {feature_select(model.schema)} FROM transactions t "
            "WHERE NOT EXISTS (SELECT 1 FROM scores s WHERE s.model_id = ? "
            "AND s.transaction_id = t.transaction_id) ORDER BY transaction_id",
            params=[model_id]).to_arrow_reader(chunk_rows)
        for i, batch in enumerate(reader):
            if fail_after_chunks is not None and i >= fail_after_chunks:
                raise RuntimeError("simulated crash in the middle of scoring")
            frame = batch.to_pandas()
            x = model.prepare(frame)
            margin = model.margin(x)
            out = pa.table({
                "model_id": pa.array(np.full(len(frame), model_id)),
                "transaction_id": pa.array(frame["transaction_id"].astype(str)),
                "score": pa.array(sigmoid(margin)), "margin": pa.array(margin),
                "flagged": pa.array(x.flagged),
                "scored_at": pa.array(pd.Series([scored_at] * len(frame)))})
            con.register("staging_scores", out)
            run_sql(con, "INSERT INTO scores SELECT * FROM staging_scores")
            con.unregister("staging_scores")
            done += len(frame)
            bar.update(len(frame))
            if on_chunk:
                on_chunk(done)
    bar.close()
    reader_cur.close()
    return done
