# streamjobs: make help lists the targets.
PY ?= .venv/bin/python
VENV := .venv

.PHONY: help install lint typecheck test demo worker bench faults

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

install: $(VENV)/bin/python ## create .venv and install streamjobs with its dev tools
	$(VENV)/bin/pip install -q -e '.[dev]'

lint: ## ruff
	$(VENV)/bin/ruff check .

typecheck: ## mypy, strict on streamjobs/
	$(VENV)/bin/mypy

test: lint typecheck ## ruff, mypy, then the whole test suite against real redis-servers
	$(PY) -m pytest -q

demo: ## the main job end to end on a throwaway redis-server (or $$REDIS_URL)
	$(PY) examples/demo.py

worker: ## run the example app's worker against $$REDIS_URL (or a throwaway redis-server)
	$(PY) examples/run_worker.py

bench: ## benchmarks against peer queues, side by side on one Redis
	$(PY) scripts/bench.py

faults: ## the fault-injection suite including its long variants
	$(PY) -m pytest -q tests/faults -m "slow or not slow"
