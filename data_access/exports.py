"""Export writers: formula-safe cells (OWASP CSV injection) and atomic, hashed file writes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from explainers.errors import ExportError

__all__ = [
    "DANGEROUS_PREFIXES",
    "ExportResult",
    "atomic_write_bytes",
    "csv_bytes",
    "neutralise_cell",
    "parquet_bytes",
    "safe_frame",
    "write_csv",
    "write_parquet",
]

# Characters that make a spreadsheet treat a cell as a formula (OWASP), plus their full-width
# forms, which some spreadsheet applications also accept.
DANGEROUS_PREFIXES = frozenset("=+-@\t\r" + "\uff1d\uff0b\uff0d\uff20")

BeforeCommit = Callable[["ExportResult"], None]


@dataclass(frozen=True)
class ExportResult:
    """A finished export: where it is, its SHA-256, how many rows (None for raw bytes), size."""

    path: str
    sha256: str
    rows: int | None
    bytes: int


def neutralise_cell(value: str) -> str:
    """Prefix a text cell with ``'`` when a spreadsheet could read it as a formula.

    A cell is dangerous when its first character, or its first character after leading
    whitespace, is one of ``= + - @``, tab or carriage return.
    """
    if not value:
        return value
    stripped = value.lstrip()
    if value[0] in DANGEROUS_PREFIXES or (stripped and stripped[0] in DANGEROUS_PREFIXES):
        return "'" + value
    return value


def _neutralise_any(value: Any) -> Any:
    return neutralise_cell(value) if isinstance(value, str) else value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of ``df`` with every text cell and column name neutralised; numbers untouched."""
    out = df.copy()
    for i, (_, series) in enumerate(out.items()):
        dtype = series.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cats = [_neutralise_any(c) for c in dtype.categories]
            if len(set(cats)) == len(cats):
                new = series.cat.rename_categories(cats)
            else:  # two categories collapse into one: fall back to plain text
                new = series.astype(object).map(_neutralise_any)
        elif pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype):
            new = series.map(_neutralise_any, na_action="ignore").astype(dtype)
        else:
            continue
        out.isetitem(i, new)
    out.columns = [_neutralise_any(c) for c in out.columns]
    return out


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable; best effort where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(
    path: str | os.PathLike[str],
    data: bytes,
    rows: int | None,
    before_commit: BeforeCommit | None,
) -> ExportResult:
    final = os.path.abspath(os.fspath(path))
    directory = os.path.dirname(final)
    if not os.path.isdir(directory):
        raise ExportError(f"Export folder does not exist: {directory}")
    if os.path.isdir(final):
        raise ExportError(f"Export path is a folder, not a file: {final}")
    result = ExportResult(final, hashlib.sha256(data).hexdigest(), rows, len(data))
    tmp: str | None = None
    try:
        try:
            fd, tmp = tempfile.mkstemp(
                dir=directory, prefix=f".{os.path.basename(final)}.", suffix=".tmp"
            )
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise ExportError(f"Could not write export {final}: {exc}") from exc
        if before_commit is not None:
            before_commit(result)  # e.g. the audit record; if it raises, nothing is published
        try:
            os.replace(tmp, final)
        except OSError as exc:
            raise ExportError(f"Could not move export into place at {final}: {exc}") from exc
        tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    fsync_dir(directory)
    return result


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes,
    before_commit: BeforeCommit | None = None,
) -> str:
    """Write ``data`` to ``path`` all-or-nothing (temp file, fsync, rename); return its SHA-256.

    ``before_commit`` runs once the temp file is complete and hashed, before the rename; if it
    raises, the temp file is removed, ``path`` is untouched and the exception propagates.
    """
    return _commit(path, data, None, before_commit).sha256


def csv_bytes(df: pd.DataFrame) -> bytes:
    """The exact bytes :func:`write_csv` writes: neutralised, UTF-8, ``\\n``, no index.

    Every non-numeric field is quoted (OWASP), which also keeps a bare ``\\r`` inside a cell
    from starting a new row.
    """
    text = safe_frame(df).to_csv(index=False, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    return text.encode("utf-8")


def write_csv(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    before_commit: BeforeCommit | None = None,
) -> ExportResult:
    """Write ``df`` as a formula-safe CSV, atomically."""
    return _commit(path, csv_bytes(df), len(df), before_commit)


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as Parquet bytes (pyarrow), with text neutralised like the CSV export."""
    try:
        table = pa.Table.from_pandas(safe_frame(df), preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ExportError(f"Could not convert the table to Parquet: {exc}") from exc
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_parquet(
    df: pd.DataFrame,
    path: str | os.PathLike[str],
    before_commit: BeforeCommit | None = None,
) -> ExportResult:
    """Write ``df`` as a formula-safe Parquet file, atomically."""
    return _commit(path, parquet_bytes(df), len(df), before_commit)
