"""Does a model fit the serving SLA? Single-row latency and batch throughput measured here,
through the same path scoring uses (schema → native input → margin → probability)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from explainers.errors import ValidationError
from explainers.model import LoadedModel

__all__ = ["Calibration", "LatencyMeasurement", "Sla", "calibrate", "machine_description",
           "measure_latency", "single_row_p99"]


@dataclass(frozen=True)
class Sla:
    """The serving budget a candidate must meet."""

    p99_ms: float = 10.0  # single-row prediction, 99th percentile
    min_rows_per_s: float = 0.0  # batch throughput; 0 means no requirement


@dataclass(frozen=True)
class LatencyMeasurement:
    """What one model costs to serve on this machine. p50/p99 time the model itself on one
    row whose native input (DMatrix / Pool) is already built; `prep_p50_ms` adds building it
    from a one-row frame, as FraudLens does; throughput is end to end."""

    model_id: str
    p50_ms: float
    p99_ms: float
    prep_p50_ms: float
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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, "
            f"load average {load:.1f}")


def measure_latency(model: LoadedModel, frame: pd.DataFrame, *, size_bytes: int,
                    single_row_calls: int = 200, warmup: int = 10, batch_rows: int = 10_000,
                    batch_repeats: int = 3) -> LatencyMeasurement:
    """Time `single_row_calls` one-row predictions (cycling through `frame`'s rows), one-row
    input preparation, and the best of `batch_repeats` end-to-end predictions over
    `batch_rows` rows (the frame tiled to size)."""
    if frame.empty:
        raise ValidationError(f"No rows to time {model.key} on")
    if single_row_calls < 1 or batch_rows < 1:
        raise ValidationError("Latency needs at least one call and one batch row")
    backend, native = model.backend, model.native
    n = min(len(frame), single_row_calls)

    def native_row(i: int) -> object:
        return backend.native_input(native, model.prepare(frame.iloc[[i]]), model.schema)

    prep = np.empty(n)
    inputs = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        inputs.append(native_row(i))
        prep[i] = (time.perf_counter_ns() - t0) / 1e6
    for i in range(min(warmup, n)):
        backend.margin(native, inputs[i])
    times = np.empty(single_row_calls)
    for i in range(single_row_calls):
        x = inputs[i % n]
        t0 = time.perf_counter_ns()
        backend.margin(native, x)
        times[i] = (time.perf_counter_ns() - t0) / 1e6
    batch = frame.iloc[np.arange(batch_rows) % len(frame)]
    best = np.inf
    for _ in range(batch_repeats):
        t0 = time.perf_counter()
        model.predict_proba(model.prepare(batch))
        best = min(best, time.perf_counter() - t0)
    structure = backend.structure(native)
    return LatencyMeasurement(
        model_id=model.key, p50_ms=float(np.percentile(times, 50)),
        p99_ms=float(np.percentile(times, 99)),
        prep_p50_ms=float(np.percentile(prep, 50) + np.percentile(times, 50)),
        single_row_calls=single_row_calls, batch_rows=batch_rows,
        rows_per_s=batch_rows / best if best > 0 else np.inf, size_bytes=int(size_bytes),
        trees=int(structure["trees"]), max_depth=int(structure["max_depth"]),
        machine=machine_description())


# --------------------------------------------------------------------------- calibration
# The rule that keeps one SLA verdict for one model wherever it is timed: before (and after)
# timing, the process times a fixed reference workload; latencies are judged after scaling
# them to the reference machine, defined as one where that workload takes
# REFERENCE_WORKLOAD_MS. A machine twice as slow (or twice as loaded) doubles both the
# model's p99 and the workload, so the scaled p99 and the verdict stay put.
REFERENCE_WORKLOAD_MS = 40.0


def _reference_workload() -> float:
    """A fixed mix of numpy sorting and interpreter work, in ms."""
    a = np.random.default_rng(0).random(200_000)
    t0 = time.perf_counter_ns()
    for _ in range(3):
        np.sort(a)
    total = 0
    for i in range(100_000):
        total += i * i % 7
    return (time.perf_counter_ns() - t0) / 1e6


@dataclass(frozen=True)
class Calibration:
    """The reference workload timed in this process (fastest of several runs, before and
    after the measurement) and the machine's load average beside it."""

    workload_ms: float
    load_1m: float
    reference_ms: float = REFERENCE_WORKLOAD_MS

    @property
    def factor(self) -> float:
        """Multiply a latency measured here by this to get it on the reference machine."""
        return self.reference_ms / self.workload_ms if self.workload_ms > 0 else 1.0

    def scaled(self, ms: float) -> float:
        return ms * self.factor

    def combined(self, other: Calibration) -> Calibration:
        """Before and after together: the mean workload time, the higher load."""
        return Calibration((self.workload_ms + other.workload_ms) / 2,
                           max(self.load_1m, other.load_1m), self.reference_ms)


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def calibrate(repeats: int = 5) -> Calibration:
    """Time the reference workload `repeats` times (the fastest counts: noise only adds)."""
    return Calibration(min(_reference_workload() for _ in range(max(1, repeats))),
                       load_average())


def single_row_p99(predict: Callable[[object], object], inputs: Sequence[object],
                   calls: int = 200, warmup: int = 10, runs: int = 3) -> float:
    """p99 in ms of `predict(x)` over `calls` one-row inputs already built (cycled), after
    `warmup` untimed calls; the lowest p99 of `runs` runs, since a busy machine only adds
    (the single-row part of `measure_latency`, for many variants of one model)."""
    if not inputs or calls < 1 or runs < 1:
        raise ValidationError("Latency needs at least one input, one call and one run")
    for i in range(min(warmup, len(inputs))):
        predict(inputs[i])
    best = np.inf
    for _ in range(runs):
        times = np.empty(calls)
        for i in range(calls):
            x = inputs[i % len(inputs)]
            t0 = time.perf_counter_ns()
            predict(x)
            times[i] = (time.perf_counter_ns() - t0) / 1e6
        best = min(best, float(np.percentile(times, 99)))
    return best
