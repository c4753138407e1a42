"""The house's boundaries at run time (import-linter checks them statically in `make lint`):
explainers stays pure computation, and nothing below the Streamlit shell loads Streamlit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["explainers.explanation", "explainers.backends", "explainers.importance",
           "explainers.interactions", "explainers.reason_codes", "explainers.neighbours"]
# everything that is not the shell, the pages or the router
CORE_PACKAGES = ["explainers", "data_access", "jobs", "app.services", "app.views", "app.cli"]


def _loaded_after_importing(modules: list[str], watched: tuple[str, ...]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(k for k in {watched!r} if k in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)}, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _core_modules() -> list[str]:
    found = []
    for package in CORE_PACKAGES:
        for path in sorted((ROOT / package.replace(".", "/")).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_explainer_modules_import_no_streamlit_duckdb_or_shap() -> None:
    assert _loaded_after_importing(MODULES, ("streamlit", "duckdb", "shap")) == []


def test_no_module_outside_the_shell_loads_streamlit() -> None:
    modules = _core_modules()
    assert "app.services.case" in modules and "jobs.demo_world.world" in modules
    assert _loaded_after_importing(modules, ("streamlit",)) == []
