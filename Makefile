# carehub: `make run` serves the demo hub, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest-xdist workers for `make test`: auto is one per core; TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= auto

.PHONY: install run test lint check bench clean

# The example external plugin goes in too, through its own entry point: the suite enables it for a tenant and uses
# it as any vendor's plugin (its dependencies are carehub's, hence --no-deps).
EXAMPLE_PLUGIN := docs/examples/carehub-example-plugin

$(STAMP): pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "carehub needs Python 3.11 or newer (try: make PYTHON=python3.11 ...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps -e $(EXAMPLE_PLUGIN)
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/carehub demo

test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

check: lint test

bench: install
	$(BIN)/python -m bench.authz
	$(BIN)/python -m bench.jobs 2000
	$(BIN)/python -m bench.fairness 10000
	BIN=$(BIN) bash bench/http.sh 10
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.consent
	$(BIN)/python -m bench.hl7 150
	$(BIN)/python -m bench.fhir 20

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
