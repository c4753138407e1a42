"""Pattern mining over SHAP vectors: clusters of cases the model explains alike, and their
week-over-week change (a readable rule per cluster: `explainers.rules`). numpy/pandas/
scikit-learn in, results out.

Clustering: k-means over-segments the cases (about one segment per 8 cases, 2 to 12 segments,
seeded), then segments whose mean explanations point the same way (cosine similarity of their
centroids >= 0.75, complete linkage) are merged. The number of findings is therefore chosen by
the data. Plain silhouette-over-k was tried first and rejected: in SHAP space the largest split
(old versus young accounts) dominates it, so it keeps k = 2 and merges distinct typologies.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = [
    "CHANGES",
    "Clustering",
    "WeekMatch",
    "attribution_drift",
    "cluster_shap",
    "cosine_similarity",
    "distances",
    "drivers",
    "match_weeks",
    "representatives",
]

CHANGES = ("new", "growing", "shrinking", "stable", "gone")
MIN_SIMILARITY = 0.75
ROWS_PER_SEGMENT = 8
MAX_SEGMENTS = 12
FIT_SAMPLE = 5000
SILHOUETTE_SAMPLE = 2000


# --------------------------------------------------------------------------- clustering


@dataclass(frozen=True, eq=False)
class Clustering:
    """Cluster per row (0 = largest), each cluster's mean SHAP vector, and how it was found."""

    labels: np.ndarray
    centroids: np.ndarray
    segments: int
    silhouette: float

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.k)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered by size, largest first; ties by first row, so numbering is stable."""
    uniq, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(uniq)), key=lambda i: (-counts[i], first[i]))
    mapping = np.empty(int(uniq.max()) + 1, dtype=np.int64)
    mapping[uniq[order]] = np.arange(len(uniq))
    return mapping[labels]


def _means(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((k, values.shape[1]))
    for c in range(k):
        out[c] = values[labels == c].mean(axis=0)
    return out


def cluster_shap(values: np.ndarray, seed: int, *, min_similarity: float = MIN_SIMILARITY,
                 rows_per_segment: int = ROWS_PER_SEGMENT, max_segments: int = MAX_SEGMENTS,
                 fit_sample: int = FIT_SAMPLE) -> Clustering:
    """Cluster SHAP vectors (rows = cases, margin space): seeded k-means segments merged while
    their centroids' cosine similarity is at least `min_similarity`."""
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import silhouette_score

    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n == 0:
        return Clustering(np.zeros(0, dtype=np.int64), np.zeros((0, x.shape[1])), 0, math.nan)
    distinct = len(np.unique(x, axis=0))
    k0 = int(np.clip(n // rows_per_segment, 2, max_segments))
    k0 = min(k0, distinct)
    if k0 < 2:
        labels = np.zeros(n, dtype=np.int64)
        return Clustering(labels, x.mean(axis=0, keepdims=True), 1, math.nan)
    rng = np.random.default_rng(seed)
    fit_rows = np.sort(rng.choice(n, fit_sample, replace=False)) if n > fit_sample else slice(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points: k-means may warn, labels stay valid
        km = KMeans(n_clusters=k0, n_init=10, random_state=seed).fit(x[fit_rows])
    segments = _relabel(km.predict(x))
    n_seg = int(segments.max()) + 1
    seg_centroids = _means(x, segments, n_seg)
    if n_seg >= 2:
        merge = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="complete",
                                        distance_threshold=1.0 - min_similarity)
        labels = _relabel(merge.fit_predict(seg_centroids + 1e-12)[segments])
    else:
        labels = segments
    k = int(labels.max()) + 1
    sil = math.nan
    if 2 <= k < n:
        rows = (np.sort(rng.choice(n, SILHOUETTE_SAMPLE, replace=False))
                if n > SILHOUETTE_SAMPLE else np.arange(n))
        if len(np.unique(labels[rows])) >= 2:
            sil = float(silhouette_score(x[rows], labels[rows]))
    return Clustering(labels, _means(x, labels, k), n_seg, sil)


def representatives(values: np.ndarray, labels: np.ndarray, centroids: np.ndarray,
                    per_cluster: int = 5) -> list[np.ndarray]:
    """Per cluster, the positions of the rows closest to its centroid (ties: earlier row)."""
    x = np.asarray(values, dtype=np.float64)
    out = []
    for c in range(len(centroids)):
        rows = np.flatnonzero(labels == c)
        dist = np.linalg.norm(x[rows] - centroids[c], axis=1)
        order = np.lexsort((rows, dist))[:per_cluster]
        out.append(rows[order])
    return out


def distances(values: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance (log-odds) to its own cluster's centroid."""
    x = np.asarray(values, dtype=np.float64)
    return np.linalg.norm(x - centroids[labels], axis=1)


def drivers(values: np.ndarray, feature_names: Sequence[str]) -> pd.DataFrame:
    """Per feature over some cases: mean SHAP (signed) and mean |SHAP|, strongest first."""
    x = np.asarray(values, dtype=np.float64)
    mean = x.mean(axis=0) if len(x) else np.zeros(len(feature_names))
    mean_abs = np.abs(x).mean(axis=0) if len(x) else np.zeros(len(feature_names))
    out = pd.DataFrame({"feature": list(feature_names), "mean_shap": mean,
                        "mean_abs_shap": mean_abs})
    out["_key"] = -np.abs(out["mean_shap"])
    out = out.sort_values(["_key", "feature"], kind="mergesort").drop(columns="_key")
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- week over week


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity between the rows of a and the rows of b."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = (a @ b.T) / (na * nb.T)
    return np.nan_to_num(sim, nan=0.0)


@dataclass(frozen=True)
class WeekMatch:
    """A finding now and its counterpart before (either may be None) and what changed."""

    current: int | None
    previous: int | None
    similarity: float | None
    change: str
    size_now: int = 0
    size_before: int = 0
    notes: tuple[str, ...] = field(default=())


def match_weeks(current: np.ndarray, current_sizes: Sequence[int], previous: np.ndarray,
                previous_sizes: Sequence[int], *, min_similarity: float = 0.8,
                tolerance: float = 0.25) -> list[WeekMatch]:
    """Pair clusters of two windows by cosine similarity of their SHAP centroids, greedily
    (most similar pair first, one-to-one, at least `min_similarity`). A pair is growing or
    shrinking when its size changed by more than `tolerance` (25%), else stable; a cluster
    without a pair is new (now) or gone (before). Current clusters come first, in order."""
    cur = np.atleast_2d(np.asarray(current, dtype=np.float64))
    prev = np.atleast_2d(np.asarray(previous, dtype=np.float64))
    pairs: dict[int, tuple[int, float]] = {}
    if len(cur) and len(prev):
        sim = cosine_similarity(cur, prev)
        taken_prev: set[int] = set()
        order = sorted((-sim[i, j], i, j) for i in range(len(cur)) for j in range(len(prev)))
        for neg, i, j in order:
            if -neg < min_similarity:
                break
            if i in pairs or j in taken_prev:
                continue
            pairs[i] = (j, float(-neg))
            taken_prev.add(j)
    out = []
    for i, size in enumerate(current_sizes):
        if i not in pairs:
            out.append(WeekMatch(i, None, None, "new", int(size), 0))
            continue
        j, s = pairs[i]
        before = int(previous_sizes[j])
        ratio = size / before if before else math.inf
        change = ("growing" if ratio > 1 + tolerance else
                  "shrinking" if ratio < 1 - tolerance else "stable")
        out.append(WeekMatch(i, j, s, change, int(size), before))
    matched_prev = {j for j, _ in pairs.values()}
    for j, size in enumerate(previous_sizes):
        if j not in matched_prev:
            out.append(WeekMatch(None, j, None, "gone", 0, int(size)))
    return out


def attribution_drift(now: np.ndarray, before: np.ndarray,
                      feature_names: Sequence[str]) -> pd.DataFrame:
    """Per feature: mean SHAP and mean |SHAP| over cases now and before, and the change in
    mean |SHAP| (how much more or less the model leans on it), largest change first."""
    a = np.asarray(now, dtype=np.float64).reshape(-1, len(feature_names))
    b = np.asarray(before, dtype=np.float64).reshape(-1, len(feature_names))

    def mean(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=0) if len(x) else np.full(len(feature_names), np.nan)

    out = pd.DataFrame({
        "feature": list(feature_names),
        "mean_shap_now": mean(a), "mean_shap_before": mean(b),
        "mean_abs_shap_now": mean(np.abs(a)), "mean_abs_shap_before": mean(np.abs(b))})
    out["change_mean_abs_shap"] = out["mean_abs_shap_now"] - out["mean_abs_shap_before"]
    out["_key"] = -out["change_mean_abs_shap"].abs().fillna(-1.0)
    out = out.sort_values(["_key", "feature"], kind="mergesort").drop(columns="_key")
    return out.reset_index(drop=True)
