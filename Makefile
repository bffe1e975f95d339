# One command to check everything: `make check` (format, lint, types, tests).
PY := .venv/bin/python
VENV_STAMP := .venv/.installed

.PHONY: help install run test check fmt lint imports types clean bench

help:  ## Show the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV_STAMP): pyproject.toml
	python3 -m venv .venv
	.venv/bin/pip install -q -e '.[dev]'
	@touch $@

install: $(VENV_STAMP)  ## Create .venv and install the project with its dev tools

run: $(VENV_STAMP)  ## Try it: the console demo on a temporary SQLite clinic (no credentials)
	.venv/bin/checkin demo

test: $(VENV_STAMP)  ## Run the test suite (needs PostgreSQL on 127.0.0.1:5432)
	$(PY) -m pytest

fmt: $(VENV_STAMP)  ## Format the code
	.venv/bin/ruff format bot scheduler tests
	.venv/bin/ruff check --fix bot scheduler tests

lint: $(VENV_STAMP)
	.venv/bin/ruff format --check bot scheduler tests
	.venv/bin/ruff check bot scheduler tests

imports: $(VENV_STAMP)  ## Check the import rules: layers, no circles, no private names, sizes
	$(PY) -m tests.architecture

types: $(VENV_STAMP)
	.venv/bin/mypy

check: lint imports types test  ## Format check, lint, import rules, types (strict on bot/domain), tests

clean:  ## Remove the virtualenv and caches
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache .hypothesis

bench: $(VENV_STAMP)  ## Run every benchmark and write docs/PERFORMANCE.md (needs PostgreSQL)
	$(PY) -m bench.run_all
