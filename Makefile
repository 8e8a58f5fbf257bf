# The few targets a newcomer needs. `make help` lists them.
PYTHON ?= python3
.DEFAULT_GOAL := help

.PHONY: help bootstrap dev test test-unit lint format schemas infra-up infra-down bench

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

bootstrap: ## install system packages and the Python package (run by the others)
	@scripts/bootstrap.sh

dev: bootstrap ## run the whole system locally with simulated council traffic (Ctrl-C stops it)
	$(PYTHON) -m civicpulse dev

test: bootstrap lint ## lint, type-check, then every test (starts Kafka and PostgreSQL if needed)
	$(PYTHON) -m civicpulse schemas --check
	$(PYTHON) -m pytest

test-unit: bootstrap ## only the fast tests that need no Kafka or PostgreSQL
	$(PYTHON) -m pytest tests/unit -m "not integration"

lint: bootstrap ## ruff and mypy --strict
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

format: ## reformat the code
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

schemas: ## export event JSON Schemas and the AsyncAPI document to shared/schemas/
	$(PYTHON) -m civicpulse schemas

infra-up: bootstrap ## start local Kafka and PostgreSQL (eval the printed exports)
	$(PYTHON) -m civicpulse infra up

infra-down: ## stop local Kafka and PostgreSQL
	$(PYTHON) -m civicpulse infra down

BENCHMARKS = intake_throughput complaint_timers complaints_throughput feedback_decisions \
	kpi_latency pipeline replicas metrics_throughput rebuild import_throughput

# Every benchmark runs even when one before it fails (a missed target exits 1);
# the failures are named at the end and make exits 1.
bench: bootstrap ## run every benchmark (they print their figures; about fifteen minutes)
	@failed=""; for name in $(BENCHMARKS); do \
		echo "== bench.$$name"; $(PYTHON) -m bench.$$name || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "benchmarks that failed or missed a target:$$failed"; exit 1; fi
