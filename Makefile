# sourcecheck: `make run` starts the whole system, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test lint bench clean

$(BIN)/sourcecheck: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/sourcecheck

run: install
	$(BIN)/sourcecheck run

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check api worker connectors tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .sourcecheck .pytest_cache

bench: install
	$(BIN)/python bench/run.py
