"""Numba builders of the kernel's Shapley tables, once per model.

For a leaf of value v whose root path has d distinct features with cover fractions p_k, a row
only matters through its pattern q (q_k = 1 when it goes the path's way at every split on k):
phi_i = v (q_i - p_i) sum_c w_d(c) [z^c] prod_{k != i} (p_k + q_k z), w_d(c) = c!(d-1-c)!/d!.
The polynomial has non-negative terms only, so float64 sums carry no cancellation. Sibling
leaves share one table indexed by their common path's pattern and the direction of their split.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["build_interaction_tables", "build_unit_tables"]


@njit(nogil=True, cache=False)
def _weights(d: int) -> np.ndarray:
    """Shapley weights c!(d-1-c)!/d! = 1 / (d * C(d-1, c)) for c = 0..d-1."""
    w = np.empty(max(d, 1))
    binom = 1.0
    for c in range(d):
        w[c] = 1.0 / (d * binom)
        binom = binom * (d - 1 - c) / (c + 1)
    return w


@njit(nogil=True, cache=False)
def _weighted_sum(p: np.ndarray, others: np.ndarray, n_others: int, mask: int,
                  w: np.ndarray, poly: np.ndarray) -> float:
    """sum_c w[c] [z^c] prod over others of (p_k + q_k z), q_k the mask's bits."""
    poly[0] = 1.0
    deg = 0
    for idx in range(n_others):
        pk = p[others[idx]]
        if (mask >> idx) & 1:
            poly[deg + 1] = poly[deg]
            for c in range(deg, 0, -1):
                poly[c] = poly[c] * pk + poly[c - 1]
            poly[0] *= pk
            deg += 1
        else:
            for c in range(deg + 1):
                poly[c] *= pk
    total = 0.0
    for c in range(deg + 1):
        total += w[c] * poly[c]
    return total


@njit(nogil=True, cache=False)
def _insert_bit(mask: int, i: int) -> int:
    """The pattern whose bits other than i are mask's, bit i left 0."""
    return (mask & ((1 << i) - 1)) | ((mask >> i) << (i + 1))


@njit(nogil=True, cache=False)
def _leaf_table(v: float, p: np.ndarray, d: int, out: np.ndarray, off: int,
                poly: np.ndarray, others: np.ndarray) -> None:
    """out[off + pattern * d + i] = phi_i of one leaf for each of its 2^d patterns."""
    w = _weights(d)
    for i in range(d):
        n = 0
        for k in range(d):
            if k != i:
                others[n] = k
                n += 1
        for mask in range(1 << (d - 1)):
            s = v * _weighted_sum(p, others, n, mask, w, poly)
            pattern = _insert_bit(mask, i)
            out[off + pattern * d + i] = -p[i] * s
            out[off + (pattern | (1 << i)) * d + i] = (1.0 - p[i]) * s


@njit(nogil=True, cache=False)
def _pair_table(d: int, bits: int, split: int, left: np.ndarray, right: np.ndarray,
                tables: np.ndarray, off: int) -> None:
    """A sibling pair's table: index = path pattern | goes-left << (bits - 1)."""
    new = bits == d  # the split feature first appears at the pair's parent: its own bit
    for index in range(1 << bits):
        goes_left = (index >> (bits - 1)) & 1
        path = index & ((1 << (bits - 1)) - 1)
        if new:
            pat_left = path | (goes_left << split)
            pat_right = path | ((1 - goes_left) << split)
        else:
            pat_left = path & ~((1 - goes_left) << split)
            pat_right = path & ~(goes_left << split)
        for k in range(d):
            tables[off + index * d + k] = left[pat_left * d + k] + right[pat_right * d + k]


@njit(nogil=True, cache=False)
def build_unit_tables(leaf_value: np.ndarray, leaf_width: np.ndarray, feat_off: np.ndarray,
                      fracs: np.ndarray, unit_left: np.ndarray, unit_right: np.ndarray,
                      unit_split: np.ndarray, unit_bits: np.ndarray, table_off: np.ndarray,
                      tables: np.ndarray, first: int, last: int) -> None:
    """Fill the tables of units first..last-1: a lone leaf's own, or its pair's sum."""
    poly = np.empty(64)
    others = np.empty(64, dtype=np.int64)
    scratch = np.empty(2 * (1 << leaf_width.max()) * leaf_width.max()) if len(leaf_width) else poly
    for unit in range(first, last):
        a, b = unit_left[unit], unit_right[unit]
        d = leaf_width[a]
        size = (1 << d) * d
        for side in range(1 if b < 0 else 2):  # one call site: numba compiles it once
            leaf = a if side == 0 else b
            dest = tables if b < 0 else scratch
            _leaf_table(leaf_value[leaf], fracs[feat_off[leaf]:feat_off[leaf] + d], d, dest,
                        table_off[unit] if b < 0 else side * size, poly, others)
        if b >= 0 and d > 0:
            _pair_table(d, unit_bits[unit], unit_split[unit], scratch[:size],
                        scratch[size:2 * size], tables, table_off[unit])


@njit(nogil=True, cache=False)
def build_interaction_tables(leaf_value: np.ndarray, leaf_d: np.ndarray,
                             feat_off: np.ndarray, fracs: np.ndarray, pair_off: np.ndarray,
                             tables: np.ndarray, first: int, last: int) -> None:
    """Per leaf and feature pair i<j, over the 2^(d-2) patterns of the others:
    v/2 * sum_c w_{d-1}(c) [z^c] prod_{k != i,j} (p_k + q_k z); the row supplies
    (q_i - p_i)(q_j - p_j)."""
    poly = np.empty(64)
    others = np.empty(64, dtype=np.int64)
    for leaf in range(first, last):
        d = leaf_d[leaf]
        if d < 2:
            continue
        p = fracs[feat_off[leaf]:feat_off[leaf] + d]
        half = 0.5 * leaf_value[leaf]
        w = _weights(d - 1)
        off = pair_off[leaf]
        size = 1 << (d - 2)
        pair = 0
        for i in range(d):
            for j in range(i + 1, d):
                n = 0
                for k in range(d):
                    if k != i and k != j:
                        others[n] = k
                        n += 1
                for mask in range(size):
                    tables[off + pair * size + mask] = half * _weighted_sum(p, others, n, mask,
                                                                            w, poly)
                pair += 1
