# Every target sets itself up: a fresh clone needs only Python 3.11, pip, git and make.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DBT_PROFILES_DIR := $(CURDIR)/profiles

# Sample data for `make run`: small enough that the whole run takes about a minute.
SEED ?= 42
SCALE ?= 0.05
DAYS ?= 30

.PHONY: help install run test lint docs bench clean cluster-up cluster-down

help:
	@echo "make run    generate sample data and run the pipeline on DuckDB"
	@echo "make test   lint, then the whole test suite (DuckDB and Spark)"
	@echo "make lint   sqlfluff, no select *, ruff, mypy --strict, yamllint, dbt-score (all, one pass)"
	@echo "make docs   build dbt docs into target/ (browse: make docs-serve)"
	@echo "make bench  benchmarks into bench/results.json and bench/README.md"
	@echo "make cluster-up / cluster-down   a one-machine Spark cluster + Thrift server (data/cluster)"

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

data/landing/_generator.json: | $(STAMP)
	$(BIN)/pipeline generate --seed $(SEED) --scale $(SCALE) --days $(DAYS)

# The run's exit code is make's; the report is drawn whatever it was (a failed run is when it helps).
run: $(STAMP) data/landing/_generator.json
	@$(BIN)/pipeline run; code=$$?; $(BIN)/pipeline report; exit $$code

# Every tool runs and reports, then lint fails if any of them failed: one pass shows all.
lint: $(STAMP)
	@failed=""; \
	$(BIN)/sqlfluff lint models tests || failed="$$failed sqlfluff"; \
	if grep -rnE --include='*.sql' 'select[[:space:]]+(distinct[[:space:]]+)?\*|[a-z_]\.\*' models tests; then \
		echo "lint: 'select *' is not allowed in models or tests: name the columns (README, SQL style)"; \
		failed="$$failed select-star"; \
	fi; \
	$(BIN)/ruff check python || failed="$$failed ruff"; \
	$(BIN)/ruff format --check python || failed="$$failed ruff-format"; \
	$(BIN)/mypy --strict python || failed="$$failed mypy"; \
	$(BIN)/yamllint --strict . || failed="$$failed yamllint"; \
	if $(BIN)/dbt parse --quiet --target-path target/lint; then \
		$(BIN)/dbt-score lint --manifest target/lint/manifest.json --fail-project-under 9.5 \
			|| failed="$$failed dbt-score"; \
	else failed="$$failed dbt-parse"; fi; \
	if [ -n "$$failed" ]; then echo "lint failed:$$failed"; exit 1; fi; \
	echo "lint: sqlfluff, select-star, ruff, ruff format, mypy --strict, yamllint and dbt-score all pass"

# Two workers: the Spark and cluster tests (two thirds of the suite, each keeping both cores
# busy) run one after another on one; the other modules go to whichever worker is free
# (python/tests/conftest.py).
# PYTEST_WORKERS=0 runs the suite in one process.
PYTEST_WORKERS ?= 2
test: lint
	$(BIN)/pytest -n $(PYTEST_WORKERS)

docs: $(STAMP) data/landing/_generator.json
	$(BIN)/dbt docs generate

docs-serve: docs
	$(BIN)/dbt docs serve --port 8080

bench: $(STAMP)
	PYTHONPATH=python $(BIN)/python -m bench

# A Spark standalone Master, two Workers and a Thrift server on 127.0.0.1, for `--target spark`
# (python/pipeline/cluster.py). Then: source data/cluster/cluster.env && pipeline run --target spark
cluster-up: $(STAMP)
	$(BIN)/pipeline cluster up --dir data/cluster

cluster-down: $(STAMP)
	$(BIN)/pipeline cluster down --dir data/cluster

clean:
	rm -rf data target logs build spark-warehouse metastore_db derby.log
