"""explainers/ stays pure computation: no UI or warehouse imports, shap only when asked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["explainers.explanation", "explainers.backends", "explainers.importance",
           "explainers.interactions", "explainers.reason_codes", "explainers.neighbours"]


def test_explainer_modules_import_no_streamlit_duckdb_or_shap() -> None:
    code = ("import importlib, json, sys\n"
            f"for m in {MODULES!r}: importlib.import_module(m)\n"
            "print(json.dumps(sorted(k for k in ('streamlit', 'duckdb', 'shap') "
            "if k in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)}, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
