"""The warehouse as the app and the CLI see it: DuckDB views over the lake, parameterised SQL.

Readers get the lake's hardened in-memory connection (`open_reader`); no file is ever locked,
so imports, scoring and explaining run while the app serves. Writers publish whole Parquet
files (`import_frames` here, scores and SHAP in `jobs/`). Identifiers only ever come from
`quote_ident` over names checked against an allowlist.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from data_access.lake import Lake, cursor_for, open_lake, partition_path
from explainers.errors import ValidationError, WarehouseError

CORE_COLUMNS = ("transaction_id", "account_id", "event_time")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Import limits: one refusal line names the file, column and row.
MAX_COLUMNS = 512
MAX_CELL_BYTES = 64 * 1024
_ALLOWED_KINDS = ("b", "i", "u", "f", "M", "O", "U", "S")


def run_sql(con: duckdb.DuckDBPyConnection, sql: str, params: Iterable[object] = ()) -> None:
    """Execute a statement and drain its result, so the connection is free for the next."""
    con.execute(sql, list(params)).fetchall()


def quote_ident(name: str) -> str:
    """Quote an identifier that has already passed the allowlist pattern."""
    if not _IDENT.match(name):
        raise ValidationError(f"{name!r} is not an allowed column or table name")
    return f'"{name}"'


def workspace_dir(workspace: str | os.PathLike[str] | None = None) -> Path:
    return Path(workspace or os.environ.get("FRAUDLENS_WORKSPACE") or "workspace")


def open_lake_for(workspace: str | os.PathLike[str] | None = None, *,
                  create: bool = False) -> Lake:
    """The workspace's lake; a missing workspace folder is named as such and never created
    by a reader."""
    folder = workspace_dir(workspace)
    if not folder.is_dir() and not create and not os.environ.get("FRAUDLENS_LAKE"):
        raise WarehouseError(f"The workspace folder {folder} does not exist; check --workspace "
                             "or FRAUDLENS_WORKSPACE, or build one with `fraudlens demo`")
    return open_lake(folder, create=create)


def open_reader(workspace: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A hardened connection whose views are the lake's datasets; never creates anything."""
    return open_lake_for(workspace).con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """All or nothing on one connection: a failure inside rolls back."""
    run_sql(con, "BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        run_sql(con, "ROLLBACK")
        raise
    run_sql(con, "COMMIT")


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables").fetchall()}


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()
    return {r[0]: r[1] for r in rows}


@dataclass(frozen=True)
class ImportResult:
    transactions_added: int
    transactions_skipped: int
    labels_added: int


def _refuse(source: str, column: str, row: int | None, problem: str) -> ValidationError:
    where = f", row {row + 1}" if row is not None else ""
    return ValidationError(f"{source}: column {column!r}{where}: {problem}")


def check_limits(df: pd.DataFrame, source: str) -> None:
    """Documented import limits: at most MAX_COLUMNS columns, plain scalar types, and text
    cells of at most MAX_CELL_BYTES bytes."""
    if len(df.columns) > MAX_COLUMNS:
        raise ValidationError(f"{source}: {len(df.columns)} columns; at most {MAX_COLUMNS} "
                              "are accepted")
    for col in df.columns:
        series = df[col]
        if isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(
                series.dtype) or series.dtype.kind == "O":
            text = series.dropna()
            bad = text.map(lambda v: not isinstance(v, str | int | float | bool | np.generic |
                                                    pd.Timestamp))
            if bad.any():
                row = int(np.flatnonzero(series.index.isin(text.index[bad.to_numpy()]))[0])
                raise _refuse(source, str(col), row, "nested or non-scalar values are not "
                              "accepted; flatten the column first")
            lengths = text.astype(str).str.len()
            if len(lengths) and int(lengths.max()) > MAX_CELL_BYTES:
                row = int(np.flatnonzero(series.index == lengths.idxmax())[0])
                raise _refuse(source, str(col), row, f"a text cell of {int(lengths.max()):,} "
                              f"characters; at most {MAX_CELL_BYTES:,} are accepted")
        elif series.dtype.kind not in _ALLOWED_KINDS and not isinstance(
                series.dtype, pd.DatetimeTZDtype) and not pd.api.types.is_extension_array_dtype(
                series.dtype):
            raise _refuse(source, str(col), None, f"type {series.dtype} is not accepted")


def _timestamps(series: pd.Series, source: str, column: str) -> pd.Series:
    parsed = pd.to_datetime(series, utc=True, errors="coerce", format="mixed")
    bad = parsed.isna() & series.notna()
    if series.isna().any() or bad.any():
        row = int(np.flatnonzero((bad | series.isna()).to_numpy())[0])
        raise _refuse(source, column, row, f"{series.iloc[row]!r} is not a timestamp")
    return parsed


def normalise_transactions(df: pd.DataFrame, source: str = "transactions") -> pd.DataFrame:
    missing = [c for c in CORE_COLUMNS if c not in df.columns]
    if missing:
        raise ValidationError(f"{source}: missing required column(s): {', '.join(missing)}")
    bad = [c for c in df.columns if not _IDENT.match(str(c))]
    if bad:
        raise ValidationError(f"{source}: column names must be plain identifiers: "
                              f"{', '.join(map(str, bad))}")
    check_limits(df, source)
    out = df.copy()
    out["transaction_id"] = out["transaction_id"].astype("string")
    out["account_id"] = out["account_id"].astype("string")
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype("string")  # stored as text, levels live in schemas
    out["event_time"] = _timestamps(out["event_time"], source, "event_time")
    if out["transaction_id"].isna().any():
        row = int(np.flatnonzero(out["transaction_id"].isna().to_numpy())[0])
        raise _refuse(source, "transaction_id", row, "empty value")
    dup = out["transaction_id"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise _refuse(source, "transaction_id", row,
                      f"{out['transaction_id'].iloc[row]!r} appears twice in the file")
    return out


def normalise_labels(df: pd.DataFrame, source: str = "labels") -> pd.DataFrame:
    missing = [c for c in ("transaction_id", "is_fraud", "label_time") if c not in df.columns]
    if missing:
        raise ValidationError(f"{source}: missing required column(s): {', '.join(missing)}")
    out = df[["transaction_id", "is_fraud", "label_time"]].copy()
    check_limits(out, source)
    out["transaction_id"] = out["transaction_id"].astype("string")
    ok = out["is_fraud"].isin([0, 1])
    if not ok.all():
        row = int(np.flatnonzero(~ok.to_numpy())[0])
        raise _refuse(source, "is_fraud", row, f"{out['is_fraud'].iloc[row]!r} is not 0 or 1")
    out["is_fraud"] = out["is_fraud"].astype("int8")
    out["label_time"] = _timestamps(out["label_time"], source, "label_time")
    return out.drop_duplicates("transaction_id", keep="first")


def _batch_name(kind: str, frame: pd.DataFrame) -> str:
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy()
                            .tobytes()).hexdigest()[:16]
    return f"{kind}-{digest}"


def _new_rows(lake: Lake, frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """The rows of `frame` whose transaction_id the dataset does not hold yet."""
    cur = lake.cursor()
    try:
        cur.register("staged_ids", pa.table({"transaction_id": pa.array(
            frame["transaction_id"].astype(str).to_numpy())}))
        known = {r[0] for r in cur.execute(
            f"SELECT d.transaction_id FROM {quote_ident(dataset)} d "
            "SEMI JOIN staged_ids s USING (transaction_id)").fetchall()}
    finally:
        cur.close()
    return frame[~frame["transaction_id"].astype(str).isin(known)]


def _publish_by_day(lake: Lake, dataset: str, frame: pd.DataFrame, time_col: str,
                    kind: str) -> None:
    days = frame[time_col].dt.strftime("%Y-%m-%d")
    for day, part in frame.groupby(days, sort=True):
        part = part.sort_values("transaction_id", kind="mergesort")
        table = pa.Table.from_pandas(part, preserve_index=False)
        lake.publish(partition_path(dataset, str(day), _batch_name(kind, part)), table)


def import_frames(lake: Lake, transactions: pd.DataFrame | None,
                  labels: pd.DataFrame | None = None, *, source: str = "input") -> ImportResult:
    """Publish transactions (and labels) the lake does not hold yet, one file per day.

    Everything is validated before the first file lands; file names are content hashes, so a
    re-run replaces its own files and never duplicates rows."""
    txns = normalise_transactions(transactions, source) if transactions is not None else None
    labs = normalise_labels(labels, source) if labels is not None else None
    added = skipped = labels_added = 0
    if txns is not None:
        with lake.store.lock("transactions"):
            lake.refresh(force=True)
            fresh = _new_rows(lake, txns, "transactions")
            _publish_by_day(lake, "transactions", fresh, "event_time", "import")
        added, skipped = len(fresh), len(txns) - len(fresh)
    if labs is not None:
        with lake.store.lock("labels"):
            lake.refresh(force=True)
            fresh_labels = _new_rows(lake, labs, "labels")
            _publish_by_day(lake, "labels", fresh_labels, "label_time", "labels")
        labels_added = len(fresh_labels)
    lake.refresh(force=True)
    return ImportResult(added, skipped, labels_added)


def fetch_df(con: duckdb.DuckDBPyConnection, sql: str,
             params: Iterable[object] = ()) -> pd.DataFrame:
    """Run a parameterised query on a fresh cursor of its own and return a frame."""
    cur = cursor_for(con)
    try:
        return cur.execute(sql, list(params)).df()
    except duckdb.Error as exc:
        raise WarehouseError(f"Warehouse query failed: {exc}") from None
    finally:
        cur.close()
