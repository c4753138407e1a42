"""Fill the SHAP store for a model: scored transactions in chunks, each additivity-checked."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import numpy as np

from data_access import shap_store
from data_access.shap_store import Cohort
from data_access.warehouse import quote_ident
from explainers.frames import explain_frame
from explainers.model import LoadedModel
from jobs.progress import progress
from jobs.scoring import check_warehouse_features, feature_select


def fill_store(con: duckdb.DuckDBPyConnection, model: LoadedModel, *,
               since: date | datetime | None = None, until: date | datetime | None = None,
               sample: int | None = None, seed: int = 7, chunk_rows: int = 50_000,
               fail_after_chunks: int | None = None) -> int:
    """Explain scored transactions not yet stored; resumable and idempotent. Returns rows
    written."""
    check_warehouse_features(con, model.schema)
    table = shap_store.ensure_table(con, model.key, model.schema)
    where, params = Cohort(since=since, until=until).where([])
    base_sql = (f"FROM transactions t JOIN scores sc ON sc.transaction_id = t.transaction_id "
                f"AND sc.model_id = ? WHERE {where} AND NOT EXISTS (SELECT 1 FROM "
                f"{quote_ident(table)} x WHERE x.transaction_id = t.transaction_id)")
    all_params: list[object] = [model.key, *params]
    order = "t.transaction_id"
    limit = ""
    if sample is not None:
        # a seeded sample that stays the same sample when the job is resumed
        stored = con.execute(f"SELECT count(*) FROM {quote_ident(table)}").fetchall()[0][0]
        remaining = max(int(sample) - stored, 0)
        order = "hash(t.transaction_id || ?), t.transaction_id"
        all_params.append(str(seed))
        limit = f" LIMIT {remaining:d}"
    todo = con.execute(f"SELECT count(*) FROM (SELECT t.transaction_id {base_sql} "
                       f"ORDER BY {order}{limit})", all_params).fetchall()[0][0]
    if todo == 0:
        return 0
    reader_cur = con.cursor()
    reader = reader_cur.sql(
        f"SELECT t.transaction_id, t.event_time, sc.score, {feature_select(model.schema)} "
        f"{base_sql} "
        f"ORDER BY {order}{limit}", params=all_params).to_arrow_reader(chunk_rows)
    bar = progress(todo, f"explain {model.key}")
    written = 0
    try:
        for i, batch in enumerate(reader):
            if fail_after_chunks is not None and i >= fail_after_chunks:
                raise RuntimeError("simulated crash in the middle of explaining")
            frame = batch.to_pandas()
            expl = explain_frame(model, frame)
            written += shap_store.write_chunk(
                con, table, list(expl.feature_names), frame, expl.base_value,
                np.asarray(expl.values), expl.flagged)
            bar.update(len(frame))
    finally:
        bar.close()
        reader_cur.close()
    return written
