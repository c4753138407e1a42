"""FraudLens's fast Tree SHAP kernel against XGBoost's native one, measured in the same run.

Run `python -m bench.bench_kernel`; writes bench/results/kernel.json and prints a table.
Model: 300 trees, depth 6, 30 features, binary:logistic, seeded. Targets: batch >= 10x native
rows/s, single-row explain() p95 <= 2 ms, interactions >= 20x native, tables built in <= 2 s
and <= 100 MB. Never imported by tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from explainers.backends import KERNELS, explain
from explainers.model import FRAMEWORKS, LoadedModel
from explainers.schema import FeatureSchema, ModelInput
from explainers.tree_kernel import KernelRows, prepare_kernel

SEED = 20240601
TRAIN_ROWS = 20_000
TREES = 300
DEPTH = 6
FEATURES = 30
FAST_ROWS = 20_000
NATIVE_ROWS = 4_000  # native Tree SHAP has no per-model setup: rows/s does not depend on size
SHAP_ROWS = 2_000
INTERACTION_ROWS_NATIVE = 100
INTERACTION_ROWS_FAST = 2_000
SINGLE_REPEATS = 300
RESULTS = Path(__file__).resolve().parent / "results" / "kernel.json"
TARGETS = {"batch_ratio_min": 10.0, "single_p95_ms_max": 2.0, "interactions_ratio_min": 20.0,
           "prep_s_max": 2.0, "table_mb_max": 100.0}


def _model(seed: int) -> tuple[LoadedModel, pd.DataFrame]:
    """The bench model, parsed back from its artifact bytes like the registry hands it out."""
    import xgboost as xgb

    schema = FeatureSchema.from_dict({"target": "is_fraud", "features": [
        {"name": f"num_{i:02d}", "dtype": "float"} for i in range(FEATURES)]})
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(TRAIN_ROWS, FEATURES))
    signal = (x @ rng.normal(0, 0.3, FEATURES) + 0.5 * x[:, 0] * x[:, 1]
              + rng.normal(size=TRAIN_ROWS))
    x[rng.random(x.shape) < 0.05] = np.nan
    df = pd.DataFrame(x, columns=schema.names)
    params = {"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.1, "seed": seed,
              "nthread": os.cpu_count() or 2}
    booster = xgb.train(params, xgb.DMatrix(df, label=(signal > 1.0).astype(int)), TREES)
    fw = FRAMEWORKS["xgboost"]
    native = fw.load(fw.dump(booster, "model.ubj"))
    native.set_param({"nthread": os.cpu_count() or 2})
    return LoadedModel("bench-xgb", "1", "xgboost", schema, native), df


def _clocked(call: Callable[[], Any], repeats: int = 1) -> tuple[float, float]:
    """Best wall and process-CPU seconds of a call over repeats."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def _rate(name: str, rows: int, call: Callable[[], Any], repeats: int = 1) -> dict[str, Any]:
    wall, cpu = _clocked(call, repeats)
    return {"name": name, "rows": rows, "seconds": wall, "rows_per_s": rows / wall,
            "cpu_s": cpu, "cpu_rows_per_s": rows / cpu if cpu else float("nan")}


def _latency(name: str, call: Callable[[int], Any], repeats: int) -> dict[str, Any]:
    call(0)
    clocks = []
    for i in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call(i)
        clocks.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall_p, cpu_p = np.percentile(np.array(clocks) * 1e3, [50, 95], axis=0).T
    return {"name": name, "repeats": repeats, "p50_ms": float(wall_p[0]),
            "p95_ms": float(wall_p[1]), "cpu_p50_ms": float(cpu_p[0]),
            "cpu_p95_ms": float(cpu_p[1])}


def _preparation(model: LoadedModel) -> dict[str, Any]:
    """First build (numba compiles here), then a warm build under tracemalloc for peak bytes."""
    first, _ = _clocked(lambda: prepare_kernel(model.native))
    warm, _ = _clocked(lambda: prepare_kernel(model.native), repeats=3)
    tracemalloc.start()
    kernel = prepare_kernel(model.native)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tables = kernel.nbytes
    pairs_s, _ = _clocked(kernel.pair_tables)
    return {"first_s_incl_jit": first, "prep_s": warm, "table_bytes": tables,
            "prep_peak_bytes": peak, "pair_tables_s": pairs_s,
            "pair_table_bytes": kernel.nbytes - tables, "leaves": len(kernel.forest.leaf_d),
            "mean_path_features": float(kernel.forest.leaf_d.mean())}


def _batches(model: LoadedModel, df: pd.DataFrame) -> list[dict[str, Any]]:
    import shap
    import xgboost as xgb

    frame = model.prepare(df.iloc[:FAST_ROWS]).frame
    dmatrix = xgb.DMatrix(frame.iloc[:NATIVE_ROWS], missing=np.nan)
    kernel = KERNELS.kernel(model.native)
    rows = kernel.rows(frame)
    kernel.contributions(KernelRows(rows.x[:, :600].copy()))  # compile the block loop first
    explainer = shap.TreeExplainer(model.native)
    shap_data = xgb.DMatrix(frame.iloc[:SHAP_ROWS], missing=np.nan)
    return [
        _rate("native pred_contribs", NATIVE_ROWS,
              lambda: model.native.predict(dmatrix, pred_contribs=True)),
        _rate("shap.TreeExplainer", SHAP_ROWS,
              lambda: explainer.shap_values(shap_data, check_additivity=False)),
        _rate("fast kernel", FAST_ROWS, lambda: kernel.contributions(rows), repeats=3),
        _rate("explain() native", NATIVE_ROWS,
              lambda: explain(model, df.iloc[:NATIVE_ROWS], backend="native")),
        _rate("explain() auto (fast)", FAST_ROWS, lambda: explain(model, df), repeats=2),
    ]


def _interactions(model: LoadedModel, df: pd.DataFrame) -> list[dict[str, Any]]:
    import xgboost as xgb

    frame = model.prepare(df.iloc[:INTERACTION_ROWS_FAST]).frame
    dmatrix = xgb.DMatrix(frame.iloc[:INTERACTION_ROWS_NATIVE], missing=np.nan)
    kernel = KERNELS.kernel(model.native)
    rows = kernel.rows(frame)
    kernel.interactions(KernelRows(rows.x[:, :40].copy()))  # build pair tables, compile
    return [
        _rate("native pred_interactions", INTERACTION_ROWS_NATIVE,
              lambda: model.native.predict(dmatrix, pred_interactions=True)),
        _rate("fast interactions", INTERACTION_ROWS_FAST, lambda: kernel.interactions(rows),
              repeats=2),
    ]


def _single(model: LoadedModel, df: pd.DataFrame) -> list[dict[str, Any]]:
    prepared = model.prepare(df.iloc[:SINGLE_REPEATS])
    one = [ModelInput(prepared.frame.iloc[[i]], prepared.flagged[[i]])
           for i in range(SINGLE_REPEATS)]
    return [
        _latency("explain() fast, prepared row", lambda i: explain(model, one[i]),
                 SINGLE_REPEATS),
        _latency("explain() fast, raw row", lambda i: explain(model, df.iloc[[i]]),
                 SINGLE_REPEATS),
        _latency("explain() native, prepared row",
                 lambda i: explain(model, one[i], backend="native"), SINGLE_REPEATS),
        _latency("kernel only, one row", lambda i: KERNELS.kernel(model.native).contributions(
            one[i].frame, threads=1), SINGLE_REPEATS),
    ]


def _cpu_ratio(by_name: dict[str, dict[str, Any]], fast: str, native: str) -> float:
    return float(by_name[fast]["cpu_rows_per_s"] / by_name[native]["cpu_rows_per_s"])


def run() -> dict[str, Any]:
    """Train the bench model, measure native, shap and the kernel, return the document."""
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    model, df = _model(SEED)
    train_s = time.perf_counter() - started
    prep = _preparation(model)
    batch = _batches(model, df)
    interactions = _interactions(model, df)
    single = _single(model, df)
    by_name = {r["name"]: r for r in batch + interactions}
    ratio = by_name["fast kernel"]["rows_per_s"] / by_name["native pred_contribs"]["rows_per_s"]
    inter_ratio = (by_name["fast interactions"]["rows_per_s"]
                   / by_name["native pred_interactions"]["rows_per_s"])
    p95 = single[0]["p95_ms"]
    import shap
    import xgboost

    return {
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count(),
                        "machine": platform.machine(), "xgboost": xgboost.__version__,
                        "shap": shap.__version__, "numpy": np.__version__,
                        "loadavg_1m_start": load_start, "loadavg_1m_end": os.getloadavg()[0]},
        "model": {"trees": TREES, "depth": DEPTH, "features": FEATURES,
                  "objective": "binary:logistic", "train_rows": TRAIN_ROWS},
        "threads": os.cpu_count(),
        "train_s": train_s,
        "preparation": prep,
        "batch": batch,
        "interactions": interactions,
        "single_row": single,
        "ratios": {"batch_fast_over_native": ratio, "interactions_fast_over_native": inter_ratio,
                   # CPU seconds per row: fairer than wall time on a busy host
                   "batch_cpu_fast_over_native": _cpu_ratio(by_name, "fast kernel",
                                                            "native pred_contribs"),
                   "interactions_cpu_fast_over_native": _cpu_ratio(
                       by_name, "fast interactions", "native pred_interactions")},
        "targets": {**TARGETS,
                    "batch_met": ratio >= TARGETS["batch_ratio_min"],
                    "single_p95_met": p95 <= TARGETS["single_p95_ms_max"],
                    "interactions_met": inter_ratio >= TARGETS["interactions_ratio_min"],
                    "prep_met": prep["prep_s"] <= TARGETS["prep_s_max"],
                    "table_mb_met": prep["table_bytes"] / 2**20 <= TARGETS["table_mb_max"]},
        "total_s": time.perf_counter() - started,
    }


def format_table(doc: dict[str, Any]) -> str:
    """The results as plain text: throughput with ratios to native, latency, preparation."""
    lines = [f"{'workload':<28} {'rows':>7} {'rows/s':>10} {'cpu rows/s':>11}"]
    for r in doc["batch"] + doc["interactions"]:
        lines.append(f"{r['name']:<28} {r['rows']:>7} {r['rows_per_s']:>10,.0f} "
                     f"{r['cpu_rows_per_s']:>11,.0f}")
    lines += ["", f"{'single row':<32} {'p50 ms':>7} {'p95 ms':>7} {'cpu p50':>8} {'cpu p95':>8}"]
    lines += [f"{s['name']:<32} {s['p50_ms']:>7.2f} {s['p95_ms']:>7.2f} {s['cpu_p50_ms']:>8.2f} "
              f"{s['cpu_p95_ms']:>8.2f}" for s in doc["single_row"]]
    prep, env = doc["preparation"], doc["environment"]
    lines += ["", f"ratios: {json.dumps({k: round(v, 1) for k, v in doc['ratios'].items()})}",
              f"prep {prep['prep_s']:.2f} s (first, with numba compile, "
              f"{prep['first_s_incl_jit']:.1f} s), tables {prep['table_bytes'] / 2**20:.1f} MB, "
              f"peak {prep['prep_peak_bytes'] / 2**20:.1f} MB; pair tables "
              f"{prep['pair_table_bytes'] / 2**20:.1f} MB in {prep['pair_tables_s']:.2f} s",
              f"targets: {json.dumps(doc['targets'])}",
              f"host: {env['cpus']} cpus, 1-min load {env['loadavg_1m_start']:.1f} -> "
              f"{env['loadavg_1m_end']:.1f}; total {doc['total_s']:.0f} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON next to the other bench results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_known_args(argv)  # no options yet; bench/run.py passes its own arguments
    doc = run()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(format_table(doc))
    print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
