# streamjobs: `make help` lists the targets. Each sets up .venv first when it is missing
# or older than pyproject.toml.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install lint typecheck test demo worker bench faults web screenshots

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install streamjobs with its dev tools

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .

typecheck: $(STAMP) ## mypy, strict on streamjobs/
	$(VENV)/bin/mypy

test: lint typecheck ## ruff, mypy, then the whole suite against real redis-servers
	$(PY) -m pytest -q

demo: $(STAMP) ## the main job end to end on a throwaway redis-server (or REDIS_URL)
	$(PY) examples/demo.py

worker: $(STAMP) ## the example app's worker on REDIS_URL (or a throwaway redis-server)
	$(PY) examples/run_worker.py

web: $(STAMP) ## the dashboard of REDIS_URL's default queue on http://127.0.0.1:8080
	$(VENV)/bin/streamjobs web

screenshots: $(STAMP) ## the browser tests, saving each page's screenshot in docs/dashboard
	STREAMJOBS_SCREENSHOTS=docs/dashboard $(PY) -m pytest -q tests/test_web.py

BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install -q -e '.[bench]'
	$(BENCH_VENV)/bin/python -m pip install -q --no-deps arq || echo "bench: arq is skipped"
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) ## streamjobs against peer queues side by side (own venv, own redis)
	$(BENCH_VENV)/bin/python scripts/bench.py --json bench-results.json

faults: $(STAMP) ## the fault-injection suite on every driver, with its long variants
	$(PY) -m pytest -q tests/faults -m "slow or not slow"
