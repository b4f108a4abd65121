# The README's commands. Everything runs inside .venv, created on first use.
# torch is pinned in requirements/torch.txt only: the CPU build is installed before everything
# else, so no other package can pull a multi-GB CUDA build. On machines without a local wheel,
# point pip at the CPU index: make demo TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= $(shell command -v python3.11 || command -v python3)
TORCH_PIP_ARGS ?=
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit install dev clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "tradinglib needs Python 3.11 (set PYTHON=/path/to/python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: requirements/torch.txt | $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) -r requirements/torch.txt
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.torch
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

# a small second environment with ib_insync instead of ib_async (tests/test_ib_insync.py)
INSYNC_VENV := .venv-ib-insync
$(INSYNC_VENV)/.installed: requirements/ib-insync.txt pyproject.toml
	$(PYTHON) -m venv $(INSYNC_VENV)
	$(INSYNC_VENV)/bin/pip install --quiet -r requirements/ib-insync.txt
	$(INSYNC_VENV)/bin/pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

## make demo: train (or reuse) a small PPO agent on built-in GOOGL daily bars, backtest it,
## replay a paper session and render the HTML report, all through papermill (runs/)
demo: $(VENV)/.installed
	$(BIN)/tradinglib demo

## make test: lint, type-check and run the whole test suite (exit 5, "no tests ran", is a failure)
test: $(VENV)/.installed-dev lint typecheck unit

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check tradinglib tests benchmarks

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy tradinglib

unit: $(VENV)/.installed-dev $(INSYNC_VENV)/.installed
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

## make lab: JupyterLab on 127.0.0.1 in the project root (it prints the URL with its token);
## notebooks/ holds the parameterized notebooks, Run All works with their defaults. Ctrl-C stops it.
## Jupyter refuses to run as root without --allow-root, which is added only for root.
.PHONY: lab
lab: $(VENV)/.installed
	$(BIN)/jupyter lab --ip 127.0.0.1 --no-browser --ServerApp.root_dir=$(CURDIR)$(if $(filter 0,$(shell id -u)), --allow-root)

clean:
	rm -rf $(VENV) $(INSYNC_VENV) .mypy_cache .ruff_cache .pytest_cache
