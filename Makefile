# Every target creates what it needs on first use: a fresh machine needs only Python 3.11+, make, Node.js and Java 17.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
PORT ?= 8090
ARGS ?=

.PHONY: test lint sandbox clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## test: lint, then every test (the command CI runs)
test: lint
	$(BIN)/pytest

## lint: ruff and mypy over all code
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy layers/docdrop/docdrop local tests $(wildcard functions/*/*.py)

## sandbox: the Cobalt sandbox in the foreground on 127.0.0.1:$(PORT) (PORT=0 picks a free port)
sandbox: $(STAMP)
	$(BIN)/python -m local.cobalt_sandbox --port $(PORT) $(ARGS)

clean:
	rm -rf $(VENV) .aws-sam .docdrop .pytest_cache .mypy_cache .ruff_cache
