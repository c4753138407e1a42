"""SHAP backend throughput and single-case latency, native against shap.TreeExplainer.

Run `python -m bench.bench_explainers` (or `python bench/bench_explainers.py`); writes
bench/results/explainers.json and prints a table. Targets: single-case p95 <= 50 ms for both
frameworks, CatBoost batch >= 20k rows/s. Never imported by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explainers.backends import catboost_shap_mode, explain, warm_reference
from explainers.model import FRAMEWORKS, LoadedModel, catboost_frame
from explainers.schema import FeatureSchema

SEED = 20240601
ROWS = 20_000
TREES = 300
DEPTH = 6
SINGLE_REPEATS = 200
SLOW_SINGLE_REPEATS = 15  # UsePreCalc pays its per-leaf precomputation on every call
DIRECT_BATCH_ROWS = 400  # NoPreCalc is O(rows * leaves); 20k rows would take minutes
# XGBoost Tree SHAP has no per-model precomputation, so its rows/s does not depend on batch size;
# a 4k-row slice of the 20k keeps the run short (pass --xgboost-rows 20000 for all of them).
XGBOOST_BATCH_ROWS = 4_000
LARGE_BATCH_ROWS = 50_000
CROSSOVER_ROWS = (1, 16, 64, 256)
RESULTS = Path(__file__).resolve().parent / "results" / "explainers.json"
TARGET_SINGLE_P95_MS = 50.0
TARGET_CATBOOST_ROWS_PER_S = 20_000.0


@dataclass(frozen=True)
class Batch:
    """Rows explained per second by one backend/mode on one batch."""

    framework: str
    backend: str
    mode: str
    rows: int
    seconds: float
    rows_per_s: float
    cpu_s: float  # process CPU time: near the idle wall time x threads when the host is busy


@dataclass(frozen=True)
class Latency:
    """explain() on one row at a time: the analyst's wait, percentiles over repeats."""

    framework: str
    backend: str
    mode: str
    repeats: int
    p50_ms: float
    p95_ms: float
    cpu_p50_ms: float  # process CPU per call: what the wait would be on an idle core
    cpu_p95_ms: float


def _schema(numeric: int, categorical: dict[str, int]) -> FeatureSchema:
    features: list[dict[str, Any]] = [{"name": f"num_{i:02d}", "dtype": "float"}
                                      for i in range(numeric)]
    features += [{"name": name, "dtype": "category",
                  "categories": [f"{name}_{j}" for j in range(levels)]}
                 for name, levels in categorical.items()]
    return FeatureSchema.from_dict({"target": "is_fraud", "features": features})


def _data(schema: FeatureSchema, rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    signal = rng.normal(size=rows)
    for f in schema.features:
        if f.is_categorical:
            levels = np.array(f.categories, dtype=object)
            codes = rng.integers(0, len(levels), rows)
            cols[f.name] = levels[codes]
            signal += 0.4 * (codes % 3 == 0)
        else:
            values = rng.normal(size=rows)
            cols[f.name] = values
            signal += rng.normal(0, 0.3) * values
    df = pd.DataFrame(cols)
    for name in schema.names[::4]:
        df.loc[rng.random(rows) < 0.05, name] = np.nan
    y = (signal + 0.5 * np.nan_to_num(cols["num_00"] * cols["num_01"]) > 1.0).astype(int)
    return df, y


def _as_registered(name: str, framework: str, schema: FeatureSchema, native: Any,
                   filename: str) -> LoadedModel:
    """The model as the registry hands it out: parsed back from its artifact bytes."""
    fw = FRAMEWORKS[framework]
    return LoadedModel(name, "1", framework, schema, fw.load(fw.dump(native, filename)))


def _xgboost_model(seed: int) -> tuple[LoadedModel, pd.DataFrame]:
    import xgboost as xgb

    schema = _schema(30, {})
    df, y = _data(schema, ROWS, seed)
    dtrain = xgb.DMatrix(schema.model_input(df).frame, label=y)
    params = {"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.1, "seed": seed,
              "nthread": os.cpu_count() or 2}
    booster = xgb.train(params, dtrain, num_boost_round=TREES)
    return _as_registered("bench-xgb", "xgboost", schema, booster, "model.ubj"), df


def _catboost_model(seed: int) -> tuple[LoadedModel, pd.DataFrame]:
    from catboost import CatBoostClassifier

    schema = _schema(20, {"country": 25, "channel": 4, "merchant_category": 40})
    df, y = _data(schema, ROWS, seed)
    model = CatBoostClassifier(iterations=TREES, depth=DEPTH, random_seed=seed, verbose=0,
                               allow_writing_files=False)
    model.fit(catboost_frame(schema.model_input(df).frame, schema), y,
              cat_features=schema.categorical)
    return _as_registered("bench-cb", "catboost", schema, model, "model.cbm"), df


def _timed(call: Callable[[], Any]) -> float:
    return _clocked(call)[0]


def _clocked(call: Callable[[], Any]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    return time.perf_counter() - wall, time.process_time() - cpu


def _batch(model: LoadedModel, df: pd.DataFrame, backend: str, mode: str,
           repeats: int = 2) -> Batch:
    wall, cpu = min(_clocked(lambda: explain(model, df, backend=backend, mode=mode))
                    for _ in range(repeats))
    return Batch(model.framework, backend, mode, len(df), wall, len(df) / wall, cpu)


def _latency(model: LoadedModel, df: pd.DataFrame, backend: str, mode: str,
             repeats: int) -> Latency:
    explain(model, df.iloc[:1], backend=backend, mode=mode)  # warm caches and thread pools
    clocks = np.array([_clocked(lambda i=i: explain(model, df.iloc[[i % len(df)]],
                                                    backend=backend, mode=mode))
                       for i in range(repeats)]) * 1e3
    wall, cpu = np.percentile(clocks, [50, 95], axis=0).T
    return Latency(model.framework, backend, mode, repeats, float(wall[0]), float(wall[1]),
                   float(cpu[0]), float(cpu[1]))


def _crossover(model: LoadedModel, df: pd.DataFrame) -> list[dict[str, Any]]:
    rows = []
    for n in CROSSOVER_ROWS:
        part = df.iloc[:n]
        direct = min(_timed(lambda p=part: explain(model, p, mode="direct")) for _ in range(2))
        precalc = min(_timed(lambda p=part: explain(model, p, mode="precalc")) for _ in range(2))
        rows.append({"rows": n, "direct_ms": direct * 1e3, "precalc_ms": precalc * 1e3,
                     "auto_picks": catboost_shap_mode(model.native, n)})
    return rows


def run(xgboost_rows: int = XGBOOST_BATCH_ROWS) -> dict[str, Any]:
    """Train both bench models, measure every backend, return the results document."""
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    xgb_model, xgb_df = _xgboost_model(SEED)
    cb_model, cb_df = _catboost_model(SEED)
    train_s = time.perf_counter() - started
    reference_setup = {m.framework: _timed(lambda m=m: warm_reference(m))
                       for m in (xgb_model, cb_model)}
    batches = [
        _batch(xgb_model, xgb_df.iloc[:xgboost_rows], "native", "auto", repeats=1),
        _batch(xgb_model, xgb_df.iloc[:xgboost_rows], "reference", "auto", repeats=1),
        _batch(cb_model, cb_df, "native", "auto"),
        _batch(cb_model, cb_df, "native", "precalc"),
        _batch(cb_model, cb_df.iloc[:DIRECT_BATCH_ROWS], "native", "direct", repeats=1),
        _batch(cb_model, cb_df, "reference", "auto"),
    ]
    large = pd.concat([cb_df, cb_df, cb_df], ignore_index=True).iloc[:LARGE_BATCH_ROWS]
    batches.append(_batch(cb_model, large, "native", "precalc", repeats=1))
    latencies = [
        _latency(xgb_model, xgb_df, "native", "auto", SINGLE_REPEATS),
        _latency(xgb_model, xgb_df, "reference", "auto", SINGLE_REPEATS),
        _latency(cb_model, cb_df, "native", "auto", SINGLE_REPEATS),
        _latency(cb_model, cb_df, "native", "direct", SINGLE_REPEATS),
        _latency(cb_model, cb_df, "native", "precalc", SLOW_SINGLE_REPEATS),
        _latency(cb_model, cb_df, "reference", "auto", SINGLE_REPEATS),
    ]
    crossover = _crossover(cb_model, cb_df)
    cb_batch = next(b for b in batches if b.framework == "catboost" and b.mode == "auto")
    targets = {
        "single_p95_ms_max": TARGET_SINGLE_P95_MS,
        "xgboost_single_p95_met": latencies[0].p95_ms <= TARGET_SINGLE_P95_MS,
        "catboost_single_p95_met": latencies[2].p95_ms <= TARGET_SINGLE_P95_MS,
        "catboost_rows_per_s_min": TARGET_CATBOOST_ROWS_PER_S,
        "catboost_batch_met": cb_batch.rows_per_s >= TARGET_CATBOOST_ROWS_PER_S,
    }
    import catboost
    import shap
    import xgboost

    return {
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "machine": platform.machine(), "shap": shap.__version__,
                        "xgboost": xgboost.__version__, "catboost": catboost.__version__,
                        "numpy": np.__version__, "pandas": pd.__version__,
                        "loadavg_1m_start": load_start, "loadavg_1m_end": os.getloadavg()[0]},
        "models": {
            "xgboost": {"trees": TREES, "depth": DEPTH, "features": len(xgb_model.schema.names),
                        "categorical": 0, "rows": ROWS},
            "catboost": {"trees": TREES, "depth": DEPTH, "features": len(cb_model.schema.names),
                         "categorical": len(cb_model.schema.categorical), "rows": ROWS},
        },
        "train_s": train_s,
        "reference_setup_s": reference_setup,
        "batch": [asdict(b) for b in batches],
        "single_case": [asdict(lat) for lat in latencies],
        "catboost_mode_crossover": crossover,
        "targets": targets,
        "total_s": time.perf_counter() - started,
    }


def _reference_of(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in rows if r["framework"] == row["framework"]
                 and r["backend"] == "reference"), None)


def format_table(doc: dict[str, Any]) -> str:
    """The results as plain text: batch rows/s and single-case latency, with reference ratios."""
    lines = [f"{'framework':<9} {'backend':<9} {'mode':<8} {'rows':>7} {'rows/s':>10} "
             f"{'x ref':>6} {'cpu s':>7}"]
    for b in doc["batch"]:
        ref = _reference_of(doc["batch"], b)
        ratio = b["rows_per_s"] / ref["rows_per_s"] if ref else float("nan")
        lines.append(f"{b['framework']:<9} {b['backend']:<9} {b['mode']:<8} {b['rows']:>7} "
                     f"{b['rows_per_s']:>10,.0f} {ratio:>6.2f} {b['cpu_s']:>7.2f}")
    lines += ["", f"{'framework':<9} {'backend':<9} {'mode':<8} {'repeats':>7} {'p50 ms':>8} "
                  f"{'p95 ms':>8} {'ref/this':>8} {'cpu p50':>8} {'cpu p95':>8}"]
    for lat in doc["single_case"]:
        ref = _reference_of(doc["single_case"], lat)
        ratio = ref["p95_ms"] / lat["p95_ms"] if ref else float("nan")
        lines.append(f"{lat['framework']:<9} {lat['backend']:<9} {lat['mode']:<8} "
                     f"{lat['repeats']:>7} {lat['p50_ms']:>8.2f} {lat['p95_ms']:>8.2f} "
                     f"{ratio:>8.2f} {lat['cpu_p50_ms']:>8.2f} {lat['cpu_p95_ms']:>8.2f}")
    lines += ["", "CatBoost shap_mode crossover (ms): rows, NoPreCalc, UsePreCalc, auto picks"]
    lines += [f"  {c['rows']:>5} {c['direct_ms']:>9.1f} {c['precalc_ms']:>9.1f} {c['auto_picks']}"
              for c in doc["catboost_mode_crossover"]]
    env = doc["environment"]
    lines += ["", f"targets: {json.dumps(doc['targets'])}",
              f"host: {env['cpus']} cpus, 1-min load {env['loadavg_1m_start']:.1f} -> "
              f"{env['loadavg_1m_end']:.1f}",
              f"total {doc['total_s']:.0f} s (training {doc['train_s']:.0f} s)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON next to the other bench results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xgboost-rows", type=int, default=XGBOOST_BATCH_ROWS,
                        help="rows of the 20k used for XGBoost batch throughput")
    args = parser.parse_args(argv)
    doc = run(xgboost_rows=args.xgboost_rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(format_table(doc))
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
