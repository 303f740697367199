# One command for the demo, one for the tests (README). `.ci/run` calls `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP_FLAGS ?= -q --disable-pip-version-check

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev]'
	@touch $@

tests/interop/node_modules/.installed: tests/interop/package.json tests/interop/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the Auth.js interop tests will be skipped (install nodejs + npm)"; fi

## Run the demo app on http://127.0.0.1:8000 (embedded SQLite store, generated secret)
demo: $(VENV)/.installed
	$(VENV)/bin/keyfob demo --data-dir keyfob-demo-data $(DEMO_ARGS)

## Run the whole test suite (PostgreSQL/Redis/Node tests skip with a reason when absent, except CI=true)
test: $(VENV)/.installed tests/interop/node_modules/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy src

bench: $(VENV)/.installed
	$(VENV)/bin/keyfob bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) tests/interop/node_modules .pytest_cache .mypy_cache .ruff_cache
