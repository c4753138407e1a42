"""The lake: Parquet datasets under a workspace (or on S3), queried by DuckDB through views.

Layout, relative to the lake root (partitioned so that common reads prune files):

    transactions/date=YYYY-MM-DD/<batch>.parquet          by event date
    labels/date=YYYY-MM-DD/<batch>.parquet                by the day the labels arrived
    scores/model=<key>/date=YYYY-MM-DD/<batch>.parquet    one file per transactions file
    shap/model=<key>/date=YYYY-MM-DD/<batch>.parquet      one file per transactions file
    models/models.parquet                                 the registry's manifests, mirrored
    ground_truth_typologies/<batch>.parquet               synthetic truth; nothing reads it
    ground_truth_experiments/<key>.parquet                a planted experiment's true effect
    assignments/<experiment-key>/<batch>.parquet          experiment arms (data_access.assignments)

`<key>` is `model_key()`, an injective encoding, so no two models can share a folder or a view.
No reader holds a lock: a `Lake` lists the finished files, checks each new file's schema once
(a wrong one is refused by name, the rest still serve) and points its views at them. The
listing's fingerprint is the lake's data version, which caches put in their keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads

from data_access.lake_store import LakeFile, LakeStore, LakeUnavailable, open_store
from explainers.errors import WarehouseError

__all__ = ["DATASETS", "SHAP_FIXED", "Lake", "LakeSnapshot", "LakeUnavailable", "cursor_for",
           "model_key", "open_lake", "partition_path", "shap_view"]

HARDENED = {
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "python_enable_replacements": False,
}
_LOG = logging.getLogger(__name__)
REFRESH_S = 2.0  # a reader lists the lake at most this often; new data shows within seconds
STALE_S = 3 * REFRESH_S  # a followed lake's requests list it themselves only when this old

_STRING, _TIME, _FLOAT, _INT, _BOOL = "string", "timestamp", "float", "integer", "boolean"
DATASETS: dict[str, dict[str, str]] = {
    "transactions": {"transaction_id": _STRING, "account_id": _STRING, "event_time": _TIME},
    "labels": {"transaction_id": _STRING, "is_fraud": _INT, "label_time": _TIME},
    "scores": {"model_id": _STRING, "transaction_id": _STRING, "score": _FLOAT,
               "margin": _FLOAT, "flagged": _BOOL, "scored_at": _TIME},
    "models": {"model_id": _STRING, "name": _STRING, "version": _STRING, "framework": _STRING,
               "stage": _STRING, "sha256": _STRING, "roc_auc": _FLOAT, "pr_auc": _FLOAT,
               "manifest": _STRING, "synced_at": _TIME},
    "ground_truth_typologies": {"transaction_id": _STRING},
    "assignments": {"experiment": _STRING, "unit_id": _STRING, "unit_type": _STRING,
                    "arm": _STRING, "model": _STRING, "threshold": _FLOAT, "start": _TIME,
                    "end": _TIME},
}
SHAP_FIXED = {"transaction_id": _STRING, "event_time": _TIME, "score": _FLOAT,
              "base_value": _FLOAT, "flagged": _BOOL}
_SQL_TYPE = {_STRING: "VARCHAR", _TIME: "TIMESTAMPTZ", _FLOAT: "DOUBLE", _INT: "TINYINT",
             _BOOL: "BOOLEAN"}
_KIND_CHECK = {
    _STRING: lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
    _TIME: pa.types.is_timestamp,
    _FLOAT: lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    _INT: pa.types.is_integer,
    _BOOL: pa.types.is_boolean,
}
_KEEP = set("abcdefghijklmnopqrstuvwxyz0123456789")


def model_key(model_id: str) -> str:
    """Injective, case-safe encoding of a model id for folder and view names: lower-case
    letters and digits stay, every other character becomes `_` and its UTF-8 bytes in hex."""
    out = []
    for ch in model_id:
        out.append(ch if ch in _KEEP else "".join(f"_{b:02x}" for b in ch.encode()))
    return "".join(out)


def model_from_key(key: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(key):
        if key[i] == "_":
            raw.append(int(key[i + 1:i + 3], 16))
            i += 3
        else:
            raw.extend(key[i].encode())
            i += 1
    return raw.decode()


def shap_view(model_id: str) -> str:
    return f"shap__{model_key(model_id)}"


def partition_path(dataset: str, day: str, batch: str, model_id: str | None = None) -> str:
    model = f"model={model_key(model_id)}/" if model_id is not None else ""
    return f"{dataset}/{model}date={day}/{batch}.parquet"


@dataclass(frozen=True)
class LakeSnapshot:
    """What the lake held at one listing: files per view, SHAP features, refused files."""

    version: str
    files: Mapping[str, tuple[LakeFile, ...]]
    shap_features: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    refused: tuple[tuple[str, str], ...] = ()


_SCHEMAS: dict[tuple[str, str, int, int], pa.Schema | str] = {}
_SCHEMAS_LOCK = threading.Lock()


def _schema_problem(schema: pa.Schema, required: Mapping[str, str]) -> str | None:
    for name, kind in required.items():
        if name not in schema.names:
            return f"column {name!r} is missing"
        if not _KIND_CHECK[kind](schema.field(name).type):
            return f"column {name!r} is {schema.field(name).type}, expected {kind}"
    return None


def _file_schema(store: LakeStore, f: LakeFile) -> pa.Schema | str:
    key = (store.uri, f.path, f.size, f.mtime_ns)
    with _SCHEMAS_LOCK:
        hit = _SCHEMAS.get(key)
    if hit is not None:
        return hit
    try:
        got: pa.Schema | str = store.read_schema(f.path)
    except LakeUnavailable:
        raise
    except (OSError, pa.ArrowException) as exc:
        got = f"not a readable Parquet file ({exc})"
    with _SCHEMAS_LOCK:
        _SCHEMAS[key] = got
    return got


def _shap_model(path: str) -> str | None:
    parts = path.split("/")
    if len(parts) >= 3 and parts[1].startswith("model="):
        try:
            return model_from_key(parts[1][len("model="):])
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def take_snapshot(store: LakeStore) -> LakeSnapshot:
    """List every dataset, check new files' schemas, and fingerprint the result."""
    files: dict[str, list[LakeFile]] = {}
    refused: list[tuple[str, str]] = []
    shap_features: dict[str, tuple[str, ...]] = {}
    for name, required in DATASETS.items():
        for f in store.list(name):
            problem = _check(store, f, required)
            if problem:
                refused.append((f.path, problem))
            else:
                files.setdefault(name, []).append(f)
    for f in store.list("shap"):
        model_id = _shap_model(f.path)
        schema = _file_schema(store, f)
        problem = ("not under shap/model=<key>/" if model_id is None else
                   schema if isinstance(schema, str) else _schema_problem(schema, SHAP_FIXED))
        if problem is None:
            assert model_id is not None and isinstance(schema, pa.Schema)
            feats = tuple(n for n in schema.names if n not in SHAP_FIXED)
            known = shap_features.setdefault(model_id, feats)
            if known != feats:
                problem = "its feature columns differ from the model's other SHAP files"
        if problem:
            refused.append((f.path, str(problem)))
        else:
            files.setdefault(f"shap/{model_id}", []).append(f)
    digest = hashlib.sha256()
    for name in sorted(files):
        for f in files[name]:
            digest.update(f"{f.path}\0{f.size}\0{f.mtime_ns}\n".encode())
    return LakeSnapshot(digest.hexdigest()[:16], {k: tuple(v) for k, v in files.items()},
                        shap_features, tuple(refused))


def _check(store: LakeStore, f: LakeFile, required: Mapping[str, str]) -> str | None:
    schema = _file_schema(store, f)
    return schema if isinstance(schema, str) else _schema_problem(schema, required)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _empty_view(required: Mapping[str, str]) -> str:
    cols = ", ".join(f"NULL::{_SQL_TYPE[k]} AS \"{n}\"" for n, k in required.items())
    return f"SELECT {cols} WHERE false"


class Lake:
    """A lake root with one hardened in-memory DuckDB connection whose views follow the files.

    Threads take their own cursor (`cursor()`); `refresh()` re-lists at most every
    REFRESH_S seconds and swaps the views when the data version changed.
    """

    def __init__(self, store: LakeStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._listed_at = 0.0
        self.snapshot = LakeSnapshot("", {})
        self._datasets: dict[str, pads.Dataset] = {}
        self.con = self._connect()
        _BY_CONNECTION[id(self.con)] = self
        self.refresh(force=True)

    def _connect(self) -> duckdb.DuckDBPyConnection:
        # spills go to the system's temp folder, never into the current directory
        spill = os.path.join(tempfile.gettempdir(), f"fraudlens-duckdb-{os.getuid()}")
        con = duckdb.connect(":memory:", config={**HARDENED, "temp_directory": spill})
        if self.store.is_local:
            con.execute("SET allowed_directories = ?", [[self.store.root + "/"]])
        con.execute("SET parquet_metadata_cache = true")  # footers read once per file, not query
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        return con

    @property
    def version(self) -> str:
        return self.snapshot.version

    def listing_age(self) -> float:
        """Seconds since the lake was last listed."""
        return time.monotonic() - self._listed_at

    def follow(self, every_s: float = REFRESH_S) -> threading.Thread:
        """Re-list the lake every `every_s` seconds on a daemon thread, so a reader's requests
        find the views current instead of listing (a walk, or S3 LIST calls) themselves. A
        failed listing is logged and retried; the views keep serving the last snapshot, and a
        request that finds the listing older than STALE_S lists itself and reports the
        error. The thread ends when the lake is closed."""
        def loop() -> None:
            while not self._closed.wait(every_s):
                try:
                    self.refresh()
                except Exception as exc:  # keep following; the next request reports it
                    _LOG.warning("lake listing failed: %s", exc)

        thread = threading.Thread(target=loop, name="fraudlens-lake-follow", daemon=True)
        thread.start()
        return thread

    def refresh_if_stale(self) -> None:
        """What a request does: list only when nobody (the follower) listed recently."""
        if self.listing_age() >= STALE_S:
            self.refresh()

    def refresh(self, *, force: bool = False) -> bool:
        """Re-list the lake if due; returns True when the data version changed."""
        with self._lock:
            if not force and time.monotonic() - self._listed_at < REFRESH_S:
                return False
            snap = take_snapshot(self.store)
            self._listed_at = time.monotonic()
            if snap.version == self.snapshot.version and not force:
                return False
            self._build_views(snap)
            self.snapshot = snap
            return True

    def _build_views(self, snap: LakeSnapshot) -> None:
        views: dict[str, tuple[tuple[LakeFile, ...], Mapping[str, str]]] = {
            name: (snap.files.get(name, ()), req) for name, req in DATASETS.items()}
        for model_id, feats in snap.shap_features.items():
            req = {**SHAP_FIXED, **{f: _FLOAT for f in feats}}
            views[shap_view(model_id)] = (snap.files.get(f"shap/{model_id}", ()), req)
        datasets: dict[str, pads.Dataset] = {}
        for view, (files, required) in views.items():
            if not files:
                body = _empty_view(required)
            elif self.store.is_local:
                paths = ", ".join(_literal(self.store.full(f.path)) for f in files)
                body = f"SELECT * FROM read_parquet([{paths}], union_by_name = true)"
            else:
                datasets[view] = _arrow_dataset(self.store, files)
                self.con.register(f"_ds_{view}", datasets[view])
                body = f"SELECT * FROM _ds_{view}"
            self.con.execute(f'CREATE OR REPLACE VIEW "{view}" AS {body}')
        rows = [(m, shap_view(m), list(f)) for m, f in sorted(snap.shap_features.items())]
        self.con.execute("CREATE OR REPLACE TABLE shap_tables (model_id VARCHAR, table_name "
                         "VARCHAR, features VARCHAR[])")
        if rows:
            self.con.executemany("INSERT INTO shap_tables VALUES (?, ?, ?)", rows)
        self._datasets = datasets

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for one thread or query, with every view in place."""
        cur = self.con.cursor()
        for view, ds in self._datasets.items():  # remote lakes: arrow datasets are per cursor
            cur.register(f"_ds_{view}", ds)
        return cur

    def files(self, dataset: str) -> tuple[LakeFile, ...]:
        return self.snapshot.files.get(dataset, ())

    def publish(self, rel: str, table: pa.Table) -> None:
        self.store.publish(rel, table)

    def close(self) -> None:
        self._closed.set()
        _BY_CONNECTION.pop(id(self.con), None)
        self.con.close()


def _arrow_dataset(store: LakeStore, files: Iterable[LakeFile]) -> pads.Dataset:
    parts = [pads.dataset(store.full(f.path), filesystem=store.fs, format="parquet")
             for f in files]
    schema = pa.unify_schemas([p.schema for p in parts], promote_options="permissive")
    return pads.dataset([store.full(f.path) for f in files], schema=schema,
                        filesystem=store.fs, format="parquet")


# id(connection) -> Lake, so `cursor_for(con)` gives any caller holding only the connection a
# cursor with the remote lake's arrow datasets registered on it.
_BY_CONNECTION: dict[int, Lake] = {}


def cursor_for(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    lake = _BY_CONNECTION.get(id(con))
    return lake.cursor() if lake is not None and lake.con is con else con.cursor()


def open_lake(workspace: str | Path, *, create: bool = False) -> Lake:
    """The workspace's lake. Readers never create one: a missing root is a clear error."""
    store = open_store(Path(workspace))
    if not store.exists():
        if not create:
            raise WarehouseError(
                f"No lake at {store.uri}. Build the demo workspace with `fraudlens demo`, or "
                "import data with `fraudlens import transactions FILE --labels FILE`.")
        store.make_root()
    return Lake(store)
