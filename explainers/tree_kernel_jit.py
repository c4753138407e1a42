"""Numba row passes of the tree kernel over its tables (built by tree_kernel_tables).

A path (a leaf, or two sibling leaves) is a list of split steps; a row's pattern starts with all
bits set and each step the row fails clears one bit. The pattern indexes the path's table, whose
row holds the path's contribution to each of its features: a few comparisons and additions per
(row, path) instead of XGBoost's O(depth^2) walk. All loops release the GIL; callers run row
blocks on Python threads.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["Paths", "contributions_row", "contributions_rows", "interactions_rows"]

ROW_BLOCK = 512  # rows per pass over the paths: x block (60 KB) and phi (120 KB) stay in L2
INTERACTION_BLOCK = 16
PREFETCH_AHEAD = 16  # a lone row's table rows are cache misses: ask for them this many early


@intrinsic
def _prefetch(typingctx: object, array: types.Array, index: types.Integer) -> tuple:
    """llvm.prefetch of array[index] (read, keep in all cache levels); never faults."""

    def codegen(context: object, builder: ir.IRBuilder, signature: object, args: list) -> object:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0")
        address = builder.bitcast(builder.gep(data, [args[1]]), i8p)
        builder.call(fn, [address, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, index), codegen


class Paths(NamedTuple):
    """One PathSet as numba sees it (see tree_kernel_parse.PathSet), with feats and categories."""

    bits: np.ndarray
    width: np.ndarray
    feat_off: np.ndarray
    step_off: np.ndarray
    feats: np.ndarray
    step_bit: np.ndarray
    step_feature: np.ndarray
    step_thresh: np.ndarray
    step_want_left: np.ndarray
    step_nan_left: np.ndarray
    step_cat_off: np.ndarray
    step_cat_len: np.ndarray
    cat_words: np.ndarray


@njit(nogil=True, cache=False)
def _in_set(v: float, s: int, paths: Paths) -> bool:
    """Whether category code v is in step s's set (such categories go right)."""
    c = int(v)
    off = paths.step_cat_off[s]
    return (v >= 0.0 and c < 32 * paths.step_cat_len[s]
            and (paths.cat_words[off + c // 32] >> np.uint32(c % 32)) & 1 == 1)


@njit(nogil=True, cache=False)
def _patterns(x: np.ndarray, r0: int, n: int, path: int, paths: Paths, pat: np.ndarray) -> None:
    """pat[r] = the path's pattern for rows r0..r0+n-1 of feature-major float32 x."""
    full = (1 << paths.bits[path]) - 1
    for r in range(n):
        pat[r] = full
    for s in range(paths.step_off[path], paths.step_off[path + 1]):
        col = x[paths.step_feature[s]]
        clear = ~(1 << paths.step_bit[s])
        want = paths.step_want_left[s] != 0
        nan_fails = (paths.step_nan_left[s] != 0) != want
        if paths.step_cat_off[s] < 0:
            thr = paths.step_thresh[s]
            for r in range(n):
                v = col[r0 + r]
                fails = nan_fails if v != v else (v < thr) != want
                if fails:
                    pat[r] &= clear
        else:
            for r in range(n):
                v = col[r0 + r]
                fails = nan_fails if v != v else _in_set(v, s, paths) == want
                if fails:
                    pat[r] &= clear


@njit(nogil=True, cache=False)
def contributions_row(x: np.ndarray, r: int, paths: Paths, table_off: np.ndarray,
                      tables: np.ndarray, out: np.ndarray, pos: np.ndarray) -> None:
    """out[r] += phi of row r alone: every path's table position first (inline, without
    branches on the data), then one gather pass whose loads do not wait on each other."""
    xr = np.empty(x.shape[0], dtype=np.float32)
    for f in range(x.shape[0]):
        xr[f] = x[f, r]
    n_paths = len(paths.bits)
    for path in range(n_paths):
        pattern = (1 << paths.bits[path]) - 1
        for s in range(paths.step_off[path], paths.step_off[path + 1]):
            v = xr[paths.step_feature[s]]
            want = paths.step_want_left[s] != 0
            if paths.step_cat_off[s] >= 0 or v != v:
                if v != v:
                    fails = (paths.step_nan_left[s] != 0) != want
                else:
                    fails = _in_set(v, s, paths) == want
            else:
                fails = (v < paths.step_thresh[s]) != want
            pattern &= ~(np.int64(fails) << paths.step_bit[s])
        pos[path] = table_off[path] + pattern * paths.width[path]
    row = out[r]
    for path in range(n_paths):
        if path + PREFETCH_AHEAD < n_paths:
            _prefetch(tables, pos[path + PREFETCH_AHEAD])
        base, fo = pos[path], paths.feat_off[path]
        for k in range(paths.width[path]):
            row[paths.feats[fo + k]] += tables[base + k]


@njit(nogil=True, cache=False)
def contributions_rows(x: np.ndarray, r0: int, r1: int, paths: Paths, table_off: np.ndarray,
                       tables: np.ndarray, out: np.ndarray) -> None:
    """out[r, f] += phi_f of rows r0..r1-1: paths outside, a block of rows inside, summed in a
    feature-major block (a gather per feature). Explicit loops: numba compiles slice arithmetic
    several times slower."""
    pat = np.empty(ROW_BLOCK, dtype=np.int64)
    acc = np.empty((out.shape[1], ROW_BLOCK))
    for b0 in range(r0, r1, ROW_BLOCK):
        n = min(ROW_BLOCK, r1 - b0)
        for f in range(out.shape[1]):
            for r in range(n):
                acc[f, r] = 0.0
        for path in range(len(paths.bits)):
            d = paths.width[path]
            if d == 0:
                continue
            _patterns(x, b0, n, path, paths, pat)
            off, fo = table_off[path], paths.feat_off[path]
            for k in range(d):
                row = acc[paths.feats[fo + k]]
                for r in range(n):
                    row[r] += tables[off + pat[r] * d + k]
        for f in range(out.shape[1]):
            for r in range(n):
                out[b0 + r, f] += acc[f, r]


@njit(nogil=True, cache=False)
def _remove_bit(mask: int, b: int) -> int:
    return (mask & ((1 << b) - 1)) | ((mask >> (b + 1)) << b)


@njit(nogil=True, cache=False)
def _leaf_interactions(out: np.ndarray, r: int, pattern: int, feats: np.ndarray,
                       p: np.ndarray, d: int, pairs: np.ndarray, off: int) -> None:
    """Adds one leaf's pair terms a_i a_j B_ij for one row, and takes them off both diagonals."""
    size = 1 << (d - 2)
    pair = 0
    for i in range(d):
        ai = ((pattern >> i) & 1) - p[i]
        fi = feats[i]
        for j in range(i + 1, d):
            mask = _remove_bit(_remove_bit(pattern, j), i)
            val = ai * (((pattern >> j) & 1) - p[j]) * pairs[off + pair * size + mask]
            fj = feats[j]
            out[r, fi, fj] += val
            out[r, fj, fi] += val
            out[r, fi, fi] -= val
            out[r, fj, fj] -= val
            pair += 1


@njit(nogil=True, cache=False)
def interactions_rows(x: np.ndarray, r0: int, r1: int, leaves: Paths, fracs: np.ndarray,
                      pair_off: np.ndarray, pairs: np.ndarray, out: np.ndarray) -> None:
    """out[r, i, j] += Phi_ij (i != j) of rows r0..r1-1 over leaf paths, and -Phi_ij on both
    diagonals; the caller adds phi_i to the diagonal."""
    pat = np.empty(INTERACTION_BLOCK, dtype=np.int64)
    for b0 in range(r0, r1, INTERACTION_BLOCK):
        n = min(INTERACTION_BLOCK, r1 - b0)
        for leaf in range(len(leaves.bits)):
            d = leaves.width[leaf]
            if d < 2:
                continue
            _patterns(x, b0, n, leaf, leaves, pat)
            fo = leaves.feat_off[leaf]
            feats, p = leaves.feats[fo:fo + d], fracs[fo:fo + d]
            for r in range(n):
                _leaf_interactions(out, b0 + r, pat[r], feats, p, d, pairs, pair_off[leaf])
