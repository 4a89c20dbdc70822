# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each installs what it needs first (Debian packages only when run as root and missing).
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore

.PHONY: demo test install install-test system-deps bench lint

system-deps:
	@bash scripts/install-system-deps

install:
	$(PIP) -e .

install-test: system-deps
	$(PIP) -e '.[test,acitoolkit]'

demo: system-deps install
	$(PYTHON) -m controller.cli demo

test: install-test
	$(PYTHON) -m pytest -q

bench: install
	$(PYTHON) bench/compile.py

lint:
	$(PIP) -e '.[dev]'
	$(PYTHON) -m ruff check . && $(PYTHON) -m mypy
