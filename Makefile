# kafka-twilio — run `make` (or `make help`) to list the targets.
SHELL := bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := PYTHON=$(abspath $(PY)) bash deploy/kafka/local-kafka.sh

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv with runtime and dev dependencies (re-runs when pyproject.toml changes)

.PHONY: tools
tools: ## build kustomize, helm and the PromQL checker for the deploy tests (once; cached in .cache/)
	bash deploy/tools.sh

.PHONY: prometheus
prometheus: ## Prometheus and promtool for the tests: from PATH, else Debian's package unpacked into .cache/ (once)
	bash deploy/prometheus/install.sh

.PHONY: test
test: install tools prometheus ## every test (alerts via promtool too); starts the broker/registry when missing
	$(PY) -m pytest

.PHONY: unit
unit: install ## run only the fast unit tests (no broker)
	$(PY) -m pytest tests/unit -q

.PHONY: lint
lint: install ## ruff on everything, mypy --strict on consumer/
	$(VENV)/bin/ruff check consumer tests bench
	$(VENV)/bin/ruff format --check consumer tests bench
	$(VENV)/bin/mypy consumer

.PHONY: fmt
fmt: install ## format and auto-fix with ruff
	$(VENV)/bin/ruff format consumer tests bench
	$(VENV)/bin/ruff check --fix consumer tests bench

.PHONY: kafka-up
kafka-up: install ## start the local Apache Kafka broker (jars fetched once); harmless when running
	$(KAFKA) up

.PHONY: kafka-down
kafka-down: ## stop the local Kafka broker; harmless when stopped
	$(KAFKA) down

.PHONY: registry-up
registry-up: ## start the local Schema Registry (Apicurio, fetched once with Maven); harmless when running
	bash deploy/registry/local-registry.sh up

.PHONY: registry-down
registry-down: ## stop the local Schema Registry; harmless when stopped
	bash deploy/registry/local-registry.sh down

.PHONY: faults
faults: install ## the full fault-injection suite (20k events, SIGKILLs, broker and Twilio outages): table + exit code
	$(PY) -m tests.faults.suite --json bench/results/faults.json

.PHONY: faults-short
faults-short: install ## the CI version of the fault suite (about 90 s)
	$(PY) -m tests.faults.suite --short

.PHONY: bench
bench: install ## run the benchmarks in bench/ (results in bench/results/, summary in README)
	$(PY) bench/run_all.py

.PHONY: demo
demo: install ## sample events end to end (local Kafka, Twilio simulator, webhook receiver); DEMO_ENCODING=confluent: via a registry
	$(PY) -m consumer.cli demo

.PHONY: clean
clean: kafka-down registry-down ## stop the broker and the registry, remove local state (keeps downloads)
	rm -rf .local .pytest_cache .mypy_cache .ruff_cache
