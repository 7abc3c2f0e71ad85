# The two quickstart commands: `make demo` and `make test`.
# Each creates .venv on first use (or when pyproject.toml changes) and needs only Python 3.11+.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint bench docs package-check clean venv docs-venv

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "genqueue needs Python 3.11+; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

DOCS_STAMP := $(VENV)/.docs-stamp
$(DOCS_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test,docs]'
	@touch $(DOCS_STAMP)

venv: $(STAMP)
docs-venv: $(DOCS_STAMP)

demo: $(STAMP)
	$(VENV)/bin/genqueue demo

# Two test processes per core: a test spends most of its time waiting on the worker processes it started, so
# one per core leaves the cores half idle (measured on 2 cores: 6.6 min with 4, 9-10 min with 2). Each xdist
# worker has its own embedded server; tests never share a queue. PYTEST_XDIST= for one process.
TEST_PROCS ?= $(shell $(PYTHON) -c 'import os; print(2 * len(os.sched_getaffinity(0)))')
PYTEST_XDIST ?= -n $(TEST_PROCS) --dist worksteal
# pytest exits 5 when it collected no tests: that is our failure, not a pass.
test: $(STAMP)
	@$(VENV)/bin/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# ruff (lint rules and formatting) and mypy, configured in pyproject.toml; both come with the test extra.
LINT_PATHS := genqueue tests bench examples docs/_hooks
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test,bench]'
	$(VENV)/bin/python -m bench $(BENCH_ARGS)

# What a user installs: the sdist and the wheel built, the wheel installed core-only in a fresh venv and run.
package-check: $(STAMP)
	.ci/package-check $(VENV)/bin/python

# The documentation site, strictly: a broken link, a missing page or a page left out of the nav fails.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache .ruff_cache site
