# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Both keep epgbridge and its dependencies in a project virtualenv, .venv/, made from $(PYTHON) (default
# python3, Python >= 3.11): the system interpreter is never changed, so a distribution's Python that refuses
# global installs works too (`make demo PYTHON=/usr/bin/python3`). As root, missing Debian packages are
# installed first (scripts/install-system-deps: python3-venv, nftables, iproute2). `make clean` removes .venv/.
PYTHON ?= python3
VENV := .venv
VPYTHON := $(VENV)/bin/python
PIP := $(VPYTHON) -m pip install --quiet --quiet --disable-pip-version-check --no-input

.PHONY: demo test bench lint system-deps clean

demo: $(VENV)/.installed-base
	$(VPYTHON) -m controller.cli demo

test: $(VENV)/.installed-test
	$(VPYTHON) -m pytest -q

bench: $(VENV)/.installed-base
	$(VPYTHON) bench/compile.py

lint: $(VENV)/.installed-dev
	$(VPYTHON) -m ruff check . && $(VPYTHON) -m mypy

system-deps:
	@PYTHON="$(PYTHON)" bash scripts/install-system-deps

# The virtualenv: made (or repaired in place) from $(PYTHON); the marker says it has a working pip.
$(VENV)/.created: | system-deps
	$(PYTHON) -m venv $(VENV)
	@$(VPYTHON) -m pip --version >/dev/null
	@touch $@

$(VENV)/.installed-base: pyproject.toml $(VENV)/.created
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.created
	$(PIP) -e '.[test,acitoolkit]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.created
	$(PIP) -e '.[test,acitoolkit,dev]'
	@touch $@

clean:
	rm -rf $(VENV)
