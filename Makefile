# FraudLens: `make run` serves the workbench, `make test` runs every test, `make bench` measures.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WORKSPACE ?= workspace
PORT ?= 8501

.PHONY: install run test lint bench demo browser postgres clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(WORKSPACE)/lake: | $(STAMP)
	$(VENV)/bin/fraudlens --workspace $(WORKSPACE) demo

demo: $(WORKSPACE)/lake

run: install demo
	FRAUDLENS_WORKSPACE=$(WORKSPACE) FRAUDLENS_DEMO_MODE=1 $(VENV)/bin/streamlit run \
	  streamlit_app.py --server.address 127.0.0.1 --server.port $(PORT)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; }; }

# Debian's PostgreSQL server for the journal tests (each test session starts a throwaway one).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  SUDO=$$(command -v sudo >/dev/null 2>&1 && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get install -y -q postgresql >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q postgresql >/dev/null; }; }

lint: install
	$(VENV)/bin/ruff check .

test: install browser postgres lint
	$(VENV)/bin/pytest

bench: install
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache
