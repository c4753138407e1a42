"""Does a model fit the serving SLA? Single-row latency and batch throughput measured here,
through the same path scoring uses (schema → native input → margin → probability)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_access.errors import ValidationError
from explainers.model import LoadedModel

__all__ = ["LatencyMeasurement", "Sla", "machine_description", "measure_latency"]


@dataclass(frozen=True)
class Sla:
    """The serving budget a candidate must meet."""

    p99_ms: float = 10.0  # single-row prediction, 99th percentile
    min_rows_per_s: float = 0.0  # batch throughput; 0 means no requirement


@dataclass(frozen=True)
class LatencyMeasurement:
    """What one model costs to serve on this machine."""

    model_id: str
    p50_ms: float
    p99_ms: float
    single_row_calls: int
    batch_rows: int
    rows_per_s: float
    size_bytes: int
    trees: int
    max_depth: int
    machine: str

    def meets(self, sla: Sla) -> bool:
        return self.p99_ms <= sla.p99_ms and self.rows_per_s >= sla.min_rows_per_s

    def failures(self, sla: Sla) -> tuple[str, ...]:
        """Why the SLA is missed, in words; empty when it is met."""
        out = []
        if self.p99_ms > sla.p99_ms:
            out.append(f"p99 {self.p99_ms:.2f} ms > {sla.p99_ms:g} ms")
        if self.rows_per_s < sla.min_rows_per_s:
            out.append(f"{self.rows_per_s:,.0f} rows/s < {sla.min_rows_per_s:,.0f} rows/s")
        return tuple(out)


def machine_description() -> str:
    return f"{platform.machine()} · {os.cpu_count()} CPUs · {platform.system()}"


def measure_latency(model: LoadedModel, frame: pd.DataFrame, *, size_bytes: int,
                    single_row_calls: int = 200, warmup: int = 20, batch_rows: int = 10_000,
                    batch_repeats: int = 3) -> LatencyMeasurement:
    """Time `single_row_calls` one-row predictions (cycling through `frame`'s rows) and the
    best of `batch_repeats` predictions over `batch_rows` rows (the frame tiled to size)."""
    if frame.empty:
        raise ValidationError(f"No rows to time {model.key} on")
    if single_row_calls < 1 or batch_rows < 1:
        raise ValidationError("Latency needs at least one call and one batch row")

    def predict(rows: pd.DataFrame) -> np.ndarray:
        return model.predict_proba(model.prepare(rows))

    n = len(frame)
    for i in range(warmup):
        predict(frame.iloc[[i % n]])
    times = np.empty(single_row_calls)
    for i in range(single_row_calls):
        row = frame.iloc[[i % n]]
        t0 = time.perf_counter_ns()
        predict(row)
        times[i] = (time.perf_counter_ns() - t0) / 1e6
    batch = frame.iloc[np.arange(batch_rows) % n]
    best = np.inf
    for _ in range(batch_repeats):
        t0 = time.perf_counter()
        predict(batch)
        best = min(best, time.perf_counter() - t0)
    structure = model.backend.structure(model.native)
    return LatencyMeasurement(
        model_id=model.key, p50_ms=float(np.percentile(times, 50)),
        p99_ms=float(np.percentile(times, 99)), single_row_calls=single_row_calls,
        batch_rows=batch_rows, rows_per_s=batch_rows / best if best > 0 else np.inf,
        size_bytes=int(size_bytes), trees=int(structure["trees"]),
        max_depth=int(structure["max_depth"]), machine=machine_description())
