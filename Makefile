# The two commands a new user needs: `make demo` and `make test`. Each creates .venv and
# installs the project from pyproject.toml; nothing else has to be set up beforehand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration bench chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("jobqueue needs Python 3.11 or newer") if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jobqueue demo

lint: $(STAMP)
	$(BIN)/ruff check worker operator tests bench
	$(BIN)/ruff format --check worker operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	MYPYPATH=tests/support $(BIN)/mypy --strict bench

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/worker.py
	$(BIN)/python bench/claim.py
	$(BIN)/python bench/stats.py
	$(BIN)/python bench/books.py

# The long form of the chaos suite (the short form is part of `make test`).
chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
