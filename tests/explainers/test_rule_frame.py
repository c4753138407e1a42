"""`rules.RuleFrame`: the rows rules are fitted on, prepared once for many surrogate rules.
The design matrix, the masks and the rules must be exactly those of the plain frame."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeClassifier

from explainers import rules
from explainers.rules import Condition, RuleFrame
from explainers.schema import FeatureSchema

SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "new_device", "dtype": "bool"},
    {"name": "minutes_since_password_reset", "dtype": "float"},
    {"name": "amount_vs_30d_avg", "dtype": "float"},
    {"name": "txn_count_1h", "dtype": "int"},
    {"name": "channel", "dtype": "category", "categories": ["web", "mobile_app", "api"]},
    {"name": "country", "dtype": "category", "categories": ["US", "GB", "NG"]},
]})


def _frame(seed: int = 5, n: int = 3000) -> pd.DataFrame:
    """Seeded rows with missing values everywhere and a level the schema does not know."""
    rng = np.random.default_rng(seed)

    def holes(values: np.ndarray, share: float) -> np.ndarray:
        out = values.astype(object if values.dtype.kind in "OU" else np.float64)
        out[rng.random(n) < share] = None if out.dtype == object else np.nan
        return out

    return pd.DataFrame({
        "transaction_id": [f"T{i:05d}" for i in range(n)],
        "new_device": holes((rng.random(n) < 0.3).astype(np.float64), 0.02),
        "minutes_since_password_reset": holes(rng.exponential(3000, n), 0.3),
        "amount_vs_30d_avg": holes(rng.lognormal(0, 0.8, n), 0.01),
        "txn_count_1h": pd.array(np.where(rng.random(n) < 0.03, None, rng.poisson(2, n)),
                                 dtype="Int32"),
        "channel": holes(rng.choice(["web", "mobile_app", "api", "carrier_pigeon"], n), 0.05),
        "country": holes(rng.choice(["US", "GB", "NG"], n), 0.0),
    })


def _reference_edges(values: np.ndarray, target: np.ndarray, kind: str,
                     bins: int) -> np.ndarray:
    """`rules._edges` as it was before RuleFrame (every quantile computed per call)."""
    q = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    parts = [values[~np.isnan(values)], values[target & ~np.isnan(values)]]
    found = [np.quantile(p, q) for p in parts if len(p)]
    if not found:
        return np.zeros(0)
    edges = np.concatenate(found)
    edges = np.floor(edges) if kind == "int" else np.array([rules._nice(e) for e in edges])
    if len(parts[1]) and kind != "int":
        low, high = float(parts[1].min()), float(parts[1].max())
        edges = np.concatenate([edges, [rules._round_sig(low, math.floor),
                                        rules._round_sig(high, math.ceil)]])
    elif len(parts[1]):
        edges = np.concatenate([edges, [parts[1].min() - 1, parts[1].max()]])
    return np.unique(edges)


def _reference_design(frame: pd.DataFrame, schema: FeatureSchema, target: np.ndarray,
                      bins: int) -> tuple[np.ndarray, list[tuple]]:
    """The design matrix as it was built before RuleFrame (object comparisons per level)."""
    x = schema.model_input(frame).frame
    cols, meaning = [], []
    for f in schema.features:
        if f.is_categorical:
            values = x[f.name].astype(object)
            for level in f.categories or ():
                cols.append((values == level).to_numpy(dtype=np.float64))
                meaning.append((f.name, "level", level))
            continue
        values = x[f.name].to_numpy(dtype=np.float64)
        if f.dtype == "bool":
            cols.append(values)
            meaning.append((f.name, "bool", None))
            continue
        edges = _reference_edges(values, target, f.dtype, bins)
        binned = np.searchsorted(edges, values, side="left").astype(np.float64)
        binned[np.isnan(values)] = np.nan
        cols.append(binned)
        meaning.append((f.name, f.dtype, edges))
    return np.column_stack(cols), meaning


def _targets(frame: pd.DataFrame) -> list[np.ndarray]:
    rng = np.random.default_rng(9)
    reset = frame["minutes_since_password_reset"].to_numpy()
    amount = frame["amount_vs_30d_avg"].to_numpy()
    return [
        (frame["new_device"] == 1).to_numpy() & (reset < 600),
        (amount > 2.5) & (frame["channel"] == "api").to_numpy(),
        np.isnan(reset) & (frame["country"] == "NG").to_numpy(),
        rng.random(len(frame)) < 0.02,
    ]


def test_design_matrix_is_the_one_built_from_the_plain_frame() -> None:
    frame = _frame()
    prepared = RuleFrame(frame, SCHEMA)
    for target in _targets(frame):
        x, meaning = rules._design(prepared, SCHEMA, target, 16)
        ref_x, ref_meaning = _reference_design(frame, SCHEMA, target, 16)
        assert x.dtype == np.float32 and x.flags.f_contiguous  # what the tree fits on
        np.testing.assert_array_equal(x.astype(np.float64), ref_x)  # bins, 0/1: exact
        # so the tree is the same tree (sklearn fits on float32 either way)
        trees = [DecisionTreeClassifier(max_depth=3, min_samples_leaf=5, random_state=7)
                 .fit(m, target).tree_ for m in (x, ref_x)]
        for attr in ("feature", "threshold", "children_left", "missing_go_to_left", "value"):
            np.testing.assert_array_equal(getattr(trees[0], attr), getattr(trees[1], attr))
        assert [m[:2] for m in meaning] == [m[:2] for m in ref_meaning]
        for m, ref in zip(meaning, ref_meaning, strict=True):
            if isinstance(ref[2], np.ndarray):
                np.testing.assert_array_equal(m[2], ref[2])
            else:
                assert m[2] == ref[2]


def test_rules_from_one_prepared_frame_equal_rules_from_the_plain_frame() -> None:
    frame = _frame()
    weights = np.where(np.arange(len(frame)) % 3 == 0, 1.0, 4.0)
    prepared = RuleFrame(frame, SCHEMA)
    targets = _targets(frame)
    shared = [rules.surrogate_rule(prepared, t, SCHEMA, seed=7, weights=weights)
              for t in reversed(targets)][::-1]  # caches filled in another order
    for target, rule in zip(targets, shared, strict=True):
        alone = rules.surrogate_rule(frame, target, SCHEMA, seed=7, weights=weights)
        assert rule == alone  # conditions and sample precision/recall, exactly
        assert rule.conditions
        np.testing.assert_array_equal(prepared.mask(rule.conditions),
                                      rules.rule_mask(frame, rule))


def test_prepared_masks_follow_rule_mask() -> None:
    frame = _frame()
    prepared = RuleFrame(frame, SCHEMA)
    conditions = [
        (Condition("minutes_since_password_reset", "<=", 600.0, or_missing=True),),
        (Condition("channel", "not in", levels=("web",)), Condition("new_device", "=", 1.0)),
        (Condition("channel", "in", levels=("carrier_pigeon",)),),
        (Condition("txn_count_1h", ">=", 3.0), Condition("amount_vs_30d_avg", "is missing")),
        (Condition("minutes_since_password_reset", "is present"),),
        (),
    ]
    for _ in range(2):  # the second time from the cache
        for rule in conditions:
            np.testing.assert_array_equal(prepared.mask(rule), rules.rule_mask(frame, rule))


def test_a_prepared_frame_belongs_to_its_schema() -> None:
    frame = _frame(n=200)
    other = FeatureSchema.from_dict({"target": "is_fraud", "features": [
        {"name": "amount_vs_30d_avg", "dtype": "float"}]})
    target = np.arange(len(frame)) < 20
    with pytest.raises(ValueError, match="another feature schema"):
        rules.surrogate_rule(RuleFrame(frame, SCHEMA), target, other, seed=7)
