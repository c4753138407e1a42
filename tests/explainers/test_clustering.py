"""Pattern mining primitives on small seeded data: clustering SHAP vectors, surrogate rules,
week-over-week matching and attribution drift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explainers import clustering, rules
from explainers.rules import Condition, Rule
from explainers.schema import FeatureSchema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = FeatureSchema.from_dict({"target": "is_fraud", "features": [
    {"name": "new_device", "dtype": "bool"},
    {"name": "minutes_since_password_reset", "dtype": "float"},
    {"name": "amount_vs_30d_avg", "dtype": "float"},
    {"name": "txn_count_1h", "dtype": "int"},
    {"name": "channel", "dtype": "category", "categories": ["web", "mobile_app", "api"]},
]})


def _shap_blobs(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Three planted explanation directions (plus sub-patterns and noise) in 6 features."""
    rng = np.random.default_rng(seed)
    centres = np.array([[3.0, 2.0, 0, 0, 0, 0], [0, 0, 3.0, 1.5, 0, 0], [0, 0, 0, 0, 2.5, 2.5]])
    sizes = (60, 40, 25)
    rows, truth = [], []
    for c, n in enumerate(sizes):
        block = centres[c] + rng.normal(0, 0.35, (n, 6))
        block[: n // 3] += 0.8 * centres[c] / np.linalg.norm(centres[c])  # a stronger sub-group
        rows.append(block)
        truth += [c] * n
    order = rng.permutation(sum(sizes))
    return np.vstack(rows)[order], np.array(truth)[order]


def test_planted_explanation_directions_are_recovered_as_clusters() -> None:
    values, truth = _shap_blobs()
    found = clustering.cluster_shap(values, seed=7)
    assert found.k == 3
    assert found.segments >= found.k
    for c in range(3):
        members = truth[found.labels == c]
        assert np.bincount(members).max() / len(members) == 1.0
    assert list(found.sizes()) == [60, 40, 25]  # numbered by size, largest first
    np.testing.assert_allclose(found.centroids[0], values[found.labels == 0].mean(axis=0))
    assert 0.3 < found.silhouette <= 1.0


def test_clustering_is_seeded_and_handles_tiny_inputs() -> None:
    values, _ = _shap_blobs()
    a = clustering.cluster_shap(values, seed=11)
    b = clustering.cluster_shap(values.copy(), seed=11)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert clustering.cluster_shap(np.zeros((0, 4)), seed=1).k == 0
    one = clustering.cluster_shap(np.ones((5, 4)), seed=1)
    assert one.k == 1 and list(one.labels) == [0] * 5


def test_representatives_are_the_cases_closest_to_the_centroid() -> None:
    values = np.array([[0.0, 0.0], [1.0, 1.0], [0.9, 1.0], [5.0, 5.0], [3.0, 3.0]])
    labels = np.array([0, 0, 0, 1, 1])
    centroids = np.array([[1.0, 1.0], [4.0, 4.0]])
    reps = clustering.representatives(values, labels, centroids, per_cluster=2)
    assert list(reps[0]) == [1, 2]
    assert list(reps[1]) == [3, 4]  # equal distance: the earlier row first
    np.testing.assert_allclose(clustering.distances(values, labels, centroids)[:2],
                               [np.sqrt(2), 0.0])


def test_drivers_are_signed_means_strongest_first() -> None:
    d = clustering.drivers(np.array([[1.0, -3.0, 0.5], [3.0, -2.0, -0.5]]), ["a", "b", "c"])
    assert list(d["feature"]) == ["b", "a", "c"]
    assert list(d["mean_shap"]) == [-2.5, 2.0, 0.0]
    assert list(d["mean_abs_shap"]) == [2.5, 2.0, 0.5]


def _account_takeover_frame(n: int = 4000, seed: int = 5) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "new_device": (rng.random(n) < 0.1).astype(int),
        "minutes_since_password_reset": np.where(rng.random(n) < 0.2,
                                                 rng.uniform(0, 3000, n), np.nan),
        "amount_vs_30d_avg": rng.lognormal(0, 0.7, n),
        "txn_count_1h": rng.poisson(1.0, n),
        "channel": rng.choice(["web", "mobile_app", "api"], n),
    })
    planted = rng.random(n) < 0.04
    frame.loc[planted, "new_device"] = 1
    frame.loc[planted, "minutes_since_password_reset"] = rng.uniform(2, 40, planted.sum())
    frame.loc[planted, "amount_vs_30d_avg"] = rng.uniform(5, 20, planted.sum())
    return frame, planted


def test_surrogate_rule_reads_like_the_planted_pattern() -> None:
    frame, planted = _account_takeover_frame()
    rule = rules.surrogate_rule(frame, planted, SCHEMA, seed=7)
    assert 1 <= len(rule.conditions) <= 3
    features = {c.feature for c in rule.conditions}
    assert features <= {"new_device", "minutes_since_password_reset", "amount_vs_30d_avg"}
    hit = rules.rule_mask(frame, rule)
    assert (hit & planted).sum() / planted.sum() >= 0.9
    assert (hit & planted).sum() / hit.sum() >= 0.9
    assert rule.sample_precision == pytest.approx((hit & planted).sum() / hit.sum())
    assert rule.sample_recall == pytest.approx((hit & planted).sum() / planted.sum())
    assert " AND " in rule.text or len(rule.conditions) == 1


def test_sample_weights_make_precision_a_population_estimate() -> None:
    frame, planted = _account_takeover_frame()
    # keep every planted row but only a tenth of the others, each standing for ten
    rng = np.random.default_rng(1)
    keep = planted | (rng.random(len(frame)) < 0.1)
    weights = np.where(planted[keep], 1.0, 10.0)
    rule = rules.surrogate_rule(frame[keep].reset_index(drop=True), planted[keep], SCHEMA,
                                   seed=7, weights=weights)
    hit = rules.rule_mask(frame, rule)
    full_precision = (hit & planted).sum() / hit.sum()
    assert rule.sample_precision == pytest.approx(full_precision, abs=0.1)


@pytest.mark.parametrize(("condition", "text"), [
    (Condition("new_device", "=", 1.0), "new_device = 1"),
    (Condition("minutes_since_password_reset", "<=", 60.0, or_missing=True),
     "(minutes_since_password_reset <= 60 or missing)"),
    (Condition("amount_vs_30d_avg", ">", 4.25), "amount_vs_30d_avg > 4.25"),
    (Condition("txn_count_1h", ">=", 3.0), "txn_count_1h >= 3"),
    (Condition("channel", "in", levels=("api",)), "channel = api"),
    (Condition("channel", "not in", levels=("web", "api"), or_missing=True),
     "(channel not in (web, api) or missing)"),
    (Condition("minutes_since_password_reset", "is missing"),
     "minutes_since_password_reset is missing"),
])
def test_condition_text(condition: Condition, text: str) -> None:
    assert condition.text() == text
    assert Condition.from_dict(json.loads(json.dumps(condition.to_dict()))) == condition


def test_rule_mask_follows_sql_null_semantics() -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, 5.0], "channel": ["web", None, "api"]})
    assert list(rules.rule_mask(frame, [Condition("x", "<=", 2.0)])) == [True, False, False]
    assert list(rules.rule_mask(frame, [Condition("x", "<=", 2.0, or_missing=True)])) == [
        True, True, False]
    assert list(rules.rule_mask(frame, [Condition("channel", "not in", levels=("web",))])) \
        == [False, False, True]
    rule = Rule((Condition("x", ">", 0.0), Condition("channel", "in", levels=("api",))))
    assert list(rules.rule_mask(frame, Rule.from_json(rule.to_json()))) == [False, False, True]
    with pytest.raises(ValueError):
        Condition("x", "in", 1.0)


def test_week_matching_labels_new_growing_shrinking_stable_and_gone() -> None:
    now = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0]])
    before = np.array([[0.9, 0.1, 0], [0, 2.0, 0.1], [0, 0.1, 3.0], [-1.0, 0, 0]])
    matches = clustering.match_weeks(now, [30, 10, 50, 5], before, [10, 20, 48, 7])
    by_now = {m.current: m for m in matches if m.current is not None}
    assert [by_now[i].change for i in range(4)] == ["growing", "shrinking", "stable", "new"]
    assert by_now[0].previous == 0 and by_now[0].similarity == pytest.approx(0.9939, abs=1e-3)
    gone = [m for m in matches if m.current is None]
    assert [(m.previous, m.change, m.size_before) for m in gone] == [(3, "gone", 7)]
    assert clustering.match_weeks(now[:0], [], before, [1, 2, 3, 4])[0].change == "gone"


def test_attribution_drift_ranks_features_by_change_in_reliance() -> None:
    now = np.array([[2.0, 0.1, -1.0], [2.0, -0.1, -1.0]])
    before = np.array([[0.5, 0.1, -1.2], [0.5, 0.1, -0.8]])
    drift = clustering.attribution_drift(now, before, ["a", "b", "c"])
    assert list(drift["feature"]) == ["a", "b", "c"]
    assert drift.loc[0, "change_mean_abs_shap"] == pytest.approx(1.5)
    assert drift.loc[0, "mean_shap_before"] == pytest.approx(0.5)


def test_clustering_module_imports_no_streamlit_or_duckdb() -> None:
    code = ("import json, sys, explainers.clustering, explainers.rules\n"
            "print(json.dumps(sorted(k for k in ('streamlit', 'duckdb', 'shap') "
            "if k in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)}, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
