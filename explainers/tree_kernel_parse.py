"""Reads an XGBoost booster's own JSON into the flat path arrays the tree kernel runs on.

Each leaf keeps its root path as steps (feature, test, which way the path goes) and its distinct
features with their cover fractions, which is all exact Tree SHAP needs; sibling leaves also
share one path ("unit") whose last step picks the side. Refusals are explicit.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np

__all__ = ["KernelUnsupported", "ParsedForest", "PathSet", "parse_booster"]

# Objectives whose base_score is a probability turned into a margin by the logit.
LOGIT_BASE = ("binary:logistic", "reg:logistic")
# Objectives whose base_score already is the margin (logitraw's too, in XGBoost >= 3).
IDENTITY_BASE = ("binary:logitraw", "reg:squarederror", "reg:pseudohubererror",
                 "reg:absoluteerror", "binary:hinge")


class KernelUnsupported(Exception):
    """The fast kernel cannot explain this model exactly; the caller falls back to native."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class PathSet:
    """Root paths of leaves (or leaf pairs) flattened for numba: a row's pattern over `bits`
    bits indexes a table row of `width` values, for the features feats[feat_off:+width]."""

    bits: np.ndarray                # int32 per path: pattern bits
    width: np.ndarray               # int32 per path: features written (distinct on the path)
    feat_off: np.ndarray            # int64 per path, into ParsedForest.feats / fracs
    step_off: np.ndarray            # int64 per path plus one, into the step arrays
    step_bit: np.ndarray            # int32: the pattern bit a failed step clears
    step_feature: np.ndarray        # int32
    step_thresh: np.ndarray         # float32: numeric splits go left when x < thresh
    step_want_left: np.ndarray      # uint8: the path goes left at this step
    step_nan_left: np.ndarray       # uint8: missing goes left (default direction)
    step_cat_off: np.ndarray        # int64 into cat_words; -1 for numeric splits
    step_cat_len: np.ndarray        # int32: 32-bit words of the category set

    def select(self, paths: np.ndarray) -> PathSet:
        """A copy of the given paths, in that order."""
        counts = (self.step_off[1:] - self.step_off[:-1])[paths]
        off = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        steps = np.repeat(self.step_off[paths] - off[:-1], counts) + np.arange(off[-1])
        return PathSet(self.bits[paths], self.width[paths], self.feat_off[paths], off,
                       self.step_bit[steps],
                       *(a[steps] for a in (self.step_feature, self.step_thresh,
                                            self.step_want_left, self.step_nan_left,
                                            self.step_cat_off, self.step_cat_len)))


@dataclass
class ParsedForest:
    """Every leaf's root path and cover fractions, plus the leaf pairs the kernel tables."""

    n_features: int
    base_margin: float
    leaf_value: np.ndarray          # float64: leaf weight (times the dart weight)
    feats: np.ndarray               # int32: model feature of each (leaf, local feature)
    fracs: np.ndarray               # float64: product of child/parent covers for that feature
    cat_words: np.ndarray           # uint32 bit sets: a category in the set goes right
    leaves: PathSet                 # one path per leaf: bits == width == d
    units: PathSet                  # sibling leaves share one path and one table
    unit_left: np.ndarray           # int64: the unit's (left) leaf
    unit_right: np.ndarray          # int64: its right sibling leaf, -1 for a lone leaf
    unit_split: np.ndarray          # int32: local index of the pair's split feature
    categories: dict[int, list[Any]] = field(default_factory=dict)  # training levels by feature

    @property
    def leaf_d(self) -> np.ndarray:
        return self.leaves.width


def _f32(values: list[float]) -> np.ndarray:
    """XGBoost keeps floats as float32; JSON prints their shortest repr, so round back first."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def _learner(booster: Any) -> dict[str, Any]:
    doc = json.loads(bytes(booster.save_raw("json")))
    return doc["learner"]


def _check_model(learner: dict[str, Any]) -> tuple[dict[str, Any], np.ndarray | None]:
    """The gbtree model and dart weights, refusing anything but one output of plain trees."""
    params = learner["learner_model_param"]
    if int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
        raise KernelUnsupported("multi-class or multi-output model")
    objective = learner["objective"]["name"]
    if objective not in LOGIT_BASE + IDENTITY_BASE:
        raise KernelUnsupported(f"objective {objective} is not supported by the fast kernel")
    booster = learner["gradient_booster"]
    if booster["name"] == "gbtree":
        return booster["model"], None
    if booster["name"] == "dart":
        return booster["gbtree"]["model"], np.asarray(booster["weight_drop"], dtype=np.float64)
    raise KernelUnsupported(f"{booster['name']} booster has no trees to explain")


def _base_margin(learner: dict[str, Any]) -> float:
    params = learner["learner_model_param"]
    raw = str(params["base_score"]).strip("[]")
    if "," in raw:
        raise KernelUnsupported("vector base_score (multi-output model)")
    base = float(np.float32(float(raw)))
    if learner["objective"]["name"] in IDENTITY_BASE:
        return base
    if not 0.0 < base < 1.0:
        raise KernelUnsupported(f"base_score {base} is not a probability")
    return math.log(base / (1.0 - base))


def _categories(model: dict[str, Any], n_features: int) -> dict[int, list[Any]]:
    """Training category levels per feature (XGBoost >= 3 re-codes inputs by name with them)."""
    cats = model.get("cats") or {}
    out: dict[int, list[Any]] = {}
    for f, enc in enumerate(cats.get("enc", [])[:n_features]):
        values, offsets = enc.get("values", []), enc.get("offsets", [])
        if offsets:
            raw = bytes(values)
            out[f] = [raw[a:b].decode("utf-8") for a, b in pairwise(offsets)]
        elif values:
            out[f] = list(values)
    return out


class _Builder:
    """Collects leaf paths tree by tree into Python lists, then freezes them into arrays."""

    def __init__(self) -> None:
        self.leaf: dict[str, list[Any]] = {k: [] for k in ("value", "d", "feat_off", "step_off",
                                                          "parent", "is_left", "last_new")}
        self.nodes_seen = 0
        self.feats: list[int] = []
        self.fracs: list[float] = []
        self.step: dict[str, list[Any]] = {k: [] for k in ("bit", "feature", "thresh", "want",
                                                          "nan", "cat_off", "cat_len")}
        self.cat_words: list[int] = []

    def category_set(self, tree: dict[str, Any]) -> dict[int, tuple[int, int]]:
        """Bit sets of a tree's categorical nodes, appended to cat_words: node -> (off, len)."""
        out: dict[int, tuple[int, int]] = {}
        nodes = tree.get("categories_nodes", [])
        for node, start, size in zip(nodes, tree.get("categories_segments", []),
                                     tree.get("categories_sizes", []), strict=True):
            chosen = [int(c) for c in tree["categories"][start:start + size]]
            words = [0] * (max(chosen, default=-1) // 32 + 1)
            for c in chosen:
                words[c // 32] |= 1 << (c % 32)
            out[int(node)] = (len(self.cat_words), len(words))
            self.cat_words.extend(words)
        return out

    def add_tree(self, tree: dict[str, Any], weight: float) -> None:
        left, right = tree["left_children"], tree["right_children"]
        feature, default_left = tree["split_indices"], tree["default_left"]
        split_type = tree.get("split_type") or [0] * len(left)
        cond, cover = _f32(tree["split_conditions"]), _f32(tree["sum_hessian"])
        cats = self.category_set(tree)
        stack: list[tuple[int, tuple[tuple[int, bool], ...]]] = [(0, ())]
        while stack:
            node, path = stack.pop()
            if left[node] == -1:
                self.add_leaf(path, float(cond[node]) * weight, feature, cover, cond,
                              default_left, split_type, cats, left, right)
                parent, is_left = path[-1] if path else (-1, False)
                self.leaf["parent"].append(self.nodes_seen + parent if path else -1)
                self.leaf["is_left"].append(is_left)
                continue
            stack.append((right[node], (*path, (node, False))))
            stack.append((left[node], (*path, (node, True))))
        self.nodes_seen += len(left)

    def add_leaf(self, path: tuple[tuple[int, bool], ...], value: float, feature: list[int],
                 cover: np.ndarray, cond: np.ndarray, default_left: list[int],
                 split_type: list[int], cats: dict[int, tuple[int, int]], left: list[int],
                 right: list[int]) -> None:
        local: dict[int, int] = {}
        fracs: list[float] = []
        self.leaf["step_off"].append(len(self.step["bit"]))
        last_new = False
        for node, goes_left in path:
            f = int(feature[node])
            last_new = f not in local
            child = left[node] if goes_left else right[node]
            ratio = float(cover[child] / cover[node])
            if f not in local:
                local[f] = len(fracs)
                fracs.append(1.0)
            fracs[local[f]] *= ratio
            cat_off, cat_len = cats.get(node, (-1, 0)) if split_type[node] == 1 else (-1, 0)
            if split_type[node] == 1 and node not in cats:
                raise KernelUnsupported("categorical split without its category set")
            for key, item in (("bit", local[f]), ("feature", f), ("thresh", cond[node]),
                              ("want", goes_left), ("nan", bool(default_left[node])),
                              ("cat_off", cat_off), ("cat_len", cat_len)):
                self.step[key].append(item)
        self.leaf["value"].append(value)
        self.leaf["last_new"].append(last_new)
        self.leaf["d"].append(len(fracs))
        self.leaf["feat_off"].append(len(self.feats))
        self.feats.extend(local)  # dicts keep insertion order: local index order
        self.fracs.extend(fracs)

    def freeze(self, n_features: int, base_margin: float,
               categories: dict[int, list[Any]]) -> ParsedForest:
        self.leaf["step_off"].append(len(self.step["bit"]))
        s, d = self.step, np.asarray(self.leaf["d"], dtype=np.int32)
        leaves = PathSet(
            bits=d, width=d, feat_off=np.asarray(self.leaf["feat_off"], dtype=np.int64),
            step_off=np.asarray(self.leaf["step_off"], dtype=np.int64),
            step_bit=np.asarray(s["bit"], dtype=np.int32),
            step_feature=np.asarray(s["feature"], dtype=np.int32),
            step_thresh=np.asarray(s["thresh"], dtype=np.float32),
            step_want_left=np.asarray(s["want"], dtype=np.uint8),
            step_nan_left=np.asarray(s["nan"], dtype=np.uint8),
            step_cat_off=np.asarray(s["cat_off"], dtype=np.int64),
            step_cat_len=np.asarray(s["cat_len"], dtype=np.int32))
        left, right, split = _pairs(np.asarray(self.leaf["parent"], dtype=np.int64),
                                    np.asarray(self.leaf["is_left"], dtype=bool), leaves)
        units = leaves.select(left)
        # A pair's last step clears the direction bit, one past the path's features; when the
        # pair splits on a new feature that bit already is the feature's own.
        pair, new = right >= 0, np.asarray(self.leaf["last_new"], dtype=bool)[left]
        units.bits = units.width + (pair & ~new).astype(np.int32)
        units.step_bit[units.step_off[1:][pair] - 1] = units.bits[pair] - 1
        return ParsedForest(
            n_features=n_features, base_margin=base_margin,
            leaf_value=np.asarray(self.leaf["value"], dtype=np.float64),
            feats=np.asarray(self.feats, dtype=np.int32),
            fracs=np.asarray(self.fracs, dtype=np.float64),
            cat_words=np.asarray(self.cat_words, dtype=np.uint32),
            leaves=leaves, units=units, unit_left=left, unit_right=right, unit_split=split,
            categories=categories)


def _pairs(parent: np.ndarray, is_left: np.ndarray,
           leaves: PathSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sibling leaves (DFS puts them next to each other) become one unit: left, right and the
    local index of their parent's split feature; a lone leaf has right -1."""
    sibling = np.zeros(len(parent), dtype=bool)
    if len(parent) > 1:
        sibling[:-1] = (parent[:-1] == parent[1:]) & (parent[:-1] >= 0) & is_left[:-1]
    second = np.zeros(len(parent), dtype=bool)
    second[1:] = sibling[:-1]
    left = np.flatnonzero(~second)
    right = np.where(sibling[left], left + 1, -1)
    last_step = leaves.step_off[left + 1] - 1
    split = np.where(right >= 0, leaves.step_bit[np.maximum(last_step, 0)], -1).astype(np.int32)
    return left, right, split


def parse_booster(booster: Any) -> ParsedForest:
    """Every leaf path of a single-output XGBoost tree model, or KernelUnsupported saying why."""
    learner = _learner(booster)
    model, dart_weights = _check_model(learner)
    trees = model["trees"]
    if any(int(g) != 0 for g in model.get("tree_info", [])):
        raise KernelUnsupported("trees for more than one output group")
    n_features = int(learner["learner_model_param"]["num_feature"])
    builder = _Builder()
    for t, tree in enumerate(trees):
        if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
            raise KernelUnsupported("vector-leaf (multi-target) trees")
        weight = 1.0 if dart_weights is None else float(dart_weights[t])
        builder.add_tree(tree, weight)
    return builder.freeze(n_features, _base_margin(learner), _categories(model, n_features))
