"""SHAP backends behind one call, `explain()`, chosen from a dispatch table, not type checks.

`native` asks the framework's own Tree SHAP (XGBoost `pred_contribs`, CatBoost `ShapValues`);
`reference` goes through `shap.TreeExplainer` and exists to cross-check and benchmark.
Every result is in margin (log-odds) space and is checked to add up to the model's margin.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from explainers.explanation import ExplainError, Explanation
from explainers.model import LoadedModel
from explainers.schema import ModelInput
from explainers.tree_kernel import KernelCache, KernelRows, KernelUnsupported

__all__ = ["BACKENDS", "Backend", "backend_note", "catboost_shap_mode", "explain",
           "model_input_for", "resolve_backend", "warm_reference"]

# Direct (NoPreCalc) CatBoost SHAP costs O(T*L*D^2) per row; UsePreCalc pays O(T*L^2*D^2) once
# and then O(T*(D+F)) per row. Measured on 300 trees of depth 6 (L=64 leaves), 2 cores: 1 row
# 7 ms vs 237 ms, 16 rows 63 vs 247 ms, 64 rows 312 vs 297 ms, 256 rows 1.2 s vs 0.29 s;
# the break-even sits at about one row per leaf, so fewer rows than leaves go direct.
BASE_VALUE_TOL = 1e-6
ADDITIVITY_TOL = 1e-4
# A thread team costs more than it saves on a handful of rows, and under CPU contention (several
# app sessions) OpenMP spin-waits dominate: one XGBoost row (300 trees) took 47 ms of CPU with
# 2 threads and 11 ms with one. Workloads this small run single-threaded.
SINGLE_THREAD_MAX_ROWS = 8
ALL_THREADS = -1

# (native model, native input, mode, threads: 1 or ALL_THREADS) -> (values, bias per row)
Contributions = Callable[[Any, Any, str, int], tuple[np.ndarray, np.ndarray]]
# (model, prepared rows) -> (the backend's own input, the model's margin per row)
OwnInput = Callable[[LoadedModel, ModelInput], tuple[Any, np.ndarray]]


@dataclass(frozen=True)
class Backend:
    """How one backend explains one framework: its modes and its contribution function."""

    name: str
    framework: str
    modes: tuple[str, ...]
    contributions: Contributions
    own_input: OwnInput | None = None  # None: the framework's native input and margin


def catboost_shap_mode(native: Any, n_rows: int) -> str:
    """CatBoost `shap_mode` for a workload: direct for fewer rows than leaves, else precalc."""
    leaves = float(np.mean(native.get_tree_leaf_counts()))
    return "NoPreCalc" if n_rows < leaves else "UsePreCalc"


def _split_bias(phi: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 2 or phi.shape[0] != n_rows:
        raise ExplainError(
            f"Backend returned SHAP values of shape {phi.shape} for {n_rows} rows; only binary "
            "single-output models can be explained")
    return phi[:, :-1], phi[:, -1]


def _xgboost_native(native: Any, dmatrix: Any, mode: str,
                    threads: int) -> tuple[np.ndarray, np.ndarray]:
    phi = native.predict(dmatrix, pred_contribs=True)
    return _split_bias(phi, dmatrix.num_row())


def _catboost_native(native: Any, pool: Any, mode: str,
                     threads: int) -> tuple[np.ndarray, np.ndarray]:
    shap_mode = {"auto": catboost_shap_mode(native, pool.num_row()), "direct": "NoPreCalc",
                 "precalc": "UsePreCalc"}[mode]
    phi = native.get_feature_importance(pool, type="ShapValues", shap_mode=shap_mode,
                                        shap_calc_type="Regular", thread_count=threads)
    return _split_bias(phi, pool.num_row())


class _ExplainerCache:
    """A few `shap.TreeExplainer`s kept per native model, since building one parses every tree."""

    def __init__(self, size: int = 8) -> None:
        self._size = size
        self._items: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, native: Any) -> Any:
        with self._lock:
            hit = self._items.get(id(native))
            if hit is not None and hit.model.original_model is native:
                self._items.move_to_end(id(native))
                return hit
        import shap

        explainer = shap.TreeExplainer(native)
        with self._lock:
            self._items[id(native)] = explainer
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return explainer


_TREE_EXPLAINERS = _ExplainerCache()


def _shap_reference(native: Any, data: Any, mode: str,
                    threads: int) -> tuple[np.ndarray, np.ndarray]:
    # shap cannot build a DMatrix from a category-dtype frame itself, so it gets the native
    # input (DMatrix with enable_categorical / CatBoost Pool), which it accepts as is.
    explainer = _TREE_EXPLAINERS.get(native)
    values = np.asarray(explainer.shap_values(data, check_additivity=False), dtype=np.float64)
    n_rows = data.num_row()
    if values.ndim != 2 or values.shape[0] != n_rows:
        raise ExplainError(f"shap returned values of shape {values.shape} for {n_rows} rows")
    base = float(np.asarray(explainer.expected_value, dtype=np.float64).reshape(-1)[0])
    return values, np.full(n_rows, base)


def warm_reference(model: LoadedModel) -> None:
    """Build and keep the model's shap.TreeExplainer now (it parses every tree) for later calls."""
    _TREE_EXPLAINERS.get(model.native)


# Prepared fast-kernel tables (or why a model has none) per loaded XGBoost booster.
KERNELS = KernelCache()


def _xgboost_kernel_input(model: LoadedModel, inputs: ModelInput) -> tuple[KernelRows, np.ndarray]:
    # The kernel reads a float32 code matrix, and XGBoost predicts the margin from the same
    # matrix in place: no DMatrix is built on this path.
    rows = KERNELS.kernel(model.native).rows(inputs.frame)
    margin = model.native.inplace_predict(rows.row_major(), predict_type="margin",
                                          missing=np.nan)
    return rows, np.asarray(margin, dtype=np.float64)


def _xgboost_fast(native: Any, rows: KernelRows, mode: str,
                  threads: int) -> tuple[np.ndarray, np.ndarray]:
    return KERNELS.kernel(native).contributions(rows, threads)


def backend_note(model: LoadedModel) -> str | None:
    """Why backend="auto" left this XGBoost model to the native backend; None when it did not."""
    if model.framework != "xgboost":
        return None
    entry = KERNELS.get(model.native)
    return entry if isinstance(entry, str) else None


def resolve_backend(model: LoadedModel, backend: str) -> str:
    """The backend "auto" means for this model: the fast kernel when it takes the model."""
    if backend != "auto":
        return backend
    fast = ("fast", model.framework) in BACKENDS and backend_note(model) is None
    return "fast" if fast else "native"


BACKENDS: dict[tuple[str, str], Backend] = {
    ("fast", "xgboost"): Backend("fast", "xgboost", ("auto", "direct"), _xgboost_fast,
                                 own_input=_xgboost_kernel_input),
    ("native", "xgboost"): Backend("native", "xgboost", ("auto", "direct"), _xgboost_native),
    ("native", "catboost"): Backend("native", "catboost", ("auto", "direct", "precalc"),
                                    _catboost_native),
    ("reference", "xgboost"): Backend("reference", "xgboost", ("auto",), _shap_reference),
    ("reference", "catboost"): Backend("reference", "catboost", ("auto",), _shap_reference),
}


def _xgboost_single_thread() -> AbstractContextManager[Any]:
    import xgboost as xgb

    return xgb.config_context(nthread=1)  # XGBoost's global config is thread-local


# How to keep a framework's own thread pools (input building, prediction) to one thread.
SINGLE_THREAD: dict[str, Callable[[], AbstractContextManager[Any]]] = {
    "xgboost": _xgboost_single_thread,
    "catboost": nullcontext,  # CatBoost takes thread_count per call instead
}


def _backend(name: str, framework: str, mode: str) -> Backend:
    try:
        chosen = BACKENDS[(name, framework)]
    except KeyError:
        known = sorted({"auto"} | {b for b, f in BACKENDS if f == framework})
        raise ExplainError(f"No {name!r} SHAP backend for {framework} models; use one of "
                           f"{', '.join(known) or 'none'}") from None
    if mode not in chosen.modes:
        raise ExplainError(f"The {name} {framework} backend has no mode {mode!r}; use one of "
                           f"{', '.join(chosen.modes)}")
    return chosen


def model_input_for(model: LoadedModel, x: ModelInput | pd.DataFrame) -> ModelInput:
    """The model's input for x: prepared from a raw frame, or checked when already prepared."""
    if isinstance(x, ModelInput):
        if list(x.frame.columns) != model.schema.names:
            raise ExplainError(f"Model input columns do not match {model.key}'s schema; "
                               "prepare the frame with the model's schema")
        return x
    if isinstance(x, pd.DataFrame):
        return model.prepare(x)
    raise ExplainError(f"Cannot explain a {type(x).__name__}; pass a DataFrame or ModelInput")


def _contributions(chosen: Backend, model: LoadedModel, inputs: ModelInput,
                   mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values, bias and margin per row from one backend; small workloads run single-threaded."""
    small = len(inputs.frame) <= SINGLE_THREAD_MAX_ROWS
    threads = 1 if small else ALL_THREADS
    with SINGLE_THREAD[model.framework]() if small else nullcontext():
        if chosen.own_input is not None:
            data, margin = chosen.own_input(model, inputs)
            values, bias = chosen.contributions(model.native, data, mode, threads)
            return values, bias, margin
        framework = model.backend
        native_input = framework.native_input(model.native, inputs, model.schema)
        values, bias = chosen.contributions(model.native, native_input, mode, threads)
        return values, bias, framework.margin(model.native, native_input)


def explain(model: LoadedModel, x: ModelInput | pd.DataFrame, *, backend: str = "auto",
            mode: str = "auto", row_ids: np.ndarray | pd.Series | None = None) -> Explanation:
    """SHAP values in log-odds for every row of x, verified to add up to the model's margin.

    backend: "auto" is the fast kernel where it takes the model, else native (`backend_note`
    says why); "fast", "native" and "reference" force one. mode: "auto" picks the fastest exact
    algorithm for the workload; CatBoost also takes "direct" (NoPreCalc) and "precalc" (UsePreCalc).
    """
    chosen = _backend(resolve_backend(model, backend), model.framework, mode)
    inputs = model_input_for(model, x)
    if len(inputs.frame) == 0:
        raise ExplainError("There are no rows to explain")
    try:
        values, bias, margin = _contributions(chosen, model, inputs, mode)
    except KernelUnsupported as exc:
        if backend != "auto":
            raise ExplainError(f"The fast kernel cannot explain {model.key}: "
                               f"{exc.reason}") from None
        native = _backend("native", model.framework, mode)  # e.g. levels unseen in training
        values, bias, margin = _contributions(native, model, inputs, mode)
    n_features = len(model.schema.names)
    if values.shape[1] != n_features:
        raise ExplainError(f"{model.key} explains {values.shape[1]} features but its schema has "
                           f"{n_features}; the schema does not belong to this model")
    if float(np.ptp(bias)) > BASE_VALUE_TOL:
        raise ExplainError(f"{model.key}'s base value differs between rows (per-row base margin?); "
                           "FraudLens needs one base value per explanation")
    explanation = Explanation(
        values=values,
        base_value=float(bias[0]),
        feature_names=tuple(model.schema.names),
        data=inputs.frame,
        output_space="log-odds",
        flagged=inputs.flagged,
        row_ids=None if row_ids is None else np.asarray(row_ids),
    )
    explanation.check_additivity(margin, ADDITIVITY_TOL)
    return explanation
