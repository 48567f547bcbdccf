# The two commands of the README: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint unit build-tools up down venv

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'

venv: $(PY)

demo: $(PY)
	dev/demo

build-tools:
	dev/build-tools

up:
	dev/up

down:
	dev/down

lint: $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: $(PY)
	$(VENV)/bin/pytest -q tests/unit

# Everything: lint, unit, integration and end-to-end (builds missing parts first).
test: lint
	dev/build-tools
	$(VENV)/bin/pytest -q -p no:cacheprovider -rfE --durations=10 tests
