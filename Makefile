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

.PHONY: demo test lint install dev bench clean browser-deps

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
	$(PY) -m pytest -n 2 -rs $(PYTEST_ARGS)

# The studio's browser tests drive Debian's chromium with its chromedriver (no browser download
# is possible). Installs them when missing and possible (root, apt-get); otherwise says why the
# browser tests will skip. CI (.ci/run) runs this before `make test`.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "browser-deps: chromium and chromedriver present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser-deps: installing Debian chromium and chromium-driver"; \
		( DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver \
		    >/dev/null ) || echo "browser-deps: could not install chromium; the studio browser tests will skip"; \
	else \
		echo "browser-deps: not root or no apt-get; the studio browser tests will skip (install chromium chromium-driver)"; \
	fi

lint: $(VENV)/.installed-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check prefkit tests

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/losses.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache runs
