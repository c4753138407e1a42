"""`--engine ray`: scoring and the SHAP fill on a Ray cluster, file for file like the local
engine. The only module that imports Ray (an import-linter contract keeps it so).

How the work is split: one work unit per lake transactions file, run by a pool of Ray actors
(one CPU each). Ray Data over the Parquet partitions was considered and not used: its blocks
are re-cut by size, so rows of one lake file would be scattered over blocks and had to be
grouped back before the output file could be written; per-file units map 1:1 onto the lake's
output files (`scores/model=<key>/date=D/<batch>.parquet`, `shap/...`), so the output is the
local engine's, byte for byte, and a retried unit rewrites exactly one whole file.

Each actor loads the verified model once, from the registry, on its own node: it is given the
workspace path, the model reference and the expected SHA-256, never a model object, so the
checksum and format checks run on the worker and nothing is ever unpickled. Every actor
loads and verifies before any file is handed out, so a model that fails there stops the job
before anything is written. The per-file code (`jobs.scoring.score_file`,
`jobs.explain.explain_file`) and the publish (`LakeStore.publish`: local temp + rename, S3
single PUT) are the local engine's own.

Retries stay exact: a unit's output is a pure function of its input file, the model and the
run's parameters (`scored_at` is fixed once by the driver; the SHAP sample is a per-row
seeded hash with the fraction fixed by the driver). A worker that dies is restarted (it
reloads and re-verifies the model) and its units are retried; a unit that had already
published rewrites the same bytes to the same path, so there are no duplicates, and the
driver waits for every unit, so there are no gaps. A unit that fails with an error stops the
job, naming its file; files are published whole, so none is ever partial.

`fraudlens patterns --engine ray`: the cases of the window that the SHAP store lacks are
explained on the cluster in chunks (`explain_frame_on_ray`) and put back in row order;
reading the store, clustering, rules and backtests stay in the command's process. A row's
SHAP values do not depend on the chunk it is explained in, so the matrix that is clustered,
and with it every finding, is the local engine's for the same seed. Clustering itself is not
distributed: k-means fits on at most `clustering.FIT_SAMPLE` rows per population, so on a
large window the cost is in explaining the cases, which is what runs on Ray.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from data_access.lake import Lake
from data_access.lake_store import LakeStore
from data_access.workspace import Workspace
from explainers.errors import ChecksumError, EngineError, FraudLensError
from explainers.model import LoadedModel
from jobs.explain import explain_file, explain_plan
from jobs.progress import progress
from jobs.scoring import SourceFile, score_file, score_plan

__all__ = ["INSTALL_HINT", "ModelRef", "connect", "explain_frame_on_ray", "explain_on_ray",
           "import_ray", "score_on_ray"]

INSTALL_HINT = "Ray is not installed; install the extra: pip install fraudlens[ray]"
CONNECT_TIMEOUT_S = 5.0
IN_FLIGHT_PER_WORKER = 2  # a queued unit per actor hides the scheduling round trip
MAX_RETRIES = 3  # per actor restart and per unit, for worker deaths only
_PASSED_ENV = ("FRAUDLENS_REGISTRY", "FRAUDLENS_REGISTRY_ENDPOINT_URL", "FRAUDLENS_LAKE",
               "FRAUDLENS_LAKE_ENDPOINT_URL")


def import_ray() -> Any:
    """The `ray` module, or an EngineError saying how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise EngineError(INSTALL_HINT) from None


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load a model itself: workspace, `name@version`, SHA-256."""

    workspace: str
    key: str
    sha256: str

    @classmethod
    def of(cls, workspace: Workspace, ref: str) -> ModelRef:
        manifest = workspace.registry.resolve(ref)
        return cls(str(workspace.path.resolve()), manifest.key, manifest.sha256)

    def load(self) -> LoadedModel:
        """Resolve and load through the registry (checksum and format verified here); the
        manifest must still name the SHA-256 the driver saw."""
        registry = Workspace(self.workspace).registry
        manifest = registry.resolve(self.key)
        if manifest.sha256 != self.sha256:
            raise ChecksumError(f"{self.key}: the registry now names sha256 "
                                f"{manifest.sha256[:12]}…, the job started with "
                                f"{self.sha256[:12]}…; re-run the job")
        return registry.load(manifest)


@dataclass(frozen=True)
class _StoreRef:
    root: str
    s3: dict | None

    def open(self) -> LakeStore:
        return LakeStore(self.root, s3=self.s3)


def _store_ref(store: LakeStore) -> _StoreRef:
    return _StoreRef(store.root, None if store.is_local else dict(store._s3 or {}))


class FileWorker:
    """One Ray actor: loads the verified model once, then runs per-file units."""

    def __init__(self, model: ModelRef, store: _StoreRef | None, crash_once: str | None = None
                 ) -> None:
        self._ref, self._store_ref, self._crash_once = model, store, crash_once
        self._model: LoadedModel | None = None
        self._store: LakeStore | None = None

    def _loaded_model(self) -> LoadedModel:
        if self._model is None:  # once per actor (again after a restart)
            self._model = self._ref.load()
        return self._model

    def _loaded(self) -> tuple[LoadedModel, LakeStore]:
        self._loaded_model()
        if self._store is None and self._store_ref is not None:
            self._store = self._store_ref.open()
        if self._store is None:
            raise EngineError("This Ray worker was started without a lake")
        return self._loaded_model(), self._store

    def ready(self) -> str:
        """Load and verify the model (errors come back as the registry's own)."""
        return self._loaded_model().key

    def score(self, src: SourceFile, scored_at: datetime) -> tuple[str, int]:
        model, store = self._loaded()
        path = src.output("scores", model.key)
        table = score_file(store, model, src, scored_at)
        store.publish(path, table)
        self._maybe_crash()
        return path, table.num_rows

    def explain(self, src: SourceFile, fraction: float, seed: int) -> tuple[str, int]:
        model, store = self._loaded()
        path = src.output("shap", model.key)
        table = explain_file(store, model, src, fraction, seed)
        if table is None:
            return path, 0
        store.publish(path, table)
        self._maybe_crash()
        return path, table.num_rows

    def explain_rows(self, frame: pd.DataFrame) -> np.ndarray:
        """SHAP values of a frame's rows, schema order (the pattern review's on-demand work)."""
        from explainers.frames import explain_frame

        model = self._loaded_model()
        expl = explain_frame(model, frame)
        order = [list(expl.feature_names).index(n) for n in model.schema.names]
        return np.asarray(expl.values)[:, order]

    def _maybe_crash(self) -> None:
        """Test hook: the first worker to get here dies (after publishing), once per marker."""
        if self._crash_once is None:
            return
        try:
            os.close(os.open(self._crash_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        os._exit(1)


# --------------------------------------------------------------------------- the cluster


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rstrip("/").rpartition(":")
    if not host:
        return rest, 10001 if address.startswith("ray://") else 6379
    try:
        return host, int(port)
    except ValueError:
        raise EngineError(f"--ray-address {address!r} is not HOST:PORT or ray://HOST:PORT"
                          ) from None


def _check_reachable(address: str) -> None:
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise EngineError(f"Cannot reach the Ray cluster at {address} ({exc.strerror or exc}); "
                          "check --ray-address / RAY_ADDRESS, or use --ray-address local"
                          ) from None


def connect(address: str | None = "auto", *, num_cpus: int | None = None) -> bool:
    """Join a cluster: `auto` joins $RAY_ADDRESS when set, else starts a local one (as does
    `local`); any other value is a cluster address, checked to answer within
    CONNECT_TIMEOUT_S. Returns True when this call started or joined it (the caller shuts it
    down), False when Ray was already initialised in this process (it is used as it is)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPUs: no warning
    ray = import_ray()
    target = address or "auto"
    if target == "auto":
        target = os.environ.get("RAY_ADDRESS", "") or "local"
    if target not in ("local", "auto"):  # RAY_ADDRESS=auto: Ray's own discovery
        _check_reachable(target)
    if ray.is_initialized():
        return False
    if target == "local":
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        return True
    try:
        ray.init(address=target, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
        raise EngineError(f"Cannot join the Ray cluster at {target}: "
                          f"{str(exc).splitlines()[0][:200]}") from None
    return True


@dataclass
class _Pool:
    """Actors that have each loaded and verified the model."""

    ray: Any
    actors: list[Any]

    @classmethod
    def start(cls, model: ModelRef, store: LakeStore | None, units: int, workers: int | None,
              crash_once: str | None) -> _Pool:
        ray = import_ray()
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        env = {k: os.environ[k] for k in _PASSED_ENV if os.environ.get(k)}
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": MAX_RETRIES,
                                   "max_task_retries": MAX_RETRIES}
        if env:
            options["runtime_env"] = {"env_vars": env}
        actor = ray.remote(FileWorker).options(**options)
        ref = None if store is None else _store_ref(store)
        pool = cls(ray, [actor.remote(model, ref, crash_once) for _ in range(min(n, units))])
        try:
            ray.get([a.ready.remote() for a in pool.actors])
        except Exception as exc:
            pool.close()
            raise _job_error(exc, None) from None
        return pool

    def run(self, units: list[Any], call: Callable[[Any, Any], Any]
            ) -> Iterator[tuple[Any, Any]]:
        """(unit, result of `call(actor, unit)`) for every unit, as they finish; the first
        failure stops the job, naming its unit."""
        queue, busy = list(units), {}
        slots = [a for a in self.actors for _ in range(IN_FLIGHT_PER_WORKER)]
        while queue or busy:
            while queue and slots:
                actor, unit = slots.pop(0), queue.pop(0)
                busy[call(actor, unit)] = (actor, unit)
            (done,), _ = self.ray.wait(list(busy), num_returns=1)
            actor, unit = busy.pop(done)
            try:
                result = self.ray.get(done)
            except Exception as exc:
                raise _job_error(exc, unit) from None
            slots.append(actor)
            yield unit, result

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a, no_restart=True)


def _job_error(exc: BaseException, unit: Any) -> FraudLensError:
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, FraudLensError):  # the project's own error, one line, same type
        line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        try:
            return type(cause)(line)
        except TypeError:
            return EngineError(line)
    where = f" on {unit.source.path}" if isinstance(unit, SourceFile) else ""
    text = str(cause).strip().splitlines()
    return EngineError(f"The Ray job failed{where}: {type(cause).__name__}: "
                       f"{text[-1][:300] if text else 'no detail'}")


def _run_files(lake: Lake, model: ModelRef, todo: list[SourceFile], desc: str,
               call: Callable[[Any, SourceFile], Any], workers: int | None,
               crash_once: str | None) -> int:
    pool = _Pool.start(model, lake.store, len(todo), workers, crash_once)
    bar = progress(len(todo), desc, unit="files")
    rows = 0
    try:
        for _src, (_path, n) in pool.run(todo, call):
            rows += n
            bar.update(1)
    finally:
        bar.close()
        pool.close()
        lake.refresh(force=True)
    return rows


def score_on_ray(lake: Lake, model: LoadedModel, ref: ModelRef, *,
                 scored_at: datetime | None = None, workers: int | None = None,
                 crash_once: str | None = None) -> int:
    """`score_transactions` on the connected Ray cluster; returns rows scored."""
    todo = score_plan(lake, model)
    if not todo:
        return 0
    stamp = scored_at or datetime.now(UTC)
    return _run_files(lake, ref, todo, f"score {model.key} (ray)",
                      lambda a, src: a.score.remote(src, stamp), workers, crash_once)


def explain_on_ray(lake: Lake, model: LoadedModel, ref: ModelRef, *,
                   since: date | datetime | None = None, until: date | datetime | None = None,
                   sample: int | None = None, seed: int = 7, workers: int | None = None,
                   crash_once: str | None = None) -> int:
    """`fill_store` on the connected Ray cluster; returns rows written."""
    todo, fraction = explain_plan(lake, model, since=since, until=until, sample=sample)
    if not todo:
        return 0
    return _run_files(lake, ref, todo, f"explain {model.key} (ray)",
                      lambda a, src: a.explain.remote(src, fraction, seed), workers,
                      crash_once)


def explain_frame_on_ray(ref: ModelRef, frame: pd.DataFrame, *, workers: int | None = None,
                         min_chunk_rows: int = 2_000) -> np.ndarray:
    """SHAP values (schema order) of a frame's rows, explained in chunks on the connected
    cluster and put back in row order. Each row's values do not depend on its chunk, so the
    result is `explain_frame`'s, value for value (the pattern review's on-demand work)."""
    ray = import_ray()
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(min_chunk_rows, -(-len(frame) // (n * IN_FLIGHT_PER_WORKER)))
    chunks = [frame.iloc[i:i + size] for i in range(0, len(frame), size)]
    if not chunks:
        raise EngineError("There are no rows to explain")
    pool = _Pool.start(ref, None, len(chunks), workers, None)
    try:
        got = {i: values for (i, _), values in pool.run(
            list(enumerate(chunks)), lambda a, item: a.explain_rows.remote(item[1]))}
    finally:
        pool.close()
    return np.concatenate([got[i] for i in range(len(chunks))])
