# Set-up and entry points. `make demo` and `make test` do everything on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of torch where no NVIDIA GPU is present (fast, local here); override with
# `make TORCH_SPEC='torch>=2.4,<2.15' ...` (or any pip requirement) to choose another build.
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
ifeq ($(HAS_GPU),yes)
TORCH_SPEC ?= torch>=2.4,<2.15
else
TORCH_SPEC ?= torch==2.13.0
endif
RESULTS ?= results
DEMO_EXP ?= regex_a

.PHONY: setup demo test lint format schemas bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/fsmrun train $(DEMO_EXP) --results-dir $(RESULTS)
	$(BIN)/fsmrun ls --results-dir $(RESULTS)

test: setup
	$(BIN)/ruff check fsmrun tests benchmarks
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check fsmrun tests benchmarks
	$(BIN)/ruff format --check fsmrun tests benchmarks

format: setup
	$(BIN)/ruff format fsmrun tests benchmarks
	$(BIN)/ruff check --fix fsmrun tests benchmarks

schemas: setup
	$(BIN)/python -m fsmrun.schemas.export json_schemas

bench: setup
	$(BIN)/python benchmarks/fsm_compile.py
	$(BIN)/python benchmarks/datagen_speed.py
	$(BIN)/python benchmarks/loop_overhead.py
	$(BIN)/python benchmarks/cli_startup.py
	$(BIN)/python benchmarks/sweep_speedup.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
