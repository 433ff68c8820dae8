# make run   — set everything up (apt packages, a virtualenv, the compiled package) and run the
#              main job on a built-in default: `fastnet run -- curl http://host.docker.internal:PORT/`
# make test  — set everything up and run the test suite (the optimised build; the benchmarks
#              once each with their result checks, and the end-to-end smoke run; then the wire
#              tests again under the debug build with bounds checks)
# make bench — micro-benchmarks (pytest-benchmark); see bench/README.md

PYTHON ?= python3
VENV ?= .venv
VENV_DEBUG ?= .venv-debug
PYTEST_ARGS ?=

.PHONY: run test test-debug bench deps-run deps-test clean

run: deps-run $(VENV)/.installed
	sh scripts/demo.sh $(VENV)

test: deps-test $(VENV)/.installed-bench
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(VENV)/bin/python -m pytest -q bench --benchmark-disable
	$(MAKE) test-debug

# The parsers once more, built with FASTNET_DEBUG=1 (-O0, Cython bounds checks, FN_DEBUG).
test-debug: $(VENV_DEBUG)/.installed-test
	$(VENV_DEBUG)/bin/python -m pytest -q tests/wire tests/c

bench: deps-test $(VENV)/.installed-bench
	$(VENV)/bin/python -m pytest bench --benchmark-only --benchmark-columns=median,ops,rounds

deps-run:
	sh scripts/install-deps.sh run

deps-test:
	sh scripts/install-deps.sh test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(VENV)/bin/python FORCE
	$(VENV)/bin/python -m pip install -q .
	touch $@

$(VENV)/.installed-test: $(VENV)/bin/python FORCE
	$(VENV)/bin/python -m pip install -q ".[test]"
	touch $@

$(VENV)/.installed-bench: $(VENV)/bin/python FORCE
	$(VENV)/bin/python -m pip install -q ".[test,bench]"
	touch $@

$(VENV_DEBUG)/.installed-test: FORCE
	test -x $(VENV_DEBUG)/bin/python || { $(PYTHON) -m venv $(VENV_DEBUG) && $(VENV_DEBUG)/bin/python -m pip install -q --upgrade pip; }
	FASTNET_DEBUG=1 $(VENV_DEBUG)/bin/python -m pip install -q ".[test]"
	touch $@

clean:
	rm -rf build dist $(VENV) $(VENV_DEBUG) src/*.egg-info src/fastnet/*.c src/fastnet/*.so

FORCE:
