"""`make bench`: every benchmark, each writing JSON to bench/results/."""

from __future__ import annotations

import importlib
import sys

SUITES = ("bench.bench_explainers", "bench.bench_kernel", "bench.bench_store", "bench.bench_lake",
          "bench.bench_pages", "bench.bench_pages_browser", "bench.bench_ray")


def main(argv: list[str]) -> int:
    chosen = [s for s in SUITES if not argv or any(a in s for a in argv)]
    for name in chosen:
        print(f"== {name}", flush=True)
        module = importlib.import_module(name)
        (getattr(module, "main", None) or module.run)()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
