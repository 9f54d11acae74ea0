# rung: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: install run test lint typecheck unit bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## The gateway in front of two fake model servers (no model weights needed), on :$(PORT).
run: install
	$(BIN)/rung demo --port $(PORT)

## Everything CI runs: lint, strict typing, all tests (unit, integration).
test: install lint typecheck
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check rung tests bench
	$(BIN)/ruff format --check rung tests bench

typecheck: install
	$(BIN)/mypy rung

unit: install
	$(BIN)/pytest -q tests/unit

## Gateway overhead: straight to a backend vs through rung, printed as JSON.
bench: install
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
