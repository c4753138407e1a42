"""Fill the SHAP store for a model: one SHAP file per scored transactions file, each
additivity-checked before it is published."""

from __future__ import annotations

import time
from datetime import date, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from data_access import shap_store
from data_access.lake import Lake
from data_access.lake_store import LakeStore
from explainers.errors import WarehouseError
from explainers.frames import explain_frame
from explainers.model import LoadedModel
from jobs.progress import progress
from jobs.scoring import SourceFile, check_warehouse_features, pending, read_source, source_files

_HASH_SPACE = 1_000_000


def sampled(ids: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """A seeded per-row sample: the same row is in or out whatever file or run it is in."""
    if fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    keyed = ids.astype(str) + f"#{seed}"
    bucket = pd.util.hash_pandas_object(keyed, index=False).to_numpy() % _HASH_SPACE
    return bucket < int(fraction * _HASH_SPACE)


def _scored(store: Lake | LakeStore, model: LoadedModel, src: SourceFile) -> pd.DataFrame:
    store = store.store if isinstance(store, Lake) else store
    frame = read_source(store, src, ["transaction_id", "event_time", *model.schema.names])
    path = src.output("scores", model.key)
    try:
        scores = store.read_table(path, ["transaction_id", "score"]).to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise WarehouseError(f"Cannot read {store.uri}/{path}: {exc}") from None
    return frame.merge(scores, on="transaction_id", how="inner", validate="one_to_one")


def explain_plan(lake: Lake, model: LoadedModel, *, since: date | datetime | None = None,
                 until: date | datetime | None = None, sample: int | None = None
                 ) -> tuple[list[SourceFile], float]:
    """The scored files of the window not yet explained, and the per-row sample fraction
    that keeps about `sample` rows of the window (1.0 = every row)."""
    lake.refresh(force=True)
    check_warehouse_features(lake.con, model.schema)
    sources = source_files(lake, since, until)
    scored = {f.path for f in lake.files("scores")}
    sources = [s for s in sources if s.output("scores", model.key) in scored]
    todo = pending(lake, model.key, "shap", sources)
    fraction = 1.0
    if todo and sample is not None:
        total = sum(_row_count(lake, s) for s in sources)
        fraction = min(1.0, sample / total) if total else 1.0
    return todo, fraction


def explain_file(store: Lake | LakeStore, model: LoadedModel, src: SourceFile,
                 fraction: float, seed: int) -> pa.Table | None:
    """One scored file's SHAP table (its sampled rows), None when no row is sampled: the unit
    of work of every engine, explained by `explain_frame` like every other path."""
    frame = _scored(store, model, src)
    frame = frame[sampled(frame["transaction_id"], fraction, seed)]
    if frame.empty:
        return None
    expl = explain_frame(model, frame)
    return shap_store.shap_file(frame, list(expl.feature_names), expl.base_value,
                                np.asarray(expl.values), expl.flagged)


def fill_store(lake: Lake, model: LoadedModel, *, since: date | datetime | None = None,
               until: date | datetime | None = None, sample: int | None = None, seed: int = 7,
               fail_after_files: int | None = None) -> int:
    """Explain scored transactions files not yet stored; resumable and idempotent. `sample`
    keeps about that many rows of the window, chosen per row by a seeded hash. Returns rows
    written."""
    todo, fraction = explain_plan(lake, model, since=since, until=until, sample=sample)
    if not todo:
        return 0
    bar = progress(len(todo), f"explain {model.key}", unit="files")
    written, t0 = 0, time.perf_counter()
    try:
        for i, src in enumerate(todo):
            if fail_after_files is not None and i >= fail_after_files:
                raise RuntimeError("simulated crash in the middle of explaining")
            table = explain_file(lake, model, src, fraction, seed)
            if table is None:
                continue
            lake.publish(src.output("shap", model.key), table)
            written += table.num_rows
            bar.set_postfix_str(f"{written / max(time.perf_counter() - t0, 1e-9):,.0f} rows/s")
            bar.update(1)
    finally:
        bar.close()
        lake.refresh(force=True)
    return written


def _row_count(lake: Lake, src: SourceFile) -> int:
    import pyarrow.parquet as pq

    with lake.store.fs.open_input_file(lake.store.full(src.source.path)) as fh:
        return pq.ParquetFile(fh).metadata.num_rows
