# The two commands of the README: `make run` and `make test`. Everything else here serves them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint rules unit fuzz schemathesis clean

$(BIN)/market: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(BIN)/market

## Serve the API on the embedded default (SQLite under var/), migrations applied, on 127.0.0.1:8000.
run: $(BIN)/market
	$(BIN)/market serve

## The whole suite: lint, format, dependency and architecture checks, pytest (unit, integration on
## PostgreSQL and SQLite, e2e over HTTP), then the fuzzing campaign (hypothesis, then schemathesis).
test: lint rules unit fuzz

lint: $(BIN)/market
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/pip check
	$(BIN)/lint-imports

## Prometheus alert and recording rules: syntax, then their unit tests (promtool: Debian's `prometheus`).
rules:
	promtool check rules infra/prometheus/rules.yaml
	promtool test rules infra/prometheus/rules_test.yaml

## Every test but the fuzzing properties (`make fuzz` runs those with its own budget; a bare `pytest` runs
## them too, with 50 examples each).
unit: $(BIN)/market
	$(BIN)/python -m pytest -m "not fuzz"

## The fuzzing campaign; zero 5xx and zero hangs, or it fails. Budget, about 6 minutes on 2 busy cores
## (2 for hypothesis, 4 for schemathesis):
## - hypothesis (tests/fuzz): FUZZ_EXAMPLES examples per property, each under FUZZ_DEADLINE_S (a hang fails),
##   over the body validator through the app, cursors, search text on PostgreSQL and SQLite, report periods,
##   webhook signatures, Stripe events and backup manifests;
## - schemathesis (scripts/schemathesis_run.py): every check, every phase including stateful sequences along
##   the OpenAPI links, SCHEMATHESIS_MAX_EXAMPLES per operation, SCHEMATHESIS_REQUEST_TIMEOUT s per request
##   (a hang fails), SCHEMATHESIS_MAX_TIME s for the whole run at most.
FUZZ_EXAMPLES ?= 500
FUZZ_DEADLINE_S ?= 10
SCHEMATHESIS_MAX_EXAMPLES ?= 40
SCHEMATHESIS_MAX_TIME ?= 180
SCHEMATHESIS_REQUEST_TIMEOUT ?= 10
fuzz: $(BIN)/market
	MARKET_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) MARKET_FUZZ_DEADLINE_S=$(FUZZ_DEADLINE_S) \
		$(BIN)/python -m pytest -q -p no:cacheprovider -m fuzz tests/fuzz
	SCHEMATHESIS_MAX_EXAMPLES=$(SCHEMATHESIS_MAX_EXAMPLES) SCHEMATHESIS_MAX_TIME=$(SCHEMATHESIS_MAX_TIME) \
		SCHEMATHESIS_REQUEST_TIMEOUT=$(SCHEMATHESIS_REQUEST_TIMEOUT) $(BIN)/python scripts/schemathesis_run.py

## Only the schemathesis part of `make fuzz` (its defaults: 40 examples, no time budget, 10 s per request).
schemathesis: $(BIN)/market
	$(BIN)/python scripts/schemathesis_run.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
