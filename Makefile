# volstream: two commands on a fresh machine -> `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup run test test-fast lint typecheck bench chaos system-setup airflow-setup monitoring-setup down clean

## setup: idempotent; installs uv if missing, creates .venv from uv.lock (the project + dev tools)
setup: $(VENV)/.synced tools/s3rver/node_modules/.installed
tools/s3rver/node_modules/.installed: tools/s3rver/package-lock.json
	npm ci --prefix tools/s3rver --no-audit --no-fund --loglevel=error
	@touch $@
$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --python python3.11
	@touch $@

## run: the main job on embedded defaults (broker, MLflow on SQLite, real data in ../shared/data or,
## away from it, fetched from Binance's public archives into data/binance: docs/data.md). When the
## data is missing it says which command fetches it; VOLSTREAM_FETCH=1 fetches it, then runs.
## RUN_ARGS go to `volstream up` (e.g. RUN_ARGS=--no-monitoring).
RUN_ARGS ?=
run: setup
	@data_dir="$$($(PY) -m devstack.data_fetch demo-dir)" && \
	SHARED_DATA_DIR="$$data_dir" $(VENV)/bin/volstream up --demo $(RUN_ARGS)

## system-setup: Debian's Prometheus/Alertmanager and the Airflow venv (each script is idempotent)
system-setup: monitoring-setup airflow-setup

monitoring-setup:
	@if [ -f monitoring/setup.sh ]; then bash monitoring/setup.sh; fi

airflow-setup: setup
	@if [ -f airflow/setup.sh ]; then bash airflow/setup.sh; fi

## test: the whole suite, slow end-to-end tests included (what CI runs)
test: setup system-setup
	$(PY) -m pytest

## bench: prints figures against targets, writes bench/results/*.json and *.png charts (never fails
## on a figure); knobs such as BENCH_E2E_DAYS in docs/benchmarks.md
bench: setup system-setup
	$(PY) -m bench

## chaos: kill -9 each service in turn during a real replay, then check conservation
chaos: setup
	$(PY) -m bench.chaos

test-fast: setup
	$(PY) -m pytest -m "not slow"

## every Python folder: lint (ruff) and the import layers (import-linter, [tool.importlinter])
PY_DIRS := services devstack trainer monitoring bench airflow infra
lint: setup
	$(VENV)/bin/ruff check $(PY_DIRS) tests
	$(VENV)/bin/ruff format --check $(PY_DIRS) tests
	$(VENV)/bin/lint-imports

## types over every Python folder; services/common strictly
typecheck: setup
	$(VENV)/bin/mypy $(PY_DIRS)
	$(VENV)/bin/mypy --strict services/common

down: setup
	$(VENV)/bin/volstream down

clean:
	rm -rf var .pytest_cache
