"""Readable rules for a cluster of cases: a shallow surrogate decision tree fitted to pick the
cluster's cases out of all transactions, turned into conditions an analyst can read and a SQL
backtest can replay (`data_access.findings`). numpy/pandas/scikit-learn in, frozen results out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explainers.schema import FeatureSchema

__all__ = ["OPS", "Condition", "Rule", "RuleFrame", "rule_mask", "surrogate_rule"]

OPS = ("<=", "<", ">", ">=", "=", "in", "not in", "is missing", "is present")
_PRESENCE = ("is missing", "is present")


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6g}"


@dataclass(frozen=True)
class Condition:
    """One test on a raw feature. `or_missing`: rows without a value satisfy it too."""

    feature: str
    op: str
    threshold: float | None = None
    levels: tuple[str, ...] = ()
    or_missing: bool = False

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"Unknown operator {self.op!r}; use one of {', '.join(OPS)}")
        wants_threshold = self.op not in ("in", "not in", *_PRESENCE)
        if wants_threshold != (self.threshold is not None):
            raise ValueError(f"Operator {self.op!r} takes "
                             f"{'a threshold' if wants_threshold else 'no threshold'}")

    def text(self) -> str:
        if self.op in _PRESENCE:
            return f"{self.feature} {self.op}"
        if self.op in ("in", "not in"):
            if len(self.levels) == 1:
                body = f"{self.feature} {'=' if self.op == 'in' else '!='} {self.levels[0]}"
            else:
                body = f"{self.feature} {self.op} ({', '.join(self.levels)})"
        else:
            body = f"{self.feature} {self.op} {_fmt(float(self.threshold))}"  # type: ignore[arg-type]
        return f"({body} or missing)" if self.or_missing else body

    def to_dict(self) -> dict:
        return {"feature": self.feature, "op": self.op, "threshold": self.threshold,
                "levels": list(self.levels), "or_missing": self.or_missing}

    @classmethod
    def from_dict(cls, data: dict) -> Condition:
        threshold = data.get("threshold")
        return cls(str(data["feature"]), str(data["op"]),
                   None if threshold is None else float(threshold),
                   tuple(str(v) for v in data.get("levels", ())), bool(data.get("or_missing")))


@dataclass(frozen=True)
class Rule:
    """Conditions joined by AND; precision and recall as estimated on the fitting sample."""

    conditions: tuple[Condition, ...]
    sample_precision: float = math.nan
    sample_recall: float = math.nan

    @property
    def text(self) -> str:
        return " AND ".join(c.text() for c in self.conditions) or "all transactions"

    def to_json(self) -> str:
        return json.dumps([c.to_dict() for c in self.conditions], sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Rule:
        return cls(tuple(Condition.from_dict(d) for d in json.loads(text)))


def _nice(value: float) -> float:
    return float(f"{value:.3g}")


def _edges(values: np.ndarray, target: np.ndarray, kind: str, bins: int,
           everything: np.ndarray | None = None) -> np.ndarray:
    """Candidate thresholds: quantiles of all rows and of the target rows (so both the bulk
    and the tail where a pattern lives are resolved), rounded to read well. `everything`:
    the quantiles of all rows, when already known (`RuleFrame`)."""
    q = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    parts = [values[~np.isnan(values)], values[target & ~np.isnan(values)]]
    found = [everything if i == 0 and everything is not None else np.quantile(p, q)
             for i, p in enumerate(parts) if len(p)]
    if not found:
        return np.zeros(0)
    edges = np.concatenate(found)
    edges = np.floor(edges) if kind == "int" else np.array([_nice(e) for e in edges])
    if len(parts[1]) and kind != "int":  # just outside the target's range, so a rule can
        low, high = float(parts[1].min()), float(parts[1].max())  # keep all of it
        edges = np.concatenate([edges, [_round_sig(low, math.floor),
                                        _round_sig(high, math.ceil)]])
    elif len(parts[1]):
        edges = np.concatenate([edges, [parts[1].min() - 1, parts[1].max()]])
    return np.unique(edges)


def _round_sig(value: float, direction: Callable[[float], float], digits: int = 2) -> float:
    """Round to `digits` significant digits, down (math.floor) or up (math.ceil)."""
    if value == 0 or not math.isfinite(value):
        return value
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(abs(value))))
    return float(direction(value * scale) / scale)


class RuleFrame:
    """The rows rules are fitted on, prepared once for many `surrogate_rule` calls (one per
    cluster of a window): the model input, each category level's 0/1 column, the quantiles of
    all rows and each condition's mask are computed once, not once per rule. Read-only."""

    def __init__(self, frame: pd.DataFrame, schema: FeatureSchema) -> None:
        self.frame = frame
        self.schema = schema
        x = schema.model_input(frame).frame
        self._fixed: dict[str, list[np.ndarray]] = {}  # bools and category levels
        self._numeric: dict[str, np.ndarray] = {}
        self._missing: dict[str, np.ndarray] = {}
        for f in schema.features:
            if f.is_categorical:
                # level i of the schema is code i of the model input's categorical
                codes = np.asarray(x[f.name].cat.codes)
                self._fixed[f.name] = [(codes == i).astype(np.float64)
                                       for i in range(len(f.categories or ()))]
                continue
            values = x[f.name].to_numpy(dtype=np.float64)
            self._missing[f.name] = np.isnan(values)
            if f.dtype == "bool":
                self._fixed[f.name] = [values]
            else:
                self._numeric[f.name] = values
        self._quantiles: dict[tuple[str, int], np.ndarray] = {}
        self._hits: dict[Condition, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.frame)

    def quantiles(self, name: str, bins: int) -> np.ndarray:
        """`_edges`' quantiles of all of a numeric feature's present values."""
        key = (name, bins)
        if key not in self._quantiles:
            values = self._numeric[name][~self._missing[name]]
            q = np.linspace(0.0, 1.0, bins + 1)[1:-1]
            self._quantiles[key] = np.quantile(values, q) if len(values) else np.zeros(0)
        return self._quantiles[key]

    def mask(self, conditions: Sequence[Condition]) -> np.ndarray:
        """`rule_mask` over the frame, each condition's test computed once."""
        mask = np.ones(len(self.frame), dtype=bool)
        for c in conditions:
            if c not in self._hits:
                self._hits[c] = _condition_hit(self.frame, c)
            mask &= self._hits[c]
        return mask


def _design(frame: pd.DataFrame | RuleFrame, schema: FeatureSchema, target: np.ndarray,
            bins: int) -> tuple[np.ndarray, list[tuple]]:
    """Raw features as a matrix for the tree: each numeric as the index of its bin between
    candidate thresholds (NaN kept), bools as 0/1, each category level as a 0/1 column.
    Returns the matrix (float32, column-major: what the tree fits on) and, per column,
    (feature, kind, level or edges)."""
    data = frame if isinstance(frame, RuleFrame) else RuleFrame(frame, schema)
    width = sum(len(f.categories or ()) if f.is_categorical else 1 for f in schema.features)
    x = np.empty((len(data), width), dtype=np.float32, order="F")
    meaning: list[tuple] = []
    for f in schema.features:
        if f.is_categorical:
            for level, column in zip(f.categories or (), data._fixed[f.name], strict=True):
                x[:, len(meaning)] = column
                meaning.append((f.name, "level", level))
            continue
        if f.dtype == "bool":
            x[:, len(meaning)] = data._fixed[f.name][0]
            meaning.append((f.name, "bool", None))
            continue
        values = data._numeric[f.name]
        edges = _edges(values, target, f.dtype, bins, data.quantiles(f.name, bins))
        binned = np.searchsorted(edges, values, side="left").astype(np.float64)
        binned[data._missing[f.name]] = np.nan
        x[:, len(meaning)] = binned
        meaning.append((f.name, f.dtype, edges))
    return x, meaning


def _condition(meaning: tuple, threshold: float, left: bool, missing_left: bool) -> Condition:
    """The condition for taking the left (x <= t) or right branch of one tree split."""
    feature, kind, extra = meaning
    or_missing = missing_left == left
    if kind == "level":  # indicator: missing and other levels are 0
        return Condition(feature, "not in" if left else "in", levels=(extra,), or_missing=left)
    if kind == "bool":
        return Condition(feature, "=", 0.0 if left else 1.0, or_missing=or_missing)
    if not math.isfinite(threshold):  # sklearn's split of missing against present values
        return Condition(feature, "is present" if left else "is missing")
    # binned: bin <= b  <=>  value <= edges[b]
    edge = float(extra[min(math.floor(threshold), len(extra) - 1)])
    if kind == "int":
        if left:
            return Condition(feature, "<=", edge, or_missing=or_missing)
        return Condition(feature, ">=", edge + 1, or_missing=or_missing)
    return Condition(feature, "<=" if left else ">", edge, or_missing=or_missing)


def _simplify(conditions: list[Condition]) -> tuple[Condition, ...]:
    """Merge conditions on one feature that a path repeats (keep the tightest)."""
    out: list[Condition] = []
    for c in conditions:
        same = [i for i, o in enumerate(out) if o.feature == c.feature]
        merged = False
        for i in same:
            o = out[i]
            if o.op == "in" and c.op == "not in":
                merged = True  # "= A" already excludes every other level
            elif o.op == "not in" and c.op == "in":
                out[i], merged = c, True
            elif o.op == c.op == "not in":
                levels = tuple(sorted(set(o.levels) | set(c.levels)))
                out[i], merged = Condition(c.feature, "not in", levels=levels,
                                           or_missing=o.or_missing and c.or_missing), True
            elif o.op == c.op and o.op in ("<=", "<"):
                keep = c if c.threshold < o.threshold else o  # type: ignore[operator]
                out[i], merged = Condition(keep.feature, keep.op, keep.threshold,
                                           or_missing=o.or_missing and c.or_missing), True
            elif o.op == c.op and o.op in (">", ">="):
                keep = c if c.threshold > o.threshold else o  # type: ignore[operator]
                out[i], merged = Condition(keep.feature, keep.op, keep.threshold,
                                           or_missing=o.or_missing and c.or_missing), True
            if merged:
                break
        if not merged:
            out.append(c)
    return tuple(out)


def rule_mask(frame: pd.DataFrame, rule: Rule | Sequence[Condition]) -> np.ndarray:
    """Which rows of a transactions frame satisfy the rule (SQL semantics: a missing value
    fails a test unless the condition says `or missing`)."""
    conditions = rule.conditions if isinstance(rule, Rule) else tuple(rule)
    mask = np.ones(len(frame), dtype=bool)
    for c in conditions:
        mask &= _condition_hit(frame, c)
    return mask


def _condition_hit(frame: pd.DataFrame, c: Condition) -> np.ndarray:
    """Which rows satisfy one condition (`rule_mask`'s semantics)."""
    col = frame[c.feature]
    missing = col.isna().to_numpy()
    if c.op in _PRESENCE:
        return missing if c.op == "is missing" else ~missing
    if c.op in ("in", "not in"):
        hit = col.astype(object).isin(list(c.levels)).to_numpy()
        hit = hit if c.op == "in" else ~hit & ~missing
    else:
        v = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        t = float(c.threshold)  # type: ignore[arg-type]
        with np.errstate(invalid="ignore"):
            hit = {"<=": v <= t, "<": v < t, ">": v > t, ">=": v >= t, "=": v == t}[c.op]
        hit = hit & ~missing
    if c.or_missing:
        hit = hit | missing
    return hit


def surrogate_rule(frame: pd.DataFrame | RuleFrame, target: np.ndarray,
                   schema: FeatureSchema, *, seed: int, weights: np.ndarray | None = None,
                   max_depth: int = 3, min_samples_leaf: int = 5, bins: int = 16) -> Rule:
    """A rule of at most `max_depth` conditions on raw features that picks out `target` rows.

    A shallow decision tree is fitted with classes balanced; the rule is the path to the leaf
    with the best F1, judged with `weights` (how many transactions each sampled row stands
    for), so precision and recall estimate what the rule would do on the whole window.
    Fitting several rules on the same rows: pass them as one `RuleFrame` (same rules, faster).
    """
    from sklearn.tree import DecisionTreeClassifier

    y = np.asarray(target, dtype=bool)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    if not y.any() or y.all():
        return Rule((), 1.0 if y.all() else math.nan, 1.0 if y.any() else math.nan)
    if isinstance(frame, RuleFrame) and frame.schema != schema:
        raise ValueError("The RuleFrame was prepared for another feature schema")
    data = frame if isinstance(frame, RuleFrame) else RuleFrame(frame, schema)
    x, meaning = _design(data, schema, y, bins)
    balance = np.where(y, w[~y].sum() / w[y].sum(), 1.0) * w
    tree = DecisionTreeClassifier(max_depth=max_depth, min_samples_leaf=min_samples_leaf,
                                  random_state=seed).fit(x, y, sample_weight=balance)
    t = tree.tree_
    missing_left = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=np.uint8))
    best: tuple[tuple[float, float, int], list[Condition]] | None = None
    stack: list[tuple[int, list[Condition]]] = [(0, [])]
    leaf_of = tree.apply(x)
    total_pos = w[y].sum()
    while stack:
        node, path = stack.pop()
        left, right = t.children_left[node], t.children_right[node]
        if left == -1:
            rows = leaf_of == node
            tp = w[rows & y].sum()
            fp = w[rows & ~y].sum()
            f1 = 2 * tp / (2 * tp + fp + (total_pos - tp)) if tp else 0.0
            key = (f1, tp, -node)
            if best is None or key > best[0]:
                best = (key, path)
            continue
        m = meaning[t.feature[node]]
        thr = float(t.threshold[node])
        ml = bool(missing_left[node])
        stack.append((right, [*path, _condition(m, thr, False, ml)]))
        stack.append((left, [*path, _condition(m, thr, True, ml)]))
    assert best is not None
    seen_missing = {m[0] for j, m in enumerate(meaning) if np.isnan(x[:, j]).any()}
    conditions = _simplify([
        c if c.feature in seen_missing or c.op in ("in", "not in", *_PRESENCE)
        else Condition(c.feature, c.op, c.threshold, c.levels, False) for c in best[1]])
    conditions = _prune(data, conditions, y, w)
    hit = data.mask(conditions)
    tp = w[hit & y].sum()
    alerts = w[hit].sum()
    return Rule(conditions, float(tp / alerts) if alerts else math.nan,
                float(tp / total_pos) if total_pos else math.nan)


def _f1(data: RuleFrame, conditions: Sequence[Condition], y: np.ndarray,
        w: np.ndarray) -> float:
    hit = data.mask(conditions)
    tp = w[hit & y].sum()
    denominator = w[hit].sum() + w[y].sum()
    return float(2 * tp / denominator) if denominator else 0.0


def _prune(data: RuleFrame, conditions: tuple[Condition, ...], y: np.ndarray,
           w: np.ndarray, tolerance: float = 0.01) -> tuple[Condition, ...]:
    """Drop conditions that barely help (F1 within `tolerance` without them): shorter rules
    read better and carry over to other weeks better."""
    current = list(conditions)
    full = _f1(data, current, y, w)
    while len(current) > 1:
        trials = [(_f1(data, current[:i] + current[i + 1:], y, w), -i)
                  for i in range(len(current))]
        best_score, neg_i = max(trials)
        if best_score < full - tolerance:
            break
        current.pop(-neg_i)
    return tuple(current)
