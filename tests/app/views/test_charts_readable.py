"""Issue #17 chart defects: importance bars are neutral and can show every feature, the
dependence plot offers a log x scale and keeps its legend title whole."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.views import charts


def _importance(n: int) -> pd.DataFrame:
    return pd.DataFrame({"feature": [f"f{i}" for i in range(n)],
                         "mean_abs_shap": np.linspace(1.0, 0.1, n)})


def test_importance_bars_are_neutral_not_towards_fraud_red() -> None:
    spec = charts.importance_chart(_importance(3), "mean_abs_shap", "Mean |SHAP|").to_dict()
    assert spec["mark"]["color"] == charts.NEUTRAL != charts.RAISES


def test_importance_shows_every_feature_when_asked() -> None:
    frame = _importance(22)
    assert len(charts.importance_chart(frame, "mean_abs_shap", "t").rows) == 20
    assert len(charts.importance_chart(frame, "mean_abs_shap", "t", top_n=None).rows) == 22


def test_dependence_log_scale_and_whole_legend_title() -> None:
    points = pd.DataFrame({"value": [0.0, 1.0, 2.0, 30.0, 400.0], "shap": [0.1] * 5,
                           "color": [1, 2, 3, 4, 5]})
    name = "minutes_since_password_reset"
    spec = charts.dependence_chart(points, "account_age_days", name, categorical=False,
                                   color_categorical=False, log_x=True).to_dict()
    assert spec["encoding"]["x"]["scale"]["type"] == "symlog"
    legend = spec["encoding"]["color"]["legend"]
    assert legend["orient"] == "bottom" and legend["titleLimit"] >= 400
    linear = charts.dependence_chart(points, "account_age_days", name, categorical=False,
                                     color_categorical=False).to_dict()
    assert linear["encoding"]["x"]["scale"].get("type") is None


def test_one_transaction_timeline_spans_dates_not_milliseconds() -> None:
    frame = pd.DataFrame({"transaction_id": ["T1"], "amount_usd": [12.3], "score": [0.4],
                          "event_time": [pd.Timestamp("2026-10-30 07:00", tz="UTC")],
                          "is_case": [True]})
    x = charts.timeline_chart(frame).to_dict()["layer"][0]["encoding"]["x"]
    low, high = (pd.Timestamp(year=d["year"], month=d["month"], day=d["date"])
                 for d in x["scale"]["domain"])
    assert high - low >= pd.Timedelta(days=60)  # 30 days either side of the case
    assert "%Y" in x["axis"]["format"] and "%d" in x["axis"]["format"]
