# The commands of the README: `make demo`, `make test` and `make reliability`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo demo-node test reliability lint unit docs build-tools up down venv

$(PY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'

venv: $(PY)

demo: $(PY)
	dev/demo

# The demo on a real node (root): the operator installed by its Helm chart from the image
# built here, in a namespace enforcing the restricted Pod Security level.
demo-node: $(PY)
	DEMO_NODE=1 dev/demo

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
	MYPYPATH=dev $(VENV)/bin/mypy --strict dev/harness.py dev/gen_reference.py tests/conftest.py
	MYPYPATH=tests $(VENV)/bin/mypy --strict --ignore-missing-imports \
		tests/simkit tests/harbor_sim tests/eden_sim tests/unit/reason_scan.py
	$(VENV)/bin/mypy --strict tests/fault_proxy.py

unit: $(PY)
	$(VENV)/bin/pytest -q tests/unit

# The documentation site (docs/, mkdocs.yml) into site/: a broken link or anchor, a page
# missing from the navigation or a missing included example fails. Offline: no fonts or
# plugins that fetch. The generated reference pages are checked by tests/unit.
docs: $(PY)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Everything but tests/reliability: lint, the docs site, unit, integration and end-to-end (builds
# missing parts first), as two pytest sessions side by side (dev/test-suite says how;
# TEST_SESSIONS=1 for one).
test: lint docs build-tools
	PY=$(PY) dev/test-suite

# The reliability suite (tests/reliability: kill -9 loop and failover under churn,
# API server and etcd restarts, backend outages, fuzzed manifests), about 12 minutes on
# 2 cores: on its own, after `make test` in CI. -s shows the figures the tests print.
reliability: $(PY) build-tools
	@status=0; $(VENV)/bin/pytest -q -s -p no:cacheprovider -rfE --durations=10 \
	  tests/reliability || status=$$?; \
	if [ $$status -eq 5 ]; then echo "make reliability: pytest collected no tests" >&2; \
	  exit 1; fi; \
	exit $$status
