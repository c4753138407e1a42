# FraudLens: `make run` serves the workbench, `make test` runs every test, `make bench` measures.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
WORKSPACE ?= workspace
PORT ?= 8501

.PHONY: install run test lint bench demo browser postgres clean screenshots

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,ray]'
	touch $(STAMP)

install: $(STAMP)

$(WORKSPACE)/lake: | $(STAMP)
	$(VENV)/bin/fraudlens --workspace $(WORKSPACE) demo

demo: $(WORKSPACE)/lake

# `streamlit run streamlit_app.py` after a warm-up (libraries, lake, models): app/shell/serve.py
run: install demo
	FRAUDLENS_WORKSPACE=$(WORKSPACE) FRAUDLENS_DEMO_MODE=1 $(PY) -m app.shell.serve \
	  --server.address 127.0.0.1 --server.port $(PORT)

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
	$(VENV)/bin/lint-imports

# A wheel install works: build it, install it into a fresh venv and run the installed command
# from outside the source tree. Third-party packages come from .venv through a .pth line
# (installing them anew from the registry took 3.5 minutes here); fraudlens itself is the wheel.
WHEEL_CHECK := build/wheel-check
wheel-check: install
	rm -rf $(WHEEL_CHECK) && mkdir -p $(WHEEL_CHECK)
	$(PY) -m pip wheel -q --no-deps -w $(WHEEL_CHECK) .
	$(PYTHON) -m venv --without-pip $(WHEEL_CHECK)/venv
	$(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > \
	  "$$($(WHEEL_CHECK)/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/fraudlens-deps.pth"
	$(PY) -m pip --python $(WHEEL_CHECK)/venv/bin/python install -q --no-deps $(WHEEL_CHECK)/*.whl
	cd /tmp && $(CURDIR)/$(WHEEL_CHECK)/venv/bin/fraudlens --help >/dev/null
	cd /tmp && ws=$$(mktemp -d) && $(CURDIR)/$(WHEEL_CHECK)/venv/bin/fraudlens --workspace $$ws/ws \
	  demo --rows 2000 && rm -rf $$ws

test: install browser postgres lint wheel-check
	$(VENV)/bin/pytest

bench: install
	$(PY) -m bench.run

# README screenshots: serve the demo workspace, photograph each page in Debian's Chromium.
screenshots: install browser demo
	$(PY) docs/make_screenshots.py --workspace $(WORKSPACE)

clean:
	rm -rf $(VENV) .pytest_cache
