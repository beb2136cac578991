# Durable Console. `make run` starts the embedded console; `make test` runs the suite.
PYTHON ?= python3
PORT ?= 8000
PYTEST_ARGS ?=

VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check --no-input
# Stamps inside the venv: deleting .venv forgets them too.
BASE_STAMP := $(VENV)/.requirements.stamp
DEV_STAMP := $(VENV)/.requirements-dev.stamp

.DEFAULT_GOAL := help
.PHONY: help venv venv-dev run test lint bench

help:
	@echo "make run    start Durable Console on http://127.0.0.1:$(PORT)/ (embedded SQLite unless DATABASE_URL is set)"
	@echo "make test   run the test suite against throwaway PostgreSQL and Redis"
	@echo "make lint   ruff check, ruff format --check, mypy (strict on executions/engine and executions/workers)"
	@echo "make bench  this engine and DBOS side by side on one throwaway PostgreSQL; writes bench/results.json"
	@echo "            (quick try: make bench BENCH_ARGS='--reps 1 --executions 20 --throughput 40 --timers 50 --timer-seconds 3')"

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "Durable Console needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>/dev/null || echo 'not found')." >&2; \
	  echo "Run again with PYTHON=/path/to/python3.11 (or newer)." >&2; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)

$(BASE_STAMP): requirements.txt | $(VPY)
	$(PIP) install -r requirements.txt
	@touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VPY)
	$(PIP) install -r requirements-dev.txt
	@touch $@ $(BASE_STAMP)

venv: $(BASE_STAMP)

venv-dev: $(DEV_STAMP)

run: venv
	$(VPY) manage.py migrate --noinput
	PORT=$(PORT) $(VPY) manage.py durable demo-setup
	exec $(VPY) manage.py durable serve --host 127.0.0.1 --port $(PORT)

test: venv-dev
	$(VPY) -m pytest $(PYTEST_ARGS)

lint: venv-dev
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	DURABLE_VAR_DIR=$${DURABLE_VAR_DIR:-$$(mktemp -d)} $(VPY) -m mypy

# The DBOS peer gets a venv of its own (same Python), so its dependencies never meet the app's.
BENCH_VENV := .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.requirements-bench.stamp
BENCH_ARGS ?=

$(BENCH_PY): | $(VPY)
	$(VPY) -m venv $(BENCH_VENV)

$(BENCH_STAMP): requirements-bench.txt | $(BENCH_PY)
	$(BENCH_PY) -m pip --disable-pip-version-check --no-input install -r requirements-bench.txt
	@touch $@

# venv-dev: the SDK's in-memory floor is measured with its testing library.
bench: venv-dev $(BENCH_STAMP)
	$(VPY) -m bench.run $(BENCH_ARGS)
