# The two commands of the README: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint rules unit schemathesis clean

$(BIN)/market: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(BIN)/market

## Serve the API on the embedded default (SQLite under var/), migrations applied, on 127.0.0.1:8000.
run: $(BIN)/market
	$(BIN)/market serve

## The whole suite: lint, format, dependency and architecture checks, pytest (unit, integration on
## PostgreSQL and SQLite, e2e over HTTP), then schemathesis against the live app.
test: lint rules unit schemathesis

lint: $(BIN)/market
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/pip check
	$(BIN)/lint-imports

## Prometheus alert and recording rules: syntax, then their unit tests (promtool: Debian's `prometheus`).
rules:
	promtool check rules infra/prometheus/rules.yaml
	promtool test rules infra/prometheus/rules_test.yaml

unit: $(BIN)/market
	$(BIN)/python -m pytest

schemathesis: $(BIN)/market
	$(BIN)/python scripts/schemathesis_run.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
