"""Similar past cases by distance in SHAP space."""

from __future__ import annotations

import numpy as np
import pytest

from explainers.explanation import ExplainError
from explainers.neighbours import nearest_cases


def test_nearest_cases_are_closest_first_with_distances() -> None:
    candidates = np.array([[3.0, 4.0], [0.0, 1.0], [10.0, 0.0], [0.0, 0.0]])
    indices, distances = nearest_cases(np.zeros(2), candidates, k=3)
    assert indices.tolist() == [3, 1, 0]
    np.testing.assert_allclose(distances, [0.0, 1.0, 5.0])


def test_ties_go_to_the_lower_index_even_at_the_cut() -> None:
    candidates = np.array([[2.0], [1.0], [-1.0], [1.0], [-2.0], [0.5]])
    found = nearest_cases(np.zeros(1), candidates, k=3)
    assert found.indices.tolist() == [5, 1, 2]
    assert nearest_cases(np.zeros(1), candidates, k=5).indices.tolist() == [5, 1, 2, 3, 0]


def test_agrees_with_a_full_sort_on_random_vectors() -> None:
    rng = np.random.default_rng(0)
    candidates = rng.integers(-2, 3, size=(500, 4)).astype(float)  # many exact ties
    query = rng.integers(-2, 3, size=4).astype(float)
    d = np.linalg.norm(candidates - query, axis=1)
    expected = np.lexsort((np.arange(500), d))[:25]
    assert nearest_cases(query, candidates, k=25).indices.tolist() == expected.tolist()


def test_k_larger_than_candidates_returns_all_and_bad_shapes_are_refused() -> None:
    assert nearest_cases(np.zeros(2), np.ones((2, 2)), k=5).indices.tolist() == [0, 1]
    assert nearest_cases(np.zeros(2), np.ones((0, 2)), k=5).indices.size == 0
    with pytest.raises(ExplainError):
        nearest_cases(np.zeros(3), np.ones((2, 2)))
    with pytest.raises(ExplainError):
        nearest_cases(np.zeros(2), np.ones((2, 2)), k=0)
    with pytest.raises(ExplainError, match="finite"):
        nearest_cases(np.array([np.nan, 0.0]), np.ones((2, 2)))
