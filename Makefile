# Two commands on a fresh machine: `make demo` and `make test`.
# torch is installed explicitly first (CPU build by default) so that the package's
# torch range never pulls a multi-GB CUDA build. Override for a GPU machine:
#   make demo TORCH_SPEC="torch==2.5.1" TORCH_INDEX=https://download.pytorch.org/whl/cu124
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
PYTEST_ARGS ?=
DEMO_ARGS ?=

PIP := $(VENV)/bin/python -m pip
PY := $(VENV)/bin/python

.PHONY: demo test lint install dev bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(PIP) install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/prefkit demo --overwrite $(DEMO_ARGS)

test: $(VENV)/.installed-dev
	$(PY) -m ruff check prefkit tests benchmarks
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check prefkit tests

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/losses.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
