# One command each: `make run` (set up and serve on the embedded default) and `make test`.
# durable_rules 2.0.28 builds on 3.11 and 3.12 only: take the first interpreter that runs and is one.
PYTHON ?= $(shell for p in python3.11 python3.12 python3; do $$p -c 'import sys; sys.exit(sys.version_info[:2] not in ((3,11),(3,12)))' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: setup run unit test test-docker bench clean

$(BIN)/loan-decide: pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 or python3.12 (durable_rules does not build on 3.13)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/loan-decide

run: setup
	$(BIN)/loan-decide serve --host 127.0.0.1 --port $(PORT)

# The fast tier: the use cases on the in-memory adapters and every port's contract in memory; no
# Redis, no server, no Docker (the slow property and soak tests are left to `make test`).
unit: setup
	$(BIN)/python -m pytest -q -m "(unit or contract) and not slow and not redis" tests/unit tests/contract

test: setup
	@bash scripts/ensure-redis.sh >/dev/null
	$(BIN)/lint-imports
	$(BIN)/loan-decide test
	$(BIN)/loan-decide test --mutate
	$(BIN)/python -m pytest -q -m "not docker"

# The image and both compose files run for real: sets up Docker (root), the stand-in base images
# when no registry has the real ones, then the tests marked `docker`.
test-docker: setup
	bash scripts/docker-engine.sh
	bash scripts/docker-standins.sh
	$(BIN)/python -m pytest -q -m docker tests/deploy

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
