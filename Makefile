# The two commands of the README: `make run` and `make test`. Everything else here serves them, and can be
# run alone: `make check`, `make test-unit`, `make test-integration`, `make test-e2e`, `make fuzz`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check test-unit test-integration test-e2e test-scale signals fuzz schemathesis clean

$(BIN)/market: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(BIN)/market

## Serve the API on the embedded default (SQLite under var/), migrations applied, on 127.0.0.1:8000.
run: $(BIN)/market
	$(BIN)/market serve

## The whole suite, as CI runs it: the static checks, the unit, integration (PostgreSQL and SQLite) and
## end-to-end tests, the replicas behind a balancer, then the fuzzing campaign (hypothesis, then schemathesis).
test: check test-unit test-integration test-e2e test-scale fuzz

## Static checks: ruff (lint and format), pip check, import-linter (the layers), and the Prometheus alert and
## recording rules: syntax, then their unit tests (promtool: Debian's `prometheus`).
check: $(BIN)/market
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/pip check
	$(BIN)/lint-imports
	promtool check rules infra/prometheus/rules.yaml
	promtool test rules infra/prometheus/rules_test.yaml

## The fuzzing properties (`-m fuzz`) are left to `make fuzz`, which runs them with its own budget; a bare
## `pytest` runs them too, with 50 examples each.

## Domain, use cases (in-memory fakes) and the infrastructure files: no database, no server.
test-unit: $(BIN)/market
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not fuzz" tests/unit tests/infra

## Adapters against real PostgreSQL and SQLite (MARKET_TEST_POSTGRES_URL, see the README).
test-integration: $(BIN)/market
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not fuzz" tests/integration

## The app over HTTP: `market serve` in a subprocess, on each engine.
test-e2e: $(BIN)/market
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not fuzz" tests/e2e

## Every number agrees (part of test-e2e): one scripted mix against `market serve` on PostgreSQL and SQLite,
## scraped by Debian's real `prometheus` loading infra/prometheus/rules.yaml; the reports, /metrics, the in-app
## alerts, every recording rule and the Grafana panels checked against the ground truth. About 2.5 minutes.
signals: $(BIN)/market
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/e2e/test_signals_agree.py

## Three replicas (`market serve --workers 2` each) on one PostgreSQL and Redis behind HAProxy (Debian's
## `haproxy`), started by the tests and torn down after: idempotency, stock, webhooks, alerts, backups and
## per-replica metrics across replicas, and a replica killed mid-traffic. About 2.5 minutes (most of it waiting
## for the scheduled backup's minute).
test-scale: $(BIN)/market
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not fuzz" tests/scale

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
