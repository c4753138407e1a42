"""The Explanation contract: shape checks, margins, slicing, the wide table, additivity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from explainers.errors import FraudLensError
from explainers.explanation import AdditivityError, ExplainError, Explanation


def small_explanation() -> Explanation:
    data = pd.DataFrame({"a": [1.0, np.nan, 3.0],
                         "b": pd.Categorical(["US", None, "GB"], categories=["US", "GB"])})
    return Explanation(values=np.array([[0.5, -0.25], [0.0, 1.0], [-1.0, 0.125]]),
                       base_value=-2.0, feature_names=("a", "b"), data=data,
                       flagged=np.array([False, True, False]), row_ids=np.array([10, 11, 12]))


def test_margin_is_base_plus_row_sums() -> None:
    expl = small_explanation()
    np.testing.assert_allclose(expl.margin(), [-1.75, -1.0, -2.875])
    assert len(expl) == 3
    assert expl.output_space == "log-odds"


def test_explanation_is_frozen_and_its_arrays_read_only() -> None:
    expl = small_explanation()
    with pytest.raises(dataclasses.FrozenInstanceError):
        expl.base_value = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        expl.values[0, 0] = 9.0


def test_row_keeps_data_flags_and_ids() -> None:
    row = small_explanation().row(1)
    assert len(row) == 1
    assert row.row_ids.tolist() == [11]
    assert row.flagged.tolist() == [True]
    assert np.isnan(row.data["a"].iloc[0]) and pd.isna(row.data["b"].iloc[0])
    np.testing.assert_allclose(row.margin(), [-1.0])


def test_cohort_slices_by_mask_and_positions() -> None:
    expl = small_explanation()
    cohort = expl[np.array([True, False, True])]
    assert cohort.row_ids.tolist() == [10, 12]
    assert expl[1:].row_ids.tolist() == [11, 12]
    assert expl[[2, 0]].values[:, 0].tolist() == [-1.0, 0.5]


def test_to_frame_is_base_value_then_one_column_per_feature() -> None:
    frame = small_explanation().to_frame()
    assert list(frame.columns) == ["base_value", "a", "b"]
    assert frame.index.tolist() == [10, 11, 12]
    assert frame.loc[12, "b"] == 0.125
    assert (frame["base_value"] == -2.0).all()


def test_additivity_error_names_max_deviation_and_row() -> None:
    expl = small_explanation()
    expl.check_additivity(expl.margin() + 5e-5)
    with pytest.raises(AdditivityError, match=r"max deviation 0\.3 at row id 11") as err:
        expl.check_additivity(expl.margin() + np.array([0.0, 0.3, 0.1]))
    assert isinstance(err.value, FraudLensError)


def test_nan_margin_is_not_additive() -> None:
    expl = small_explanation()
    with pytest.raises(AdditivityError):
        expl.check_additivity(np.array([np.nan, -1.0, -2.875]))


@pytest.mark.parametrize("change", [
    {"feature_names": ("a",)},
    {"values": np.zeros((2, 2))},
    {"values": np.zeros(3)},
    {"output_space": "probability"},
    {"flagged": np.zeros(2, dtype=bool)},
])
def test_inconsistent_explanation_is_refused(change: dict) -> None:
    fields = {f.name: getattr(small_explanation(), f.name)
              for f in dataclasses.fields(Explanation)}
    fields.update(change)
    with pytest.raises(ExplainError):
        Explanation(**fields)


def test_unknown_feature_lists_the_known_ones() -> None:
    with pytest.raises(ExplainError, match="a, b"):
        small_explanation().column("c")
