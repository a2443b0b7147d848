# sourcecheck: `make run` starts the whole system, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test lint bench clean

$(BIN)/sourcecheck: pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e ./client
	touch $@

install: $(BIN)/sourcecheck

run: install
	$(BIN)/sourcecheck run

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .sourcecheck .pytest_cache

bench: install
	$(BIN)/python bench/run.py
