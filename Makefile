# The two set-up commands of the README, plus the day-to-day ones. Each installs what it needs.
VENV ?= .venv
BIN := $(VENV)/bin
PARTITION ?= 2020-10|green

.PHONY: demo test lint bench dev

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: load one real month ($(PARTITION)), build the dbt models, print a summary
demo: $(BIN)/.installed
	$(BIN)/dagster asset materialize -m taxi_assets.definitions \
		--select taxi_trips_staging,taxi_trips --partition '$(PARTITION)'
	$(BIN)/dagster asset materialize -m taxi_assets.definitions --select 'group:taxi_dbt'
	$(BIN)/python -m taxi_assets.summary '$(PARTITION)'

## test: the whole test suite (real PostgreSQL, real HTTP, real Dagster runs)
test: $(BIN)/.installed
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/load_benchmark.py

dev: $(BIN)/.installed
	$(BIN)/dagster dev
