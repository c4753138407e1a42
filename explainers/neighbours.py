"""Similar past cases: nearest SHAP vectors, so analysts see cases flagged for the same reasons."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from explainers.explanation import ExplainError

__all__ = ["Neighbours", "nearest_cases"]


class Neighbours(NamedTuple):
    """Positions of the nearest candidates, closest first, and their distances."""

    indices: np.ndarray
    distances: np.ndarray


def nearest_cases(query: np.ndarray, candidates: np.ndarray, k: int = 5) -> Neighbours:
    """The k candidates closest to query in SHAP space (Euclidean); ties go to the lower index."""
    q = np.asarray(query, dtype=np.float64)
    c = np.asarray(candidates, dtype=np.float64)
    if q.ndim != 1 or c.ndim != 2 or c.shape[1] != q.shape[0]:
        raise ExplainError(f"Query must be (F,) and candidates (n, F); got {q.shape} and {c.shape}")
    if k < 1:
        raise ExplainError(f"k must be at least 1, got {k}")
    if not (np.isfinite(q).all() and np.isfinite(c).all()):
        raise ExplainError("SHAP vectors must be finite to compare cases")
    distances = np.sqrt(np.square(c - q).sum(axis=1))
    k = min(k, len(distances))
    if k == 0:
        return Neighbours(np.empty(0, dtype=np.int64), np.empty(0))
    # Everything within the k-th smallest distance, then an exact (distance, index) order, so
    # ties at the cut are settled by index rather than by argpartition's internal order.
    cut = np.partition(distances, k - 1)[k - 1]
    near = np.flatnonzero(distances <= cut)
    near = near[np.lexsort((near, distances[near]))][:k]
    return Neighbours(near.astype(np.int64), distances[near])
