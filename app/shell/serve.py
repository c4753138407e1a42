"""Serve FraudLens warm: `python -m app.shell.serve [streamlit run options]` (what `make run`
does). It is `streamlit run streamlit_app.py` after a warm-up, so the first analyst after a
start does not pay for it: the model libraries are imported (xgboost, catboost, scikit-learn
and scipy take ~3 s on 2 cores), the workspace, its lake (listing, footer checks, views) and the
journal are opened, every registered model is loaded and verified, and the pages' default views
are computed for the lake's data version (kept on disk, `warm.warm_defaults`), all before the
server answers its health check. The SHAP engine's kernels are compiled on a thread just
after. While it serves, new data in the lake is warmed the same way on a background thread, so
the first visit after an import reads results instead of scanning.
A warm-up failure is logged and the server starts anyway; the pages then show the problem as
they would have.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import time
from pathlib import Path

ENTRY = Path(__file__).resolve().parents[2] / "streamlit_app.py"
# What the pages import lazily; each costs 0.2-1.5 s on first import.
MODULES = ("xgboost", "catboost", "sklearn.metrics", "scipy.stats", "altair", "pyarrow.dataset",
           "app.shell.caches", "app.shell.components", "app.shell.classifier_panel",
           "app.shell.case_work", "app.services.model_comparison", "app.services.monitoring",
           "app.services.experiments", "app.services.pattern_review", "app.views.charts",
           "app.views.comparison_report", "explainers.interactions", "explainers.importance")

_LOG = logging.getLogger("fraudlens.serve")


def warm_up() -> float:
    """Import the libraries and open the workspace's resources; seconds taken."""
    t0 = time.perf_counter()
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            _LOG.warning("warm-up: %s not imported: %s", name, exc)
    from app.shell import resources, warm  # streamlit's caches work before the server starts

    try:
        resources.workspace()
        resources.data_version()  # opens the lake and starts following it
        resources.journal()
        for manifest in resources.workspace().registry.list():
            if manifest.stage != "archived":
                resources.load_model(manifest.key)
        warm.warm_defaults()
    except Exception as exc:  # the pages report it on their first run
        _LOG.warning("warm-up stopped early: %s", exc)
    return time.perf_counter() - t0


def follow_new_data(every_s: float = 2.0) -> threading.Thread:
    """When new data lands in the lake, compute the pages' default views for it at once on a
    daemon thread (`warm.warm_defaults`), so the next analyst reads them instead of waiting
    for the scans. One pass at a time; a pass that fails is logged and retried on the next
    change."""
    from app.shell import resources, warm

    def loop() -> None:
        warmed = None
        while True:
            time.sleep(every_s)
            try:
                version = resources.data_version()
                if version != warmed:
                    t = time.perf_counter()
                    done = warm.warm_defaults()
                    warmed = version
                    _LOG.info("new data: warmed %s in %.1fs", ", ".join(done),
                              time.perf_counter() - t)
            except Exception as exc:  # keep following; the pages show lake problems
                _LOG.warning("warming for new data failed: %s", exc)

    thread = threading.Thread(target=loop, name="fraudlens-warm", daemon=True)
    thread.start()
    return thread


def compile_explainers() -> threading.Thread:
    """Build the SHAP engine's compiled kernels on a daemon thread while the server already
    answers (`warm.compile_explainers`; seconds of compiling that would otherwise fall on the
    first what-if)."""
    from app.shell import warm

    def run() -> None:
        t = time.perf_counter()
        try:
            done = warm.compile_explainers()
        except Exception as exc:  # the first explanation compiles instead
            _LOG.warning("compiling the explainers failed: %s", exc)
        else:
            _LOG.info("explainers compiled for %s in %.1fs", ", ".join(done) or "no model",
                      time.perf_counter() - t)

    thread = threading.Thread(target=run, name="fraudlens-compile", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    took = warm_up()
    print(f"FraudLens warmed up in {took:.1f}s", file=sys.stderr, flush=True)
    compile_explainers()
    follow_new_data()
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(ENTRY), *(sys.argv[1:] if argv is None else argv)]
    cli.main()


if __name__ == "__main__":
    main()
