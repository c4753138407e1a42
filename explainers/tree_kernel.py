"""FraudLens's own exact Tree SHAP for XGBoost: per-leaf pattern tables, built once per model.

A leaf's effect on a row depends only on which of its d path features the row "satisfies", so
each leaf (or pair of sibling leaves) keeps a table over its 2^d patterns (tree_kernel_tables).
A row then costs d comparisons and d additions per table (tree_kernel_jit) instead of XGBoost's
O(depth^2) path walk. Interaction tables are built on first use. Models the kernel cannot
explain exactly raise KernelUnsupported, and callers fall back to XGBoost's own Tree SHAP.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from explainers.tree_kernel_jit import (
    INTERACTION_BLOCK,
    ROW_BLOCK,
    Paths,
    contributions_row,
    contributions_rows,
    interactions_rows,
)
from explainers.tree_kernel_parse import KernelUnsupported, ParsedForest, PathSet, parse_booster
from explainers.tree_kernel_tables import build_interaction_tables, build_unit_tables

__all__ = ["DEFAULT_BUDGET_BYTES", "KernelCache", "KernelRows", "KernelUnsupported", "TreeKernel",
           "prepare_kernel"]

# Tables grow as 2^d * d doubles per leaf, shared by sibling leaves (pair tables: 2^(d-2) *
# d(d-1)/2 per leaf): 300 depth-6 trees of 30 features take about 20 MB (pair tables another
# 20 MB). Past this budget a model is left to the native backend.
DEFAULT_BUDGET_BYTES = 256 * 2**20
MAX_PATH_FEATURES = 24  # patterns index an int64; the budget refuses far earlier anyway
LEAVES_PER_TASK = 2048
MARGIN_TOL = 1e-4  # relative: XGBoost's own margins are float32 sums
# Below this many rows each row runs alone (prefetched table rows, 0.2 ms a row on the bench
# model); from here a row block pays its per-table setup once for all its rows (1.3 ms + 0.06
# ms a row). Measured crossover: 8 rows 1.4 vs 1.8 ms, 16 rows 2.9 vs 2.5 ms.
LONE_ROWS = 12
_POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="tree-kernel")


def _run(tasks: list[Callable[[], None]]) -> None:
    """Runs the GIL-free numba tasks on the shared pool (inline when there is only one)."""
    if len(tasks) == 1:
        tasks[0]()
        return
    for future in [_POOL.submit(t) for t in tasks]:
        future.result()


def _spans(n: int, block: int, threads: int) -> list[tuple[int, int]]:
    """Row ranges, whole blocks each, about four per thread so uneven ones balance out."""
    workers = (os.cpu_count() or 1) if threads < 1 else threads
    blocks = -(-n // block)
    parts = min(blocks, 4 * workers) if workers > 1 else 1
    per = -(-blocks // max(parts, 1)) * block
    return [(a, min(n, a + per)) for a in range(0, n, per)]


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.1f} MB"


def _offsets(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)[:-1])).astype(np.int64)


@dataclass(frozen=True)
class KernelRows:
    """Rows as the kernel reads them: feature-major float32, categories as training codes."""

    x: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.x.shape[1])

    def row_major(self) -> np.ndarray:
        """(rows, features) float32 view, e.g. for XGBoost's inplace_predict."""
        return self.x.T


@dataclass
class TreeKernel:
    """One model's leaf paths and Shapley tables; `bias` is the expected margin (phi_0)."""

    forest: ParsedForest
    units: Paths  # leaves and sibling pairs, one table each: contributions
    leaves: Paths  # every leaf alone: interactions
    table_off: np.ndarray
    tables: np.ndarray
    bias: float
    budget_bytes: int
    _pairs: tuple[np.ndarray, np.ndarray] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def n_features(self) -> int:
        return self.forest.n_features

    @property
    def nbytes(self) -> int:
        """Bytes held by tables and paths (pair tables included once built)."""
        arrays = [*self.units, *self.leaves, self.table_off, self.tables,
                  self.forest.leaf_value, self.forest.fracs, *(self._pairs or ())]
        return int(sum({id(a): a.nbytes for a in arrays}.values()))  # shared arrays once

    def rows(self, data: KernelRows | pd.DataFrame | np.ndarray) -> KernelRows:
        """The input as XGBoost sees it: a frame (categories by level) or a (rows, F) array."""
        if isinstance(data, KernelRows):
            return data
        return KernelRows(self._matrix(data))

    def _matrix(self, data: pd.DataFrame | np.ndarray) -> np.ndarray:
        if isinstance(data, pd.DataFrame):
            if data.shape[1] != self.n_features:
                raise KernelUnsupported(f"{data.shape[1]} columns for a {self.n_features}-"
                                        "feature model")  # native reports the mismatch
            out = np.empty((self.n_features, len(data)), dtype=np.float32)
            cats = [f for f, dtype in enumerate(data.dtypes)
                    if isinstance(dtype, pd.CategoricalDtype)]
            numeric = data if not cats else data.drop(columns=data.columns[cats])
            if numeric.shape[1]:  # one conversion for all numeric columns: per column is slow
                out[[f for f in range(self.n_features) if f not in cats]] = \
                    numeric.to_numpy(dtype=np.float64, na_value=np.nan).T
            for f in cats:
                out[f] = self._codes(f, data.iloc[:, f])
            return out
        x = np.asarray(data, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (rows, {self.n_features}) values, got {x.shape}")
        return np.ascontiguousarray(x.T, dtype=np.float32)

    def _codes(self, f: int, col: pd.Series) -> np.ndarray:
        """A categorical column's codes in the training levels' order, missing as NaN."""
        codes = col.cat.codes.to_numpy()
        levels = list(col.cat.categories)
        trained = self.forest.categories.get(f)
        if trained is not None and trained != levels:
            where = {level: i for i, level in enumerate(trained)}
            if not all(level in where for level in levels):
                raise KernelUnsupported(f"column {col.name!r} has levels unseen in training")
            codes = np.append(np.asarray([where[v] for v in levels], dtype=np.int64), -1)[codes]
        return np.where(codes < 0, np.nan, codes)

    def contributions(self, data: KernelRows | pd.DataFrame | np.ndarray,
                      threads: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """SHAP values (rows, features) in margin space and the bias per row, float64."""
        x = self.rows(data).x
        n = x.shape[1]
        out = np.zeros((n, self.n_features))
        if n < LONE_ROWS:
            pos = np.empty(len(self.units.bits), dtype=np.int64)
            for r in range(n):
                contributions_row(x, r, self.units, self.table_off, self.tables, out, pos)
        else:
            _run([lambda a=a, b=b: contributions_rows(x, a, b, self.units, self.table_off,
                                                      self.tables, out)
                  for a, b in _spans(n, ROW_BLOCK, threads)])
        return out, np.full(n, self.bias)

    def interactions(self, data: KernelRows | pd.DataFrame | np.ndarray,
                     threads: int = -1) -> np.ndarray:
        """SHAP interaction values (rows, F+1, F+1) laid out as XGBoost's pred_interactions."""
        pair_off, pairs = self.pair_tables()
        rows = self.rows(data)
        n, f = rows.n_rows, self.n_features
        out = np.zeros((n, f + 1, f + 1))
        _run([lambda a=a, b=b: interactions_rows(rows.x, a, b, self.leaves, self.forest.fracs,
                                                 pair_off, pairs, out)
              for a, b in _spans(n, INTERACTION_BLOCK, threads)])
        phi, _ = self.contributions(rows, threads)
        diagonal = np.arange(f)
        out[:, diagonal, diagonal] += phi  # Phi_ii = phi_i - sum_{j != i} Phi_ij
        out[:, f, f] = self.bias
        return out

    def pair_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """The pair tables, built on first use; with the main tables they share one budget."""
        with self._lock:
            if self._pairs is None:
                self._pairs = _build_pairs(self.forest, self.budget_bytes - self.tables.nbytes)
            return self._pairs


def _pair_sizes(d: np.ndarray) -> np.ndarray:
    d = d.astype(np.int64)
    return np.where(d >= 2, (1 << np.maximum(d - 2, 0)) * d * (d - 1) // 2, 0)


def _build_pairs(forest: ParsedForest, budget: int) -> tuple[np.ndarray, np.ndarray]:
    sizes = _pair_sizes(forest.leaf_d)
    if int(sizes.sum()) * 8 > budget:
        raise KernelUnsupported(f"interaction tables need {_mb(int(sizes.sum()) * 8)}, over "
                                f"the {_mb(budget)} left in the budget")
    off = _offsets(sizes)
    pairs = np.empty(int(sizes.sum()))
    _run_leaves(lambda a, b: build_interaction_tables(forest.leaf_value, forest.leaf_d,
                                                      forest.leaves.feat_off, forest.fracs,
                                                      off, pairs, a, b), len(forest.leaf_d))
    return off, pairs


def _run_leaves(build: Callable[[int, int], None], n_leaves: int) -> None:
    _run([lambda a=a: build(a, min(n_leaves, a + LEAVES_PER_TASK))
          for a in range(0, n_leaves, LEAVES_PER_TASK)] or [lambda: None])


def _bias(forest: ParsedForest) -> float:
    """base margin + sum over leaves of v * prod p: the value with every feature unknown."""
    weight = np.ones(len(forest.leaf_d))
    used = forest.leaf_d > 0
    if used.any():
        weight[used] = np.multiply.reduceat(forest.fracs, forest.leaves.feat_off[used])
    return float(forest.base_margin + np.dot(forest.leaf_value, weight))


def _paths(paths: PathSet, forest: ParsedForest) -> Paths:
    return Paths(paths.bits, paths.width, paths.feat_off, paths.step_off, forest.feats,
                 paths.step_bit, paths.step_feature, paths.step_thresh, paths.step_want_left,
                 paths.step_nan_left, paths.step_cat_off, paths.step_cat_len, forest.cat_words)


def prepare_kernel(booster: Any, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> TreeKernel:
    """Parses an XGBoost booster and builds its tables, or raises KernelUnsupported."""
    forest = parse_booster(booster)
    d = forest.leaf_d.astype(np.int64)
    if len(d) and int(d.max()) > MAX_PATH_FEATURES:
        raise KernelUnsupported(f"a leaf path has {int(d.max())} distinct features")
    units = forest.units
    sizes = (1 << units.bits.astype(np.int64)) * units.width
    if int(sizes.sum()) * 8 > budget_bytes:
        raise KernelUnsupported(f"Shapley tables need {_mb(int(sizes.sum()) * 8)}, over the "
                                f"{_mb(budget_bytes)} budget")
    table_off = _offsets(sizes)
    tables = np.empty(int(sizes.sum()))
    _run_leaves(lambda a, b: build_unit_tables(
        forest.leaf_value, forest.leaf_d, forest.leaves.feat_off, forest.fracs,
        forest.unit_left, forest.unit_right, forest.unit_split, units.bits, table_off, tables,
        a, b), len(units.bits))
    kernel = TreeKernel(forest, _paths(units, forest), _paths(forest.leaves, forest), table_off,
                        tables, _bias(forest), budget_bytes)
    _check_margin(kernel, booster)
    return kernel


def _check_margin(kernel: TreeKernel, booster: Any) -> None:
    """Refuses a model whose margins the parsed trees do not reproduce (say, a base_score
    transform this module does not know): two probe rows, all missing and all zero."""
    probe = np.zeros((2, kernel.n_features), dtype=np.float32)
    probe[0] = np.nan
    expected = np.asarray(booster.inplace_predict(probe, predict_type="margin", missing=np.nan),
                          dtype=np.float64).reshape(-1)
    values, bias = kernel.contributions(probe, threads=1)
    ours = bias + values.sum(axis=1)
    if expected.shape != ours.shape or np.abs(ours - expected).max() > MARGIN_TOL * max(
            1.0, float(np.abs(expected).max())):
        raise KernelUnsupported("the parsed trees do not reproduce the model's margin")


class KernelCache:
    """A few prepared kernels (or the reason a model has none) per loaded native model."""

    def __init__(self, size: int = 4, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._size = size
        self._budget = budget_bytes
        self._items: OrderedDict[int, tuple[Any, TreeKernel | str]] = OrderedDict()
        self._lock = threading.Lock()
        self._building = threading.Lock()

    def _hit(self, native: Any) -> TreeKernel | str | None:
        with self._lock:
            hit = self._items.get(id(native))
            if hit is not None and hit[0] is native:
                self._items.move_to_end(id(native))
                return hit[1]
        return None

    def get(self, native: Any) -> TreeKernel | str:
        """The model's kernel, or why it has none; built once even when threads race."""
        found = self._hit(native)
        if found is not None:
            return found
        with self._building:
            found = self._hit(native)
            if found is not None:
                return found
            try:
                entry: TreeKernel | str = prepare_kernel(native, self._budget)
            except KernelUnsupported as exc:
                entry = exc.reason
            with self._lock:
                self._items[id(native)] = (native, entry)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            return entry

    def kernel(self, native: Any) -> TreeKernel:
        """The model's kernel, or KernelUnsupported with the reason it has none."""
        entry = self.get(native)
        if isinstance(entry, str):
            raise KernelUnsupported(entry)
        return entry
