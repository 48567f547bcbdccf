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

# kube-apiserver, kube-controller-manager, kubectl, etcd, helm, pouchdb-server and
# ReductStore into ~/.cache/replication-operator/ (cached parts are skipped).
build-tools:
	dev/build-tools

up:
	dev/up

down:
	dev/down

lint: $(PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	MYPYPATH=dev $(VENV)/bin/mypy --strict dev/harness.py tests/conftest.py
	MYPYPATH=tests $(VENV)/bin/mypy --strict --ignore-missing-imports \
		tests/simkit tests/harbor_sim tests/eden_sim

unit: $(PY)
	$(VENV)/bin/pytest -q tests/unit

# Everything: lint, unit, integration and end-to-end (builds missing parts first), as
# two pytest sessions side by side (dev/test-suite says how; TEST_SESSIONS=1 for one).
test: lint build-tools
	PY=$(PY) dev/test-suite
