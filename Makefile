# The two set-up commands of the README, plus the day-to-day ones. Each installs what it needs.
VENV ?= .venv
BIN := $(VENV)/bin
PARTITION ?= 2020-10|green
# Its month: the facts the demo builds (`fact_trips` and the monthly revenue, by pickup month).
MONTH = $(firstword $(subst |, ,$(PARTITION)))

.PHONY: demo test test-fast test-quick lint bench bench-facts dev home constraints
# One Dagster home for `make demo`, `make dev` and the README's dagster commands: its run history
# is what the UI shows. `.env`, which every dagster command reads from this folder, points
# DAGSTER_HOME here unless DAGSTER_HOME is already set.
DAGSTER_HOME_DIR := $(CURDIR)/.dagster_home
PORT ?= 3000
DBT_LOG := $(DAGSTER_HOME_DIR)/demo_dbt.log
# dg looks for the telemetry setting before it reads .env: without DAGSTER_HOME in
# its environment a first `dg launch` prints a telemetry notice although dagster.yaml turns it off.
demo: export DAGSTER_HOME ?= $(DAGSTER_HOME_DIR)

$(BIN)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# setuptools tells every editable install to mind folders named like the package, a
	@# warning block pip shows; that is this folder's layout on purpose.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@# dagster-dbt asks for sqlglot[rs]; sqlglot does not use sqlglotrs, and warns on every
	@# command that it is installed.
	$(BIN)/pip uninstall --quiet --yes sqlglotrs
	touch $@

## demo: load one real month ($(PARTITION)), build the dbt models (that month's facts), print a summary
demo: $(BIN)/.installed home
	$(BIN)/dg launch --job taxi_trips_job --partition '$(PARTITION)'
	@echo "dbt build: its log goes to $(DBT_LOG)"
	@DBT_USE_COLORS=false $(BIN)/dg launch -m taxi_assets.dbt_definitions --job taxi_dbt_job \
		--partition '$(MONTH)' > $(DBT_LOG) 2>&1 \
		|| { cat $(DBT_LOG); exit 1; }
	@grep -a 'Done\. PASS=' $(DBT_LOG)
	$(BIN)/python -m taxi_assets.summary '$(PARTITION)'

# The test modules run on two workers (pytest-xdist), a module's tests on the same one: each
# worker has its own database, servers and Dagster homes. TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

## test: the whole test suite (real PostgreSQL, real HTTP, real Dagster runs)
test: $(BIN)/.installed home
	$(PYTEST)

## test-fast: the unit tests (marked `unit`): no PostgreSQL, no server, no Dagster run
test-fast: $(BIN)/.installed
	$(BIN)/pytest -m unit

## test-quick: the suite without its slow layers (browser, dagster dev, emulators, stack)
test-quick: $(BIN)/.installed home
	$(PYTEST) -m "not browser and not dagster_dev and not emulators and not stack"

## lint: the formatter's check, the linter, the type checker (pyright in basic mode)
lint: $(BIN)/.installed
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/basedpyright --pythonpath $(BIN)/python

## constraints: pin the versions installed in the venv (after a change of dependencies)
constraints: $(BIN)/.installed
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^#'; } > constraints.tmp
	mv constraints.tmp constraints.txt

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/load_benchmark.py

## bench-facts: with 12 months loaded, one month's facts rebuilt against all of them
bench-facts: $(BIN)/.installed
	$(BIN)/python benchmarks/facts_benchmark.py

## dev: the UI and the daemon on http://localhost:$(PORT) (`make dev PORT=3001`)
dev: $(BIN)/.installed home
	$(BIN)/dagster dev -w workspace.yaml -p $(PORT)

## home: the project's Dagster home, .dagster_home/ (its dagster.yaml is the one in this folder)
home: $(DAGSTER_HOME_DIR)/dagster.yaml
	@if ! grep -Eqs '^[[:space:]]*(export[[:space:]]+)?DAGSTER_HOME=' .env; then \
		if [ -s .env ] && [ -n "$$(tail -c 1 .env)" ]; then echo >> .env; fi; \
		printf '%s\n' \
		'# The Dagster home of make demo, make dev and the CLI (added by make; DAGSTER_HOME wins).' \
		'DAGSTER_HOME=$${DAGSTER_HOME:-$(DAGSTER_HOME_DIR)}' >> .env; \
	fi

$(DAGSTER_HOME_DIR)/dagster.yaml:
	mkdir -p "$(DAGSTER_HOME_DIR)"
	ln -sf ../dagster.yaml "$@"
